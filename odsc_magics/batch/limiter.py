"""Concurrency that finds an endpoint's capacity by itself, and a request-rate cap that can learn the endpoint's."""

from __future__ import annotations

import threading
import time

# The throttle kinds of odsc_magics.retry.classify_failure the controller tells apart.
RATE, BANDWIDTH, CONCURRENCY = "rate", "bandwidth", "concurrency"

# A throttle at a level that worked cuts the limit only while this share of recent answers are throttles:
# a stray 429 (a busy moment, noise) does not pull the limit down, a sustained one (another batch) does.
SUSTAINED_THROTTLE_SHARE = 0.2
_SHARE_WEIGHT = 0.02  # the throttle share's moving average spans about the last 50 answers
# Queueing read from latency (as TCP Vegas and Gradient2 do): growth stops while answers take more than
# GROW_WHILE_BELOW times their no-load time, and the limit shrinks by a tenth (once per latency) beyond
# SHRINK_ABOVE times: more in flight would only wait in the endpoint's line.
GROW_WHILE_BELOW = 2.5
SHRINK_ABOVE = 3.5
_BASELINE_CREEP = 1.0001  # per answer: an old no-load minimum doubles in about 7,000 answers
# A learned request rate is cut at most this often: the throttles of one burst arrive together.
_CUT_EVERY_S = 0.25
# Growth stops while the mean latency exceeds this share of the slowest latency that met a Service Timeout.
TIMEOUT_MARGIN = 0.5


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
        self._throttle_share = 0.0
        self._per_token: float | None = None  # no-load seconds per output token (refreshed: it creeps up)
        self.queue_wait: float | None = None  # mean seconds an answer spent beyond its no-load time
        self._unloaded: float | None = None  # mean no-load time of the answers
        self._timeout_latency: float | None = None  # how long requests that met a Service Timeout took
        self.rate: RateLimiter | None = None  # the request-rate bucket used alongside, shown with the limit

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

    def on_success(self, latency_s: float | None = None, sent_at: int | None = None, tokens: int | None = None) -> None:
        """A request succeeded: slow start until the first throttle, then additive increase."""
        with self._cond:
            self._throttle_share *= 1 - _SHARE_WEIGHT
            if sent_at is not None:
                self._worked = max(self._worked, sent_at)
            if latency_s is not None:
                self._latency = latency_s if self._latency is None else 0.8 * self._latency + 0.2 * latency_s
                self._note_wait(latency_s, tokens)
            if self.fixed:
                return
            if self._timeout_latency is not None and (self._latency or 0.0) > TIMEOUT_MARGIN * self._timeout_latency:
                return  # answers take too close to the platform's time limit: more in flight would only wait
            if self._queueing(time.monotonic()):
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

    def _note_wait(self, latency_s: float, tokens: int | None) -> None:
        """Queueing from latency: what an answer took beyond ``tokens`` times the no-load time per token."""
        count = max(1, tokens or 1)
        per_token = latency_s / count
        if self._per_token is None or per_token < self._per_token:
            self._per_token = per_token
        else:
            self._per_token *= _BASELINE_CREEP  # forget an old minimum slowly, so a baseline that rose is relearned
        unloaded = self._per_token * count
        wait = max(0.0, latency_s - unloaded)
        self.queue_wait = wait if self.queue_wait is None else 0.9 * self.queue_wait + 0.1 * wait
        self._unloaded = unloaded if self._unloaded is None else 0.9 * self._unloaded + 0.1 * unloaded

    def _queueing(self, now: float) -> bool:
        """Whether answers wait in line long enough that growing is pointless (and shrink if far too long)."""
        if self.queue_wait is None or not self._unloaded:
            return False
        ratio = (self.queue_wait + self._unloaded) / self._unloaded
        if ratio > SHRINK_ABOVE and now - self._last_decrease > max(0.05, self._latency or 0.0):
            self._last_decrease = now
            self._limit = float(max(1, int(self._limit * 0.9)))
            self._since_change = 0
        return ratio > GROW_WHILE_BELOW

    def on_timeout(self, latency_s: float | None = None) -> None:
        """A 500 Service Timeout: the line of waiting requests is far too long; cut hard (once per burst)."""
        with self._cond:
            self.throttled += 1
            if latency_s is not None:
                self._timeout_latency = min(self._timeout_latency or latency_s, latency_s)
            if self.fixed:
                return
            now = time.monotonic()
            if now - self._last_decrease < max(0.05, self._latency or 0.0):
                return
            self._last_decrease = now
            self._capacity_burst = False
            self._limit = float(max(1, int(self._limit / 2)))
            self.ceiling = self._limit
            self._worked = min(self._worked, int(self._limit))
            self._used = min(self._used, int(self._limit))
            self._since_change = 0
            self._cond.notify_all()

    def on_throttle(self, sent_at: int | None, retry_after: float | None = None, kind: str = CONCURRENCY) -> None:
        """A request was throttled (429/503): honour Retry-After and, for a concurrency limit, lower the limit.

        Rate and bandwidth throttles (``kind``) are the job of the runner's token bucket, not of the limit.
        """
        with self._cond:
            self.throttled += 1
            now = time.monotonic()
            if retry_after:
                self._paused_until = max(self._paused_until, now + min(retry_after, 60.0))
            if self.fixed or kind in (RATE, BANDWIDTH):
                return
            self._throttle_share = self._throttle_share * (1 - _SHARE_WEIGHT) + _SHARE_WEIGHT
            estimate = float(sent_at - 1) if sent_at is not None else None
            # Throttles answering the requests of one burst arrive within about one request's latency, in any
            # order: a capacity burst lowers the limit to its lowest estimate, but at most halves it in all.
            if now - self._last_decrease < max(0.05, self._latency or 0.0):
                if self._capacity_burst and estimate is not None and estimate < self._limit:
                    self._limit = float(max(1, int(max(estimate, self._burst_floor))))
                    self.ceiling = min(self.ceiling or self._limit, float(max(1, int(estimate))))
                return
            # Before a ceiling is known, a throttle above every level that worked reveals the capacity;
            # after, only one above the ceiling (a probe) does.
            known_level = self._worked if self.ceiling is None else self.ceiling
            above = estimate is not None and estimate + 1 > known_level
            if not above and self.ceiling is not None and self._throttle_share < SUSTAINED_THROTTLE_SHARE:
                return  # a stray throttle at a level that worked: not a reason to lower the limit
            self._last_decrease = now
            self._burst_floor = self._limit * 0.5
            if above:
                # The endpoint holds about what was in flight before this request.
                self._capacity_burst = True
                self._probes_ok = 0
                target = float(max(1, int(estimate if estimate < self._limit else self._limit - 1)))
                self._limit = float(max(1, int(max(target, self._burst_floor))))
                self.ceiling = target  # the estimate itself, even where the limit may not fall that far at once
                self._worked = min(self._worked, int(target))
            else:
                # At a level that worked before, throttled again and again (another batch, a shrunken
                # endpoint): back off a little and keep the ceiling, so that climbing back to it is quick.
                self._capacity_burst = False
                self._limit = float(max(1, min(int(self._limit) - 1, int(self._limit * 0.9))))
                if self.ceiling is None:
                    self.ceiling = self._limit
            self._used = min(self._used, int(self._limit))
            self._since_change = 0
            self._cond.notify_all()


