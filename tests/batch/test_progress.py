"""The progress bar's view of the controller and the run's summary."""

from __future__ import annotations

from odsc_magics.batch.limiter import AdaptiveLimiter, RateLimiter
from odsc_magics.batch.progress import controller_view, summarize
from odsc_magics.batch.runner import Tally


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_view_shows_concurrency_alone_before_anything_is_learned():
    limiter = AdaptiveLimiter(initial=16)
    limiter.rate = RateLimiter(None)
    assert controller_view(limiter) == {"conc": 16}


def test_the_view_shows_a_learned_rate_and_how_much_longer_answers_wait_than_at_the_knee():
    clock = Clock()
    limiter = AdaptiveLimiter(initial=16, clock=clock)
    limiter.rate = RateLimiter(None, clock=clock)
    limiter.rate.rate, limiter.rate.learned = 142.4, True
    for _ in range(4):
        limiter.acquire()  # four in flight all along
    for _ in range(20):  # answers in 0.5 s
        clock.now += 0.125
        limiter.release()
        limiter.acquire()
        limiter.on_success(0.5, sent_at=4)
    for _ in range(40):  # then in 2.5 s: about 2 s of it in line
        clock.now += 0.625
        limiter.release()
        limiter.acquire()
        limiter.on_success(2.5, sent_at=4)
    view = controller_view(limiter)
    assert view["rate"] == "142/s"
    assert 1.5 <= float(view["wait"].rstrip("s")) <= 2.0
    assert view["conc"] == limiter.limit


def test_the_summary_keeps_the_controllers_figures():
    limiter = AdaptiveLimiter(initial=16)
    limiter.rate = RateLimiter(50)
    tally = Tally(total=10, done=10, requests=12, throttled=2)
    summary = summarize(tally, limiter)
    assert summary["final_concurrency"] == 16 and summary["rate_limit"] == 50
    assert summary["requests"] == 12 and summary["throttled"] == 2
