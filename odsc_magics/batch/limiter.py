"""Concurrency that finds an endpoint's capacity by itself, and a request-rate cap that can learn the endpoint's.

The concurrency controller reads three signals (the retry policy, odsc_magics.retry, names each failure's kind):

- **Throughput against concurrency.** Each answer gives, by Little's law, the rows per second the endpoint
  delivered at the concurrency the request saw (its mean in-flight count over its life / its latency). The
  controller keeps that curve per half-octave of concurrency and grows (doubling every round trip at most)
  while doubling the concurrency still brings at least ``KNEE_GAIN`` more; once it does not, it settles at the
  lowest level that gives ``SETTLE_SHARE`` of the best throughput seen. Past that knee a server that queues
  (vLLM: max-num-seqs, KV cache) only makes each answer wait longer, so a batch stays at the knee rather than
  filling the line.
- **Latency.** At the knee the controller notes the latency; later answers taking ``SHRINK_ABOVE`` times that
  (another batch shares the endpoint, the endpoint slowed) shrink the limit by a tenth once per round trip. It
  never grows where the latency would pass ``LATENCY_BUDGET_SHARE`` of the time limit (the platform's 60 s or
  the client's read timeout, whichever is smaller), and shrinks beyond ``LATENCY_SHRINK_SHARE`` of it.
- **429s by kind.** A concurrency 429/503 above every level that worked reveals the endpoint's capacity: the
  limit drops to what was in flight (halving at most). A stray throttle at a level that worked lowers nothing
  unless throttles are a sustained share of recent answers. Rate and bandwidth 429s go to the request-rate
  bucket (:class:`RateLimiter`), not to the concurrency. A 500 Service Timeout halves the limit once per burst.

Every method takes time from ``clock`` (tests pass a fake one).
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from odsc_magics.predict_limits import TENANCY_RPS, TIMEOUT_S

# The throttle kinds of odsc_magics.retry.classify_failure the controller tells apart.
RATE, BANDWIDTH, CONCURRENCY = "rate", "bandwidth", "concurrency"

# Growth stops once doubling the concurrency brings less than this factor more throughput.
KNEE_GAIN = 1.07
# Slots added per answer while growing: the limit triples every round trip (TCP doubles; a 429 here is cheap).
SLOW_START_STEP = 2
# Below this gain per doubling the knee is near: growth slows to a quarter per round trip.
CAREFUL_GAIN = 1.4
CAREFUL_SLOWDOWN = 1.6  # or once answers take this many times their fastest (the batch slows each sequence)
# Settles at the lowest concurrency giving this share of the best throughput seen: fewer in flight, same rows/s.
SETTLE_SHARE = 0.93
_SAMPLES = 8  # answers a half-octave needs before its throughput is compared
# After settling, answers this much slower than at the knee mean the endpoint got busier: shrink a tenth.
SHRINK_ABOVE = 1.6
# Kept well under the time limit: growth stops at this share of it, shrinking starts beyond the second share.
LATENCY_BUDGET_SHARE = 0.7
LATENCY_SHRINK_SHARE = 0.85
# A throttle at a level that worked cuts the limit only while this share of recent answers are throttles:
# a stray 429 (a busy moment, noise) does not pull the limit down, a sustained one (another batch) does.
SUSTAINED_THROTTLE_SHARE = 0.2
_SHARE_WEIGHT = 0.02  # the throttle share's moving average spans about the last 50 answers
# Throttles above every level that worked reveal a capacity once there are this many, and half of what was sent
# there (a capacity refuses nearly all of it; stray 429s are a few of many), with no answer from there.
_CONFIRMING_THROTTLES = 3
_BURST_S = 0.1  # 429s within this time of a cut answer the same burst of requests
# After settling, probe a quarter higher or a fifth lower (alternately) every this many round trips.
_PROBE_EVERY = 3
_PROBE_GAIN = 1.05
_PROBE_KEEP_DOWN = 0.97
PROBE_DOWN_SLOWDOWN = 1.2  # a fifth lower is tried only where answers take this many times their fastest
# A learned request rate is cut at most this often: the throttles of one burst arrive together.
_CUT_EVERY_S = 0.25
_HISTORY_S = 2 * TIMEOUT_S + 10  # how far back the in-flight history reaches: past any answer's life
# Rate and bandwidth throttles teach the bucket only while they are this share of recent answers.
SUSTAINED_RATE_SHARE = 0.15
_MIN_ANSWERS = 100  # answers a share is judged on
_FEW_ANSWERS = 20  # answers enough to see an overrun
OVERRUN_SHARE = 0.5  # that share of them throttled: far above a rate limit
_ANSWERS_KEPT_S = 10.0  # how long answers are kept for those judgements
_TRIAL_S = 1.0  # and at least this long, so that the lower rate has taken hold
_SETTLE_S = 0.1  # after a cut, answers this soon still answer requests started before it
_MAX_FLOOR = 0.1  # more throttles than this are never taken for noise
_REGROWTH = 0.03  # a learned rate grows back by this share per second's worth of successes
_REGROW_BELOW_SHARE = 0.02  # a learned rate regrows only while fewer answers than this (beyond noise) are throttles
_STRAY_RATE_SHARE = 0.1  # fewer rate throttles than this share of answers do not hold concurrency growth
EDGE_SHARE = 0.04  # a learned rate whose answers are this share throttles (beyond noise) has regrown past the edge
_EDGE_ANSWERS = 50  # answers that share is judged on
_EDGE_STEP = 0.95  # and it steps back to this share of what gets through


@dataclass
class _Level:
    """What answers sent at about one concurrency saw: throughput (rows/s) and latency, as moving averages."""

    rows_s: float = 0.0
    latency: float = 0.0
    count: int = 0

    def add(self, rows_s: float, latency: float) -> None:
        weight = max(0.1, 1.0 / (self.count + 1))
        self.rows_s += (rows_s - self.rows_s) * weight
        self.latency += (latency - self.latency) * weight
        self.count += 1


def _octave(level: float) -> int:
    """The half-octave a concurrency falls in (1 → 0, 1.41 → 1, 2 → 2, 4 → 4, 64 → 12)."""
    return round(2 * math.log2(max(level, 1.0)))


class AdaptiveLimiter:
    """How many requests may be in flight (see the module's docstring); ``fixed`` pins the limit."""

    def __init__(
        self,
        *,
        initial: int = 16,
        maximum: int = 512,
        fixed: int | None = None,
        latency_limit: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cond = threading.Condition()
        self._clock = clock
        self.fixed = fixed
        self.maximum = fixed or maximum
        self._limit = float(fixed or min(initial, maximum))
        self.latency_limit = min(latency_limit or TIMEOUT_S, TIMEOUT_S)
        self.in_flight = 0
        self.peak = 0
        self.throttled = 0
        self.ceiling: float | None = None  # the capacity a concurrency 429 revealed
        self._ceiling_at = float("-inf")  # when it was set: only requests sent after can refute it
        self.settled: float | None = None  # the knee of the throughput curve, once found
        self.queue_wait: float | None = None  # how much longer answers take than at the knee (or at the start)
        self.rate: RateLimiter | None = None  # the request-rate bucket used alongside, shown with the limit
        self._levels: dict[int, _Level] = {}
        self._latency: float | None = None  # moving average of answers' latency
        self._fastest: float | None = None  # the lowest that average has been
        self._answers = 0
        self._level: float | None = None  # moving average of the in-flight count those answers saw
        self._knee_latency: float | None = None
        self._last_decrease = float("-inf")
        self._paused_until = float("-inf")
        self._used = 0
        self._worked = 0  # the highest in-flight level at which a request has succeeded
        self._capacity_burst = False
        self._burst_floor = 1.0
        self._throttle_share = 0.0
        self._since_change = 0
        self._probe: tuple[float, float, bool] | None = None  # (level probed from, its throughput, upwards)
        self._probe_up = False  # the direction of the last probe: they alternate
        self._rate_hold_until = float("-inf")
        self._careful = 0  # answers since the last slot added while nearing the knee
        self._suspicions = 0  # throttles at or above it since
        self._sent_above = 0  # requests sent at or above it since
        self._suspect: int | None = None  # a level throttled once above all that worked: growth waits
        self._settled_at = 0.0
        # ∫ in-flight dt, sampled at every change: the mean in-flight count over any request's life
        self._area = 0.0
        self._area_at = clock()
        self._history: list[tuple[float, float]] = [(self._area_at, 0.0)]

    @property
    def limit(self) -> int:
        """The current number of slots."""
        return max(1, int(self._limit))

    @property
    def paused_until(self) -> float:
        """When a Retry-After pause ends (in the clock's time)."""
        return self._paused_until

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
                wait = self._paused_until - self._clock()
                if wait <= 0 and self.in_flight < self.limit:
                    self._count_in_flight(+1)
                    if self._suspect is not None and self.in_flight >= self._suspect:
                        self._sent_above += 1
                    self.peak = max(self.peak, self.in_flight)
                    self._used = max(self._used, self.in_flight)
                    return self.in_flight
                self._cond.wait(timeout=min(max(wait, 0.005), 0.1) if wait > 0 else 0.1)

    def release(self) -> None:
        """Give a slot back (call exactly once per successful acquire)."""
        with self._cond:
            self._count_in_flight(-1)
            self._cond.notify()

    def _count_in_flight(self, change: int) -> None:
        now = self._clock()
        self._area += self.in_flight * (now - self._area_at)
        self._area_at = now
        self.in_flight += change
        self._history.append((now, self._area))
        if len(self._history) % 1024 == 0:  # forget what no request still running can reach back to
            old = bisect.bisect_left(_Times(self._history), now - _HISTORY_S)
            del self._history[: min(old, len(self._history) - 1)]

    def _mean_in_flight(self, since: float, now: float) -> float | None:
        """The mean in-flight count between ``since`` and ``now`` (None if the history does not reach back)."""
        index = bisect.bisect_right(_Times(self._history), since) - 1
        if index < 0 or now <= since:
            return None
        t0, area0 = self._history[index]
        if index + 1 < len(self._history):
            t1, area1 = self._history[index + 1]
            slope = (area1 - area0) / (t1 - t0) if t1 > t0 else 0.0
        else:
            slope = float(self.in_flight)
        area_since = area0 + slope * (since - t0)
        area_now = self._area + self.in_flight * (now - self._area_at)
        return max(0.0, (area_now - area_since) / (now - since))

    def on_success(self, latency_s: float | None = None, sent_at: int | None = None, tokens: int | None = None) -> None:
        """A request succeeded after ``latency_s``: learn the throughput curve, then grow, settle or shrink."""
        del tokens  # rows per second is what the curve measures; requests of one batch are alike
        with self._cond:
            now = self._clock()
            self._throttle_share *= 1 - _SHARE_WEIGHT
            if sent_at is not None:
                self._worked = max(self._worked, sent_at)
                if self._suspect is not None and sent_at >= self._suspect:
                    self._suspect, self._suspicions = None, 0  # a level throttled holds: those were stray
                sent = now - (latency_s or 0.0)
                if self.ceiling is not None and sent_at > self.ceiling + 1 and sent > self._ceiling_at:
                    # It held more than the ceiling: that throttle was stray, not the endpoint's capacity.
                    self.ceiling = None
                    self._capacity_burst = False
            if not latency_s or latency_s <= 0:
                return
            self._latency = latency_s if self._latency is None else 0.9 * self._latency + 0.1 * latency_s
            self._answers += 1
            if self._answers >= _SAMPLES:
                self._fastest = min(self._fastest or self._latency, self._latency)
            mean = self._mean_in_flight(now - latency_s, now)
            if mean is not None and mean >= 0.5:
                self._level = mean if self._level is None else 0.9 * self._level + 0.1 * mean
            level = None
            if mean is not None and mean >= 0.5:
                level = self._levels.setdefault(_octave(mean), _Level())
                level.add(mean / latency_s, latency_s)
            reference = self._knee_latency or self._lowest_latency()
            if reference:
                self.queue_wait = max(0.0, self._latency - reference)
            if self.fixed:
                return
            if self._over_budget(now):
                return
            if self.settled is None:
                self._grow(now)
            else:
                self._hold(now)

    def _lowest_latency(self) -> float | None:
        """The lowest the answers' moving-average latency has been (after a few answers): the no-load time."""
        return self._fastest

    def _over_budget(self, now: float) -> bool:
        """Whether answers take too close to the time limit to grow (shrinking a tenth if far too close)."""
        latency = self._latency or 0.0
        if latency > LATENCY_SHRINK_SHARE * self.latency_limit:
            self._decrease(now, 0.9)
            return True
        # Answers take at most proportionally longer with more in flight (a server past its knee): growing to
        # the next limit must keep them within the budget even so.
        level = max(self._level or 1.0, 1.0)
        return latency * (self._limit + SLOW_START_STEP) / level > LATENCY_BUDGET_SHARE * self.latency_limit

    def _grow(self, now: float) -> None:
        """Before the knee: one more slot per answer (doubling every round trip) until doubling stops paying."""
        knee = self._knee()
        if knee is None and self._limit >= self.maximum:
            current = self._levels.get(_octave(self._limit))
            if current is not None and current.count >= 2 * _SAMPLES:
                knee = self._limit  # no knee below the maximum: hold there, and let the probes look lower
        if knee is not None:
            self._settle(knee, now)
            return
        if self._suspect is not None:
            return  # until a second throttle confirms a capacity there, or an answer from that level refutes it
        if now < self._rate_hold_until or self._limit >= self._rate_bound():
            return  # a request rate limits this endpoint: more in flight than it lets through only waits
        if self._limit >= 2 * max(self._used, 1) or self._limit >= self.maximum:
            return  # at most twice what has really been in flight: beyond that, growth is only a guess
        if self.ceiling is not None and self._limit >= self.ceiling:
            self._probe_ceiling()
            return
        if self._nearing_knee():
            # Doubling pays less and less: grow by a quarter per round trip, so that each level near the knee
            # gets answers of its own to measure, rather than leaping past it.
            self._careful += 1
            if self._careful < 4:
                return
            self._careful = 0
            self._limit = min(float(self.maximum), self._limit + 1)
        else:
            self._limit = min(float(self.maximum), self._limit + SLOW_START_STEP)
        self._cond.notify_all()

    def _nearing_knee(self) -> bool:
        """Whether answers take CAREFUL_SLOWDOWN times their fastest, or the two highest levels measured show less
        than CAREFUL_GAIN per doubling."""
        if self._fastest and self._latency and self._latency >= CAREFUL_SLOWDOWN * self._fastest:
            return True
        known = sorted(key for key, level in self._levels.items() if level.count >= _SAMPLES)
        if len(known) < 2:
            return False
        high, low = known[-1], known[-2]
        gain = (self._levels[high].rows_s / max(self._levels[low].rows_s, 1e-9)) ** (2 / (high - low))
        return gain < CAREFUL_GAIN

    def _rate_bound(self) -> float:
        """Twice what a learned request rate lets be in flight (rate × latency), or no bound."""
        bucket = self.rate
        if bucket is None or not bucket.learned or not bucket.rate or not self._latency:
            return float("inf")
        return 2 * bucket.rate * self._latency + 1

    def _knee(self) -> float | None:
        """The concurrency to settle at, once some level brought less than KNEE_GAIN over half of it."""
        known = {key: level for key, level in self._levels.items() if level.count >= _SAMPLES}
        for key in sorted(known):
            lower = known.get(key - 2)
            if lower is not None and known[key].rows_s < KNEE_GAIN * lower.rows_s:
                best = max(level.rows_s for level in known.values())
                enough = min(k for k, level in known.items() if level.rows_s >= SETTLE_SHARE * best)
                return 2 ** (enough / 2)
        return None

    def _settle(self, knee: float, now: float) -> None:
        self.settled = float(max(1, round(knee)))
        self._limit = self.settled if self.ceiling is None else min(self.settled, self.ceiling)
        level = self._levels.get(_octave(self._limit))
        self._knee_latency = level.latency if level is not None and level.count else self._latency
        self._settled_at = now
        self._since_change = 0
        self._cond.notify_all()

    def _hold(self, now: float) -> None:
        """At the knee: shrink when answers slow down far beyond it, and now and then probe a quarter higher (kept
        if it pays) or a fifth lower (kept if it costs nothing: the same rows/s with less waiting)."""
        self._since_change += 1
        if self._knee_latency and self._latency and self._latency > SHRINK_ABOVE * self._knee_latency:
            self._decrease(now, 0.9)
            return
        if self._probe is not None:
            base, rows_s, up = self._probe
            if self._since_change == int(self._limit):
                # A round trip on, the answers still carry the old level's load: measure from here
                self._levels.pop(_octave(self._limit), None)
            level = self._levels.get(_octave(self._limit))
            if level is not None and level.count >= _SAMPLES and self._since_change >= 2 * self._limit:
                kept = level.rows_s >= (_PROBE_GAIN if up else _PROBE_KEEP_DOWN) * rows_s
                if kept:
                    self.settled = self._limit
                    self._knee_latency = level.latency
                else:
                    self._limit = base
                self._probe = None
                self._since_change = 0
                self._cond.notify_all()
            return
        if self._since_change < _PROBE_EVERY * self._limit:
            return
        current = self._levels.get(_octave(self._limit))
        if current is None or current.count < _SAMPLES:
            return
        self._probe_up = not self._probe_up
        up = self._probe_up
        if up and self._limit >= self.maximum:
            return  # nothing to look for above the caller's ceiling
        if up and self.ceiling is not None and self._limit >= self.ceiling:
            self._probe_ceiling()
            return
        if not up and (self._limit < 4 or not self._waiting()):
            return  # answers as fast as they come unloaded: a lower level could only bring fewer rows
        target = max(self._limit + 1, self._limit * 1.25) if up else max(1.0, self._limit * 0.8)
        self._probe = (self._limit, current.rows_s, up)
        self._levels.pop(_octave(target), None)  # measure the probe afresh
        self._limit = min(float(self.maximum), target)
        self._since_change = 0
        self._cond.notify_all()

    def _waiting(self) -> bool:
        """Whether answers take PROBE_DOWN_SLOWDOWN times their fastest: time a lower level might save."""
        return bool(self._fastest and self._latency and self._latency >= PROBE_DOWN_SLOWDOWN * self._fastest)

    def _probe_ceiling(self) -> None:
        """At a concurrency 429's ceiling, one more slot only after a long run of answers without a throttle."""
        self._since_change += 1
        if self.ceiling is None or self._since_change < 16 * self._limit or self._limit >= self.maximum:
            return
        if self._limit > self.ceiling:
            self.ceiling = self._limit  # the last probe held that long: the capacity is at least that
        self._limit += 1
        self._since_change = 0
        self._cond.notify_all()

    def _decrease(self, now: float, factor: float) -> None:
        """Lower the limit by ``factor``, at most once per round trip (the answers of one moment agree)."""
        if now - self._last_decrease < max(0.05, self._latency or 0.0):
            return
        self._last_decrease = now
        self._limit = float(max(1, int(self._limit * factor)))
        if self.settled is not None:
            self.settled = self._limit
        self._probe = None
        self._used = min(self._used, int(self._limit))
        self._since_change = 0

    def on_timeout(self, latency_s: float | None = None) -> None:
        """A 500 Service Timeout (or no answer in time): the line is far too long; halve once per burst."""
        with self._cond:
            self.throttled += 1
            if latency_s:
                # The limit is where answers time out: keep well under what this one took.
                self.latency_limit = min(self.latency_limit, latency_s)
            if self.fixed:
                return
            now = self._clock()
            if now - self._last_decrease < max(0.05, self._latency or 0.0):
                return
            self._last_decrease = now
            self._capacity_burst = False
            self._limit = float(max(1, int(self._limit / 2)))
            self.settled = self._limit
            self._knee_latency = None
            self._probe = None
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
            now = self._clock()
            if retry_after:
                self._paused_until = max(self._paused_until, now + min(retry_after, 60.0))
            if kind in (RATE, BANDWIDTH):
                # Growth waits a round trip while the request-rate bucket learns what gets through; stray ones
                # (a few in a hundred, whatever the rate) hold nothing, or they would stop growth for good.
                if self.rate is None or self.rate.throttling():
                    self._rate_hold_until = now + max(0.05, self._latency or 0.0)
                return
            if self.fixed:
                return
            self._throttle_share = self._throttle_share * (1 - _SHARE_WEIGHT) + _SHARE_WEIGHT
            estimate = float(sent_at - 1) if sent_at is not None else None
            # The 429s answering the requests of one burst come back together, in any order: a capacity burst
            # lowers the limit to its lowest estimate, but at most halves it in all.
            if now - self._last_decrease < _BURST_S:
                if self._capacity_burst and estimate is not None and estimate < self._limit:
                    self._limit = float(max(1, int(max(estimate, self._burst_floor))))
                    self.ceiling = min(self.ceiling or self._limit, float(max(1, int(estimate))))
                    self._ceiling_at = now
                return
            # Before a ceiling is known, a throttle above every level that worked reveals the capacity;
            # after, only one above the ceiling (a probe) does.
            known_level = self._worked if self.ceiling is None else self.ceiling
            above = estimate is not None and estimate + 1 > known_level
            if not above and self._throttle_share < SUSTAINED_THROTTLE_SHARE:
                return  # a stray throttle at a level that worked: not a reason to lower the limit
            if above and sent_at is not None and self.ceiling is None:
                # Throttles above every level that worked may be stray: growth holds, and an answer from that
                # level refutes them, or a few more there confirm a capacity.
                if self._suspect is None:
                    self._suspect, self._suspicions, self._sent_above = sent_at, 0, 1
                self._suspect = min(self._suspect, sent_at)
                self._suspicions += 1
                # A capacity refuses nearly everything sent above it; stray 429s are a few of many
                if self._suspicions < max(_CONFIRMING_THROTTLES, 0.5 * self._sent_above):
                    return
                estimate = float(self._suspect - 1)
                self._suspect = None
                self._suspicions = 0
            self._last_decrease = now
            self._burst_floor = self._limit * 0.5
            self._probe = None
            if above:
                # The endpoint holds about what was in flight before this request.
                self._capacity_burst = True
                target = float(max(1, int(estimate if estimate < self._limit else self._limit - 1)))
                self._limit = float(max(1, int(max(target, self._burst_floor))))
                self.ceiling = target  # the estimate itself, even where the limit may not fall that far at once
                self._ceiling_at = now
                self._worked = min(self._worked, int(target))
            else:
                # At a level that worked before, throttled again and again (another batch, a shrunken
                # endpoint): back off a little and keep the ceiling, so that climbing back to it is quick.
                self._capacity_burst = False
                self._limit = float(max(1, min(int(self._limit) - 1, int(self._limit * 0.9))))
                if self.ceiling is None:
                    self.ceiling = self._limit
            if self.settled is not None:
                self.settled = min(self.settled, self._limit)
            self._used = min(self._used, int(self._limit))
            self._since_change = 0
            self._cond.notify_all()


class _Times:
    """The times of a history of (time, value) pairs, as a sequence for bisect without copying."""

    def __init__(self, history: list[tuple[float, float]]) -> None:
        self._history = history

    def __len__(self) -> int:
        return len(self._history)

    def __getitem__(self, index: int) -> float:
        return self._history[index][0]


class RateLimiter:
    """At most ``rate`` request starts per second (a token bucket holding one second's worth).

    ``rate`` is the caller's cap (None: none). Rate and bandwidth 429s teach the bucket the endpoint's own rate
    once they are ``SUSTAINED_RATE_SHARE`` of the answers since the last change took hold (beyond the share that
    comes whatever the rate, ``floor``): it drops to 0.9 of the rate requests were getting through at (at most
    every quarter second). The cuts are on trial: if the throttles do not thin out at the lower rate, they were
    not the rate's doing (random 429s), the cuts are undone and their share becomes the floor. A learned rate
    regrows by 3% a second while throttles stay away, and steps back to 0.95 of what gets through once it has
    regrown past the edge (4% of the latest fifty answers throttled, beyond the floor). Requests of one batch
    have about the same size, so a bytes-per-second limit is a requests-per-second limit for them.
    """

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cap = rate
        self.rate = rate
        self.learned = False
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(rate or 0)
        self._last = clock()
        self._starts: list[float] = []  # start times of the last second or so
        self._successes_at: list[float] = []  # times of the last second's successes
        self._answers: deque[tuple[float, bool]] = deque()  # (time, throttled) of the last seconds' answers
        self._last_cut = float("-inf")
        self._successes = 0
        self._floor = 0.0  # the share of throttles that comes whatever the rate (noise), learned from cuts undone
        self._trial: tuple[float | None, bool, float] | None = None  # (rate, learned, share) before the cuts

    @property
    def share(self) -> float:
        """The share of recent answers that were rate or bandwidth throttles (the last second)."""
        with self._lock:
            throttles, answers = self._window(self._clock() - 1.0)
            return throttles / answers if answers else 0.0

    def throttling(self) -> bool:
        """Whether rate or bandwidth throttles are more than stray lately: a tenth of the last second's answers
        beyond the share that comes whatever the rate."""
        with self._lock:
            throttles, answers = self._window(self._clock() - 1.0)
            return answers > 0 and throttles / answers > self._floor + _STRAY_RATE_SHARE

    def wait(self) -> None:
        """Block until one more request may start."""
        while True:
            with self._lock:
                now = self._clock()
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
            self._sleep(delay)

    def observed(self) -> float | None:
        """Requests started per second lately (None until there are a few)."""
        with self._lock:
            return _per_second(self._starts, self._clock())

    def _answer(self, now: float, throttled: bool) -> None:
        self._answers.append((now, throttled))
        while self._answers and now - self._answers[0][0] > _ANSWERS_KEPT_S:
            self._answers.popleft()

    def _window(self, since: float, most: int | None = None) -> tuple[int, int]:
        """(throttles, answers) among the answers after ``since`` (the ``most`` latest of them)."""
        throttles = answers = 0
        for at, throttled in reversed(self._answers):
            if at <= since or (most is not None and answers >= most):
                break
            answers += 1
            throttles += throttled
        return throttles, answers

    def on_throttle(self, kind: str = BANDWIDTH) -> None:
        """A request-rate (``kind="rate"``) or bandwidth throttle: once sustained, start at most 0.9 of the rate
        getting through. The first tenancy-rate cut starts no higher than 0.9 of the tenancy's documented limit:
        what got through just before it came partly from the limit's one-second burst, and overstates the
        rate. A tenancy whose limit was raised regrows past it."""
        with self._lock:
            now = self._clock()
            self._answer(now, True)
            if now - self._last_cut < _CUT_EVERY_S:
                return
            # The latest answers since the last cut took hold (a 429 comes back at once): enough of them that
            # random 429s rarely look like a sustained share
            throttles, answers = self._window(self._last_cut + _SETTLE_S, _MIN_ANSWERS)
            few, latest = self._window(self._last_cut + _SETTLE_S, _FEW_ANSWERS)
            sustained = answers >= _MIN_ANSWERS and throttles / answers >= self._floor + SUSTAINED_RATE_SHARE
            # Far above a limit most answers are throttles: a few tell (random 429s are never most of 20)
            overrun = latest >= _FEW_ANSWERS and few / latest >= OVERRUN_SHARE
            if not (sustained or overrun):
                self._step_back_from_edge(now)
                return  # stray throttles (a busy moment, noise) teach nothing: only a sustained share does
            throttles, answers = (throttles, answers) if sustained else (few, latest)
            # What got through: the rate of successes lately (since the last cut: before it, they came at a rate
            # that was too high), else of starts (throttled ones included).
            window = min(0.5, now - self._last_cut)
            seen = _per_second(self._successes_at, now, window) or _per_second(self._starts, now, window)
            first = TENANCY_RPS if kind == RATE and not self.learned else None
            known = [rate for rate in (self.rate, seen, first) if rate]
            if not known:
                return
            current = min(known)
            if self._trial is None:
                self._trial = (self.rate, self.learned, throttles / answers)
            self._cut_to(now, 0.9 * current)

    def _step_back_from_edge(self, now: float) -> None:
        """A learned rate that regrew past the endpoint's edge: a few throttles in every fifty answers (fewer
        than a sustained share, but more than noise) step it back a little, with no trial (the limit is known)."""
        if not self.learned or not self.rate or self._trial is not None:
            return
        throttles, answers = self._window(self._last_cut + _SETTLE_S, _EDGE_ANSWERS)
        if answers < _EDGE_ANSWERS or throttles / answers < self._floor + EDGE_SHARE:
            return
        seen = _per_second(self._successes_at, now, 1.0)
        self._cut_to(now, _EDGE_STEP * min(self.rate, seen or self.rate))

    def _cut_to(self, now: float, rate: float) -> None:
        self._last_cut = now
        self.rate = max(1.0, rate)
        if self.cap:
            self.rate = min(self.rate, self.cap)
        self.learned = True
        # The bucket refills from now: a first rate must not find a second's worth of tokens saved up since
        # the limiter was made (it never counted time while it had no rate)
        self._tokens = min(self._tokens, 1.0)
        self._last = now
        self._successes = 0

    def on_success(self) -> None:
        """A request succeeded: judge the cuts on trial, and let a learned rate regrow while throttles stay away."""
        with self._lock:
            now = self._clock()
            self._answer(now, False)
            self._successes_at.append(now)
            if len(self._successes_at) > 512 or now - self._successes_at[0] > 1.0:
                del self._successes_at[: max(1, len(self._successes_at) // 4)]
            if self._trial is not None and now - self._last_cut >= _TRIAL_S:
                throttles, answers = self._window(self._last_cut + _SETTLE_S)
                if answers >= _MIN_ANSWERS:
                    rate_before, learned_before, share_before = self._trial
                    self._trial = None
                    after = throttles / answers
                    # Those left at the lower rate are noise either way; as many as before: no rate limit at all
                    self._floor = min(_MAX_FLOOR, max(self._floor, after))
                    if after >= 0.5 * share_before:
                        self.rate, self.learned = rate_before, learned_before
                        return
            if not self.learned or not self.rate:
                return
            throttles, answers = self._window(now - 1.0)
            if answers and throttles / answers > self._floor + _REGROW_BELOW_SHARE:
                return  # no regrowth while throttles come back: that is the rate's edge
            self._successes += 1
            if self._successes >= self.rate:
                self._successes = 0
                self.rate = self.rate + max(1.0, _REGROWTH * self.rate)
                if self.cap:
                    self.rate = min(self.rate, self.cap)


def _per_second(times: list[float], now: float, window: float = 1.0) -> float | None:
    """Events per second over the last ``window`` seconds of ``times`` (None until there are a few)."""
    recent = [t for t in times if now - t <= window]
    if len(recent) < 4:
        return None
    return len(recent) / max(now - recent[0], 1e-3)