class RateLimiter:
    """At most ``rate`` request starts per second (a token bucket holding one second's worth).

    ``rate`` is the caller's cap (None: none). Throttles for a request-rate or bandwidth limit make the bucket
    learn the endpoint's own rate: it drops to 0.9 of the rate requests were starting at when the throttle came
    (at most every quarter second, however many throttles one burst brings), then grows back by about 1% a second while
    requests succeed. Requests of one batch have about the same size, so a bytes-per-second limit is a
    requests-per-second limit for them.
    """

    def __init__(self, rate: float | None) -> None:
        self.cap = rate
        self.rate = rate
        self.learned = False
        self._lock = threading.Lock()
        self._tokens = float(rate or 0)
        self._last = time.monotonic()
        self._starts: list[float] = []  # start times of the last second or so
        self._successes_at: list[float] = []  # times of the last second's successes
        self._last_cut = float("-inf")
        self._successes = 0

    def wait(self) -> None:
        """Block until one more request may start."""
        while True:
            with self._lock:
                now = time.monotonic()
                self._starts.append(now)
                if len(self._starts) > 512 or now - self._starts[0] > 1.0:
                    del self._starts[: max(1, len(self._starts) // 4)]
                if not self.rate:
                    return
                self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1 - 1e-9:  # rounding must not leave a token just short of whole
                    self._tokens = max(0.0, self._tokens - 1)
                    return
                self._starts.pop()
                delay = (1 - self._tokens) / self.rate
            time.sleep(delay)

    def observed(self) -> float | None:
        """Requests started per second lately (None until there are a few)."""
        with self._lock:
            return self._observed(time.monotonic())

    def _observed(self, now: float) -> float | None:
        return _per_second(self._starts, now)

    def on_throttle(self) -> None:
        """A request-rate or bandwidth throttle: start at most 0.9 of the rate that met it."""
        with self._lock:
            now = time.monotonic()
            if now - self._last_cut < _CUT_EVERY_S:
                return
            self._last_cut = now
            # What got through: the rate of successes lately, else of starts (throttled ones included).
            seen = _per_second(self._successes_at, now) or self._observed(now)
            current = min(r for r in (self.rate, seen) if r) if (self.rate or seen) else None
            if current is None:
                return
            self.rate = max(1.0, 0.9 * current)
            if self.cap:
                self.rate = min(self.rate, self.cap)
            self.learned = True
            self._tokens = min(self._tokens, 1.0)
            self._successes = 0

    def on_success(self) -> None:
        """A request succeeded: a learned rate grows back by 1% per second's worth of successes."""
        with self._lock:
            now = time.monotonic()
            self._successes_at.append(now)
            if len(self._successes_at) > 512 or now - self._successes_at[0] > 1.0:
                del self._successes_at[: max(1, len(self._successes_at) // 4)]
            if not self.learned or not self.rate:
                return
            self._successes += 1
            if self._successes >= self.rate:
                self._successes = 0
                self.rate = self.rate + max(1.0, 0.01 * self.rate)
                if self.cap:
                    self.rate = min(self.rate, self.cap)


def _per_second(times: list[float], now: float) -> float | None:
    """Events per second over the last second of ``times`` (None until there are a few)."""
    recent = [t for t in times if now - t <= 1.0]
    if len(recent) < 4:
        return None
    return len(recent) / max(now - recent[0], 1e-3)
