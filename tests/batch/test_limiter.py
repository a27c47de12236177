"""The adaptive limiter's arithmetic and the rate cap's bookkeeping."""

from __future__ import annotations

import threading

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


def test_rate_limiter_without_rate_never_waits():
    RateLimiter(None).wait()
