"""Concurrency that finds an endpoint's capacity by itself, and a request-rate cap."""

from __future__ import annotations

import threading
import time


class AdaptiveLimiter:
    """How many requests may be in flight: grows while they succeed, shrinks on throttling.

    Slow start (two more slots per success) until the first throttle, then additive increase (one more
    slot per window of ``limit`` successes). A 429/503 answering a request sent while ``n`` were in flight
    means the endpoint holds about ``n - 1``, so the limit drops to that (never below half at once: the
    classic multiplicative decrease), and that becomes the known ceiling, above which probing slows down
    so that the throttled share stays small while the endpoint is kept full. ``fixed`` pins the limit.
    """

    def __init__(self, *, initial: int = 4, maximum: int = 512, fixed: int | None = None) -> None:
        self._cond = threading.Condition()
        self.fixed = fixed
        self.maximum = fixed or maximum
        self._limit = float(fixed or min(initial, maximum))
        self.in_flight = 0
        self.ceiling: float | None = None
        self._since_change = 0
        self._last_decrease = 0.0
        self._paused_until = 0.0
        self.peak = 0
        self.throttled = 0
        self._latency: float | None = None
        self._burst_floor = 1.0
        self._used = 0
        self._worked = 0  # the highest in-flight level at which a request has succeeded
        self._capacity_burst = False
        self._probes_ok = 0  # probes above the ceiling that held since the last capacity throttle

    @property
    def limit(self) -> int:
        """The current number of slots."""
        return max(1, int(self._limit))

    @property
    def worked_level(self) -> int:
        """The highest in-flight level at which a request has succeeded (lowered by a capacity throttle)."""
        return self._worked

    def acquire(self, stop: threading.Event | None = None) -> int | None:
        """Wait for a free slot; returns the in-flight count this request is sent at (None if stopped)."""
        with self._cond:
            while True:
                if stop is not None and stop.is_set():
                    return None
                wait = self._paused_until - time.monotonic()
                if wait <= 0 and self.in_flight < self.limit:
                    self.in_flight += 1
                    self.peak = max(self.peak, self.in_flight)
                    self._used = max(self._used, self.in_flight)
                    return self.in_flight
                self._cond.wait(timeout=min(max(wait, 0.005), 0.1) if wait > 0 else 0.1)

    def release(self) -> None:
        """Give a slot back (call exactly once per successful acquire)."""
        with self._cond:
            self.in_flight -= 1
            self._cond.notify()

    def on_success(self, latency_s: float | None = None, sent_at: int | None = None) -> None:
        """A request succeeded: slow start until the first throttle, then additive increase."""
        with self._cond:
            if sent_at is not None:
                self._worked = max(self._worked, sent_at)
            if latency_s is not None:
                self._latency = latency_s if self._latency is None else 0.8 * self._latency + 0.2 * latency_s
            if self.fixed:
                return
            if self._limit >= 2 * max(self._used, 1):
                return  # at most twice what has really been in flight: beyond that, growth is only a guess
            self._since_change += 1
            if self.ceiling is None:
                # Slow start: two more slots per success triple the limit every round trip. Overshooting
                # is cheap: throttles come back at once and set the ceiling.
                self._limit = min(float(self.maximum), self._limit + 2)
                self._since_change = 0
                self._cond.notify_all()
                return
            # At the known ceiling, probe above it only now and then, more often after probes that went well.
            probing = self._limit >= self.ceiling
            window = self._limit * max(1, 8 >> self._probes_ok) if probing else self._limit
            if self._since_change >= window and self._limit < self.maximum:
                if probing:
                    self._probes_ok += 1
                    self.ceiling = self._limit  # that level held
                self._limit += 1
                self._since_change = 0
                self._cond.notify_all()

    def on_throttle(self, sent_at: int | None, retry_after: float | None = None) -> None:
        """A request was throttled (429/503): lower the limit and honour Retry-After."""
        with self._cond:
            self.throttled += 1
            now = time.monotonic()
            if retry_after:
                self._paused_until = max(self._paused_until, now + min(retry_after, 60.0))
            if self.fixed:
                return
            estimate = float(sent_at - 1) if sent_at is not None else None
            # Throttles answering the requests of one burst arrive within about one request's latency, in any
            # order: a capacity burst lowers the limit to its lowest estimate, but at most halves it in all.
            if now - self._last_decrease < max(0.05, self._latency or 0.0):
                if self._capacity_burst and estimate is not None and estimate < self._limit:
                    self._limit = float(max(1, int(max(estimate, self._burst_floor))))
                    self.ceiling = min(self.ceiling or self._limit, float(max(1, int(estimate))))
                return
            self._last_decrease = now
            self._burst_floor = self._limit * 0.5
            # Before a ceiling is known, a throttle above every level that worked reveals the capacity;
            # after, only one above the ceiling (a probe) does.
            known_level = self._worked if self.ceiling is None else self.ceiling
            if estimate is not None and estimate + 1 > known_level:
                # The endpoint holds about what was in flight before this request.
                self._capacity_burst = True
                self._probes_ok = 0
                target = float(max(1, int(estimate if estimate < self._limit else self._limit - 1)))
                self._limit = float(max(1, int(max(target, self._burst_floor))))
                self.ceiling = target  # the estimate itself, even where the limit may not fall that far at once
                self._worked = min(self._worked, int(target))
            else:
                # At a level that worked before (a rate limit, noise, a race at the boundary): back off a
                # little and keep the ceiling, so that climbing back to it is quick.
                self._capacity_burst = False
                self._limit = float(max(1, min(int(self._limit) - 1, int(self._limit * 0.9))))
                if self.ceiling is None:
                    self.ceiling = self._limit
            self._used = min(self._used, int(self._limit))
            self._since_change = 0
            self._cond.notify_all()


class RateLimiter:
    """At most ``rate`` request starts per second (a token bucket holding one second's worth)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._tokens = float(rate or 0)
        self._last = time.monotonic()

    def wait(self) -> None:
        """Block until one more request may start."""
        if not self.rate:
            return
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                delay = (1 - self._tokens) / self.rate
            time.sleep(delay)
