"""The adaptive limiter's arithmetic, its counters under many threads, and the rate cap's bookkeeping."""

from __future__ import annotations

import threading
import time

import pytest

from odsc_magics.batch.limiter import AdaptiveLimiter, RateLimiter


class Clock:
    """A fake clock for the limiter and the bucket: time moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def saturate(limiter: AdaptiveLimiter) -> None:
    while limiter.in_flight < limiter.limit:
        limiter.acquire()


def succeed(limiter: AdaptiveLimiter, times: int, clock: Clock | None = None, latency: float = 0.1) -> None:
    """Each time: one request comes back, and the freed slots are filled again (the endpoint stays full)."""
    for _ in range(times):
        saturate(limiter)
        if clock is not None:
            clock.now += latency / max(limiter.in_flight, 1)
        limiter.release()
        limiter.on_success(latency, sent_at=limiter.in_flight + 1)
    saturate(limiter)


def test_slow_start_grows_two_slots_per_success_until_a_signal():
    clock = Clock()
    limiter = AdaptiveLimiter(initial=4, clock=clock)
    succeed(limiter, 10, clock)
    assert limiter.limit == 24


def test_an_unused_limit_does_not_grow():
    limiter = AdaptiveLimiter(initial=8)
    limiter.acquire()
    for _ in range(10):
        limiter.release()
        limiter.on_success()
        limiter.acquire()
    assert limiter.limit == 8


def test_throttle_sets_limit_to_what_was_in_flight_before_it():
    limiter = AdaptiveLimiter(initial=40)
    limiter.on_throttle(sent_at=35)
    limiter.on_throttle(sent_at=34)
    limiter.on_throttle(sent_at=33)  # a third, with nothing answered from there: the endpoint holds 32
    assert limiter.limit == 32
    assert limiter.ceiling == 32


def test_throttles_from_one_burst_lower_the_limit_once():
    limiter = AdaptiveLimiter(initial=40)
    limiter.on_throttle(sent_at=33)
    limiter.on_throttle(sent_at=35)
    limiter.on_throttle(sent_at=34)
    assert limiter.limit == 32


def test_one_throttle_at_a_level_that_worked_changes_nothing():
    limiter = AdaptiveLimiter(initial=40)
    limiter.on_success(0.1, sent_at=10)
    limiter.on_throttle(sent_at=2)  # not a concurrency signal: a rate limit or noise
    assert limiter.limit == 40
    assert limiter.ceiling is None


def test_one_throttle_above_every_level_that_worked_holds_growth_until_an_answer_from_there_refutes_it():
    clock = Clock()
    limiter = AdaptiveLimiter(initial=8, clock=clock)
    succeed(limiter, 2, clock)
    limit = limiter.limit
    limiter.on_throttle(sent_at=limit)  # one throttle at the front of the climb: maybe stray
    assert limiter.limit == limit and limiter.ceiling is None
    limiter.on_success(0.1, sent_at=limit - 1)
    assert limiter.limit == limit  # growth waits
    limiter.on_success(0.1, sent_at=limit)  # that level answered: the throttle was stray
    assert limiter.limit > limit


def test_a_throttle_above_every_level_that_worked_is_a_capacity_signal_at_most_halving():
    limiter = AdaptiveLimiter(initial=40)
    limiter.on_throttle(sent_at=4)
    limiter.on_throttle(sent_at=3)
    limiter.on_throttle(sent_at=2)
    assert limiter.limit == 20


def test_a_throttle_near_the_limit_sets_the_ceiling_to_what_was_in_flight():
    limiter = AdaptiveLimiter(initial=40)
    limiter.on_throttle(sent_at=33)
    limiter.on_throttle(sent_at=32)
    limiter.on_throttle(sent_at=31)
    assert limiter.limit == 30
    assert limiter.ceiling == 30


def test_probing_above_the_ceiling_is_slow():
    clock = Clock()
    limiter = AdaptiveLimiter(initial=12, clock=clock)
    limiter.on_throttle(sent_at=13)
    limiter.on_throttle(sent_at=12)
    limiter.on_throttle(sent_at=11)
    assert limiter.limit == 10
    succeed(limiter, 159, clock)  # 16 × the limit answers before one more slot
    assert limiter.limit == 10
    succeed(limiter, 1, clock)
    assert limiter.limit == 11


def test_fixed_limit_does_not_move():
    limiter = AdaptiveLimiter(fixed=8)
    limiter.on_throttle(sent_at=9)
    limiter.on_success()
    assert limiter.limit == 8


def test_acquire_blocks_at_the_limit_and_release_frees_a_slot():
    limiter = AdaptiveLimiter(fixed=2)
    assert limiter.acquire() == 1
    assert limiter.acquire() == 2
    stop = threading.Event()
    got: list[int | None] = []
    waiter = threading.Thread(target=lambda: got.append(limiter.acquire(stop)))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()
    limiter.release()
    waiter.join(2)
    assert got == [2]


def test_acquire_returns_none_once_stopped():
    limiter = AdaptiveLimiter(fixed=1)
    limiter.acquire()
    stop = threading.Event()
    stop.set()
    assert limiter.acquire(stop) is None


def bucket(rate: float | None) -> tuple[RateLimiter, Clock]:
    clock = Clock()
    return RateLimiter(rate, clock=clock, sleep=clock.sleep), clock


def test_rate_limiter_without_rate_never_waits():
    unlimited, clock = bucket(None)
    for _ in range(1000):
        unlimited.wait()
    assert clock.sleeps == []


def test_rate_limiter_lets_a_second_worth_through_then_spaces_requests_by_one_over_the_rate():
    capped, clock = bucket(4)
    for _ in range(4):
        capped.wait()
    assert clock.sleeps == []
    for _ in range(3):
        capped.wait()
    assert clock.sleeps == pytest.approx([0.25, 0.25, 0.25])


class SlowInt(int):
    """An in-flight level whose comparisons take a while: widens any read-modify-write done without the lock."""

    def __gt__(self, other: object) -> bool:
        time.sleep(0.0005)
        return int(self) > int(other)  # type: ignore[call-overload]

    def __lt__(self, other: object) -> bool:
        time.sleep(0.0005)
        return int(self) < int(other)  # type: ignore[call-overload]


class SlowFloat(float):
    """A latency whose arithmetic takes a while (same purpose as SlowInt)."""

    def __rmul__(self, other: object) -> float:
        time.sleep(0.0005)
        return float(self) * float(other)  # type: ignore[arg-type]


def hammer(limiter: AdaptiveLimiter, threads: int, rounds: int) -> list[int]:
    """Each thread: acquire, release, report a throttle or a success at its own level; returns the levels."""
    levels: list[int] = []
    levels_lock = threading.Lock()
    start = threading.Barrier(threads)

    def work(number: int) -> None:
        start.wait()
        for round_ in range(rounds):
            sent_at = limiter.acquire()
            assert sent_at is not None
            limiter.release()
            if round_ % 5 == 4:
                limiter.on_throttle(sent_at=1)
                continue
            level = SlowInt(round_ * threads + number + 1)
            with levels_lock:
                levels.append(level)
            limiter.on_success(SlowFloat(0.01), sent_at=level)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    return levels


@pytest.mark.parametrize("attempt", range(3))
def test_counters_add_up_under_many_threads(attempt):
    limiter = AdaptiveLimiter(initial=64, maximum=64)
    threads, rounds = 16, 25
    levels = hammer(limiter, threads, rounds)
    assert len(levels) == threads * rounds * 4 // 5
    assert limiter.in_flight == 0
    assert limiter.throttled == threads * rounds // 5
    assert limiter.worked_level == max(levels)


@pytest.mark.parametrize("attempt", range(3))
def test_a_fixed_limiter_counts_successes_under_its_lock_too(attempt):
    limiter = AdaptiveLimiter(fixed=64)
    levels = hammer(limiter, 16, 25)
    assert limiter.in_flight == 0
    assert limiter.worked_level == max(levels)


def test_a_rate_or_bandwidth_throttle_leaves_the_concurrency_alone():
    limiter = AdaptiveLimiter(initial=40)
    limiter.on_throttle(sent_at=39, kind="rate")
    limiter.on_throttle(sent_at=39, kind="bandwidth")
    assert limiter.limit == 40
    assert limiter.ceiling is None
    assert limiter.throttled == 2


def test_stray_bandwidth_throttles_do_not_hold_growth_but_an_overrun_does():
    for every, grows in ((20, True), (2, False)):  # one answer in twenty throttled at random, or every other one
        clock = Clock()
        limiter = AdaptiveLimiter(initial=16, clock=clock)
        limiter.rate = RateLimiter(None, clock=clock, sleep=clock.sleep)
        for n in range(300):
            succeed(limiter, 1, clock)
            limiter.rate.on_success()
            if n % every == 0:
                limiter.on_throttle(sent_at=limiter.in_flight, kind="bandwidth")
                limiter.rate.on_throttle()
        assert (limiter.limit >= 64) is grows, (every, limiter.limit)


def test_a_stray_throttle_at_a_level_that_worked_does_not_lower_the_limit():
    clock = Clock()
    limiter = AdaptiveLimiter(initial=40, clock=clock)
    succeed(limiter, 1, clock)
    limit = limiter.limit
    for _ in range(10):  # 5% of answers throttled at random, at levels that worked
        clock.now += 1.0
        succeed(limiter, 19, clock)
        limiter.on_throttle(sent_at=20)
    assert limiter.limit >= limit


def test_throttles_that_keep_coming_at_a_level_that_worked_lower_the_limit():
    clock = Clock()
    limiter = AdaptiveLimiter(initial=40, clock=clock)
    limiter.on_success(0.1, sent_at=40)
    for _ in range(30):  # half the answers throttled: another batch shares the endpoint
        clock.now += 1.0
        limiter.on_success(0.1, sent_at=20)
        limiter.on_throttle(sent_at=20)
    assert limiter.limit < 30


def test_a_service_timeout_halves_the_limit_once_per_burst():
    clock = Clock()
    limiter = AdaptiveLimiter(initial=200, clock=clock)
    limiter.on_timeout(60.0)
    limiter.on_timeout(60.0)
    assert limiter.limit == 100
    clock.now += 100.0
    limiter.on_timeout(61.0)
    assert limiter.limit == 50


def test_no_growth_where_answers_would_pass_the_budget_of_the_time_limit():
    clock = Clock()
    limiter = AdaptiveLimiter(initial=16, latency_limit=10.0, clock=clock)
    # 7.5 s at 16 in flight: 18 in flight could take 18/16 of that, past 7 s (0.7 of the 10 s limit)
    succeed(limiter, 200, clock, latency=7.5)
    assert limiter.limit == 16
    limiter = AdaptiveLimiter(initial=16, latency_limit=10.0, clock=clock)
    succeed(limiter, 200, clock, latency=9.0)  # beyond 0.85 of the limit: shrink
    assert limiter.limit < 16


def test_the_time_limit_is_the_platforms_or_the_clients_whichever_is_shorter():
    assert AdaptiveLimiter().latency_limit == 60.0
    assert AdaptiveLimiter(latency_limit=300.0).latency_limit == 60.0
    assert AdaptiveLimiter(latency_limit=3.0).latency_limit == 3.0


def test_throughput_per_concurrency_is_read_by_littles_law():
    clock = Clock()
    limiter = AdaptiveLimiter(initial=8, maximum=8, clock=clock)
    saturate(limiter)
    for _ in range(40):  # 8 in flight, each answered after 0.5 s: 16 rows/s
        clock.now += 0.5 / 8
        limiter.release()
        limiter.on_success(0.5, sent_at=8)
        saturate(limiter)
    level = limiter._levels[6]  # the half-octave of 8
    assert level.rows_s == pytest.approx(16.0, rel=0.05)


def test_rate_limiter_learns_the_endpoint_rate_from_sustained_rate_throttles():
    learning, clock = bucket(None)
    allowed, last = 60.0, clock.now  # the endpoint lets 60 requests a second through; one a second's burst
    for _ in range(600):  # the batch would start 100 a second
        learning.wait()
        clock.now += 0.01
        allowed = min(60.0, allowed + (clock.now - last) * 60)
        last = clock.now
        if allowed >= 1:
            allowed -= 1
            learning.on_success()
        else:
            learning.on_throttle()
    assert learning.learned
    # It regrows to the edge, where throttles come back, and is cut again once they are 15% of the answers
    assert 45 <= learning.rate <= 1.2 * 60
    learned = learning.rate
    learning.on_throttle()  # the same burst: no second cut
    assert learning.rate == learned
    for _ in range(int(learned + 5) * 30):  # thirty seconds' worth of successes: throttles long gone
        learning.on_success()
    assert learning.rate > 1.5 * learned  # 3% a second's worth of successes, compounded


def endpoint_limit(
    learning: RateLimiter, clock: Clock, rate: float, seconds: float, wanted: float = 100.0
) -> list[bool]:
    """The batch starts ``wanted`` requests a second through ``learning``; an endpoint lets ``rate`` a second
    through (a token bucket holding one second's worth, as the platform's). Whether each answer was a throttle."""
    allowed, last, throttled = rate, clock.now, []
    end = clock.now + seconds
    while clock.now < end:
        learning.wait()
        clock.now += 1 / wanted
        allowed = min(rate, allowed + (clock.now - last) * rate)
        last = clock.now
        throttled.append(allowed < 1)
        if allowed >= 1:
            allowed -= 1
            learning.on_success()
        else:
            learning.on_throttle()
    return throttled


def test_a_learned_rate_steps_back_from_the_edge_it_regrew_past():
    learning, clock = bucket(None)
    throttled = endpoint_limit(learning, clock, 60.0, seconds=120.0)
    assert learning.learned
    # Regrowing 3% a second, it passes the edge every few seconds; a few throttles in fifty answers step it
    # back, so that throttles stay a small share (a sustained 15% would otherwise be needed for a cut)
    last_minute = throttled[len(throttled) // 2 :]
    assert sum(last_minute) / len(last_minute) <= 0.05


def test_a_first_learned_rate_starts_with_an_empty_bucket():
    learning, clock = bucket(None)
    for _ in range(200):  # two seconds at 100 a second with no rate: the bucket must not save those up
        learning.wait()
        clock.now += 0.01
        learning.on_success()
    for _ in range(20):
        learning.wait()
        learning.on_throttle()
    assert learning.learned
    clock.sleeps.clear()
    for _ in range(11):
        learning.wait()
    assert sum(clock.sleeps) >= 10 / learning.rate - 1e-9  # one token at most, then spaced by 1 / rate


def test_the_first_tenancy_rate_cut_starts_below_the_documented_limit():
    from odsc_magics.predict_limits import TENANCY_RPS

    for kind, most in (("rate", 0.9 * TENANCY_RPS), ("bandwidth", 0.9 * 400)):
        learning, clock = bucket(None)
        for _ in range(200):  # 400 answers a second (a limit's burst passing): more than gets through later
            learning.wait()
            clock.now += 0.0025
            learning.on_success()
        for _ in range(20):
            learning.on_throttle(kind)
        assert learning.learned
        # (a bandwidth limit has no documented rate: what got through counts)
        assert 0.85 * most <= learning.rate <= 1.02 * most


def test_a_stray_rate_throttle_teaches_the_bucket_nothing():
    learning, clock = bucket(None)
    for n in range(2000):  # 3% of answers throttled, at random moments
        learning.wait()
        clock.now += 0.01
        learning.on_success()
        if n % 33 == 0:
            learning.on_throttle()
    assert not learning.learned and learning.rate is None


def test_a_learned_rate_never_exceeds_the_callers_cap():
    capped, clock = bucket(50)
    for _ in range(60):
        capped.wait()
        clock.now += 0.01
        capped.on_throttle()
    for _ in range(10_000):
        capped.on_success()
    assert capped.rate == 50


def test_random_throttles_do_not_slow_the_requests_for_long():
    learning, clock = bucket(None)
    starts = []
    for n in range(4000):  # 100 requests a second wanted, 6% throttled whatever the rate, after a burst of them
        learning.wait()
        starts.append(clock.now)
        clock.now += 0.01
        if n % 17 == 0 or 500 <= n < 520:
            learning.on_throttle()
        else:
            learning.on_success()
        if n == 520:
            assert learning.learned  # the burst looked like a rate limit
    last = [at for at in starts if at > starts[-1] - 5.0]
    assert len(last) / 5.0 >= 95  # the throttles that stayed at the lower rate were noise: back to full speed


def test_a_few_429s_among_many_requests_sent_above_every_level_that_worked_reveal_no_capacity():
    limiter = AdaptiveLimiter(initial=40)
    limiter.on_success(0.1, sent_at=30)
    limiter.on_throttle(sent_at=36)  # a suspicion: growth holds
    for _ in range(40):
        saturate(limiter)  # forty requests go out at 36..40 meanwhile
        limiter.release()
    for level in (38, 39, 40):
        limiter.on_throttle(sent_at=level)  # three of them refused: a capacity would have refused nearly all
    assert limiter.ceiling is None and limiter.limit == 40
