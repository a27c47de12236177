"""The adaptive limiter's arithmetic, its counters under many threads, and the rate cap's bookkeeping."""

from __future__ import annotations

import threading
import time

import pytest

from odsc_magics.batch import limiter as limiter_module
from odsc_magics.batch.limiter import AdaptiveLimiter, RateLimiter


def saturate(limiter: AdaptiveLimiter) -> None:
    while limiter.in_flight < limiter.limit:
        limiter.acquire()


def succeed(limiter: AdaptiveLimiter, times: int) -> None:
    """Each time: one request comes back, and the freed slots are filled again (the endpoint stays full)."""
    for _ in range(times):
        saturate(limiter)
        limiter.release()
        limiter.on_success()
    saturate(limiter)


def test_slow_start_grows_two_slots_per_success_until_a_throttle():
    limiter = AdaptiveLimiter(initial=4)
    succeed(limiter, 10)
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
    limiter.on_throttle(sent_at=33)
    assert limiter.limit == 32
    assert limiter.ceiling == 32


def test_throttles_from_one_burst_lower_the_limit_once():
    limiter = AdaptiveLimiter(initial=40)
    limiter.on_throttle(sent_at=33)
    limiter.on_throttle(sent_at=35)
    limiter.on_throttle(sent_at=34)
    assert limiter.limit == 32


def test_a_throttle_at_a_level_that_worked_backs_off_gently():
    limiter = AdaptiveLimiter(initial=40)
    limiter.on_success(sent_at=10)
    limiter.on_throttle(sent_at=2)  # not a concurrency signal: a rate limit or noise
    assert limiter.limit == 36
    assert limiter.ceiling == 36


def test_a_throttle_above_every_level_that_worked_is_a_capacity_signal_at_most_halving():
    limiter = AdaptiveLimiter(initial=40)
    limiter.on_throttle(sent_at=2)
    assert limiter.limit == 20


def test_a_throttle_near_the_limit_sets_the_ceiling_to_what_was_in_flight():
    limiter = AdaptiveLimiter(initial=40)
    limiter.on_throttle(sent_at=31)
    assert limiter.limit == 30
    assert limiter.ceiling == 30


def test_probing_above_the_ceiling_is_slow():
    limiter = AdaptiveLimiter(initial=12)
    limiter.on_throttle(sent_at=11)
    assert limiter.limit == 10
    succeed(limiter, 79)
    assert limiter.limit == 10
    succeed(limiter, 1)
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


class Sleeps:
    """Stands in for time.sleep in the limiter module: records each wait and lets the clock run on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[float] = []
        self.now = 1000.0
        monkeypatch.setattr(limiter_module.time, "sleep", self.sleep)
        monkeypatch.setattr(limiter_module.time, "monotonic", lambda: self.now)

    def sleep(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.now += seconds


def test_rate_limiter_without_rate_never_waits(monkeypatch):
    sleeps = Sleeps(monkeypatch)
    unlimited = RateLimiter(None)
    for _ in range(1000):
        unlimited.wait()
    assert sleeps.calls == []


def test_rate_limiter_lets_a_second_worth_through_then_spaces_requests_by_one_over_the_rate(monkeypatch):
    sleeps = Sleeps(monkeypatch)
    capped = RateLimiter(4)
    for _ in range(4):
        capped.wait()
    assert sleeps.calls == []
    for _ in range(3):
        capped.wait()
    assert sleeps.calls == pytest.approx([0.25, 0.25, 0.25])


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


def test_a_stray_throttle_at_a_level_that_worked_does_not_lower_the_limit(monkeypatch):
    sleeps = Sleeps(monkeypatch)
    limiter = AdaptiveLimiter(initial=40)
    limiter.on_success(sent_at=40)
    limiter.on_throttle(sent_at=41)  # a probe above the capacity
    assert limiter.limit == 39
    for _ in range(10):  # 5% of answers throttled at random, at levels that worked
        sleeps.now += 1.0
        succeed(limiter, 19)
        limiter.on_throttle(sent_at=20)
    assert limiter.limit >= 39


def test_throttles_that_keep_coming_at_a_level_that_worked_lower_the_limit(monkeypatch):
    sleeps = Sleeps(monkeypatch)
    limiter = AdaptiveLimiter(initial=40)
    limiter.on_success(sent_at=40)
    limiter.on_throttle(sent_at=41)
    for _ in range(30):  # half the answers throttled: another batch shares the endpoint
        sleeps.now += 1.0
        limiter.on_success(sent_at=20)
        limiter.on_throttle(sent_at=20)
    assert limiter.limit < 30


def test_a_service_timeout_halves_the_limit_once_per_burst(monkeypatch):
    sleeps = Sleeps(monkeypatch)
    limiter = AdaptiveLimiter(initial=200)
    limiter.on_timeout(60.0)
    limiter.on_timeout(60.0)
    assert limiter.limit == 100
    sleeps.now += 100.0
    limiter.on_timeout(61.0)
    assert limiter.limit == 50
    assert limiter.ceiling == 50


def test_no_growth_while_answers_take_near_the_time_that_met_a_timeout(monkeypatch):
    Sleeps(monkeypatch)
    limiter = AdaptiveLimiter(initial=64)
    limiter.on_timeout(60.0)
    assert limiter.limit == 32
    saturate(limiter)
    for _ in range(200):
        limiter.release()
        limiter.on_success(40.0, sent_at=32)
        saturate(limiter)
    assert limiter.limit == 32
    for _ in range(400):  # probing above the ceiling the timeout set: one slot per 8 × limit successes
        limiter.release()
        limiter.on_success(10.0, sent_at=32)
        saturate(limiter)
    assert limiter.limit > 32


def test_queue_wait_is_latency_beyond_the_no_load_time_per_token():
    limiter = AdaptiveLimiter(initial=4)
    limiter.on_success(1.0, sent_at=1, tokens=100)  # 10 ms a token, unloaded
    assert limiter.queue_wait == 0.0
    for _ in range(100):
        limiter.on_success(3.0, sent_at=4, tokens=100)  # 2 s in line before the same work
    assert limiter.queue_wait == pytest.approx(2.0, abs=0.3)


def test_rate_limiter_learns_the_endpoint_rate_from_rate_throttles(monkeypatch):
    sleeps = Sleeps(monkeypatch)
    bucket = RateLimiter(None)
    for _ in range(100):  # 100 requests a second, unlimited
        bucket.wait()
        sleeps.now += 0.01
    bucket.on_throttle()
    assert bucket.rate == pytest.approx(90, rel=0.05)
    bucket.on_throttle()  # the same burst: no second cut
    assert bucket.rate == pytest.approx(90, rel=0.05)
    learned = bucket.rate
    for _ in range(int(learned + 5) * 3):  # three seconds' worth of successes
        bucket.on_success()
    assert bucket.rate == pytest.approx(learned + 3, abs=0.5)
    before = len(sleeps.calls)
    for _ in range(200):
        bucket.wait()
    assert sleeps.calls[before:]  # now it spaces requests out


def test_a_learned_rate_never_exceeds_the_callers_cap(monkeypatch):
    sleeps = Sleeps(monkeypatch)
    bucket = RateLimiter(50)
    for _ in range(60):
        bucket.wait()
        sleeps.now += 0.01
    bucket.on_throttle()
    for _ in range(10_000):
        bucket.on_success()
    assert bucket.rate == 50
