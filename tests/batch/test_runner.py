"""The batch runner against an in-process stand-in endpoint: every row once, retries, fatal stops."""

from __future__ import annotations

import errno
import random
import socket
import threading
import time
from types import SimpleNamespace

import pytest

from odsc_magics import errors
from odsc_magics.batch.runner import CONNECT_FAILURES_TO_STOP, BatchRunner, Job, Outcome, unreachable_reason
from odsc_magics.retry import RetryPolicy, classify_failure


def connect_failure(exc: BaseException) -> str | None:
    return unreachable_reason(classify_failure(exc))


class FlakyEndpoint:
    """Holds `capacity` requests at once (429 beyond), fails some attempts, records successes."""

    def __init__(self, capacity: int, *, fail_rate: float = 0.0, seed: int = 7) -> None:
        self.capacity = capacity
        self.fail_rate = fail_rate
        self.in_flight = 0
        self.lock = threading.Lock()
        self.random = random.Random(seed)
        self.succeeded: list[int] = []

    def send(self, job: Job) -> SimpleNamespace:
        with self.lock:
            self.in_flight += 1
            over = self.in_flight > self.capacity
            fail = self.random.random() < self.fail_rate
        try:
            if over:
                raise errors.RateLimitError("too many", status=429)
            time.sleep(0.002)
            if fail:
                raise errors.ServerError("boom", status=500)
            with self.lock:
                self.succeeded.append(job.position)
            usage = {"prompt_tokens": 3, "completion_tokens": 2}
            return SimpleNamespace(
                text=f"answer {job.request}", finish_reason="stop", usage=usage, latency_s=0.002
            )
        finally:
            with self.lock:
                self.in_flight -= 1


def run(endpoint: FlakyEndpoint, rows: int, **options):
    delivered: dict[int, Outcome] = {}
    lock = threading.Lock()

    def deliver(job: Job, outcome: Outcome) -> None:
        with lock:
            assert job.position not in delivered
            delivered[job.position] = outcome

    runner = BatchRunner(endpoint.send, deliver, **options)
    tally = runner.run(Job(i, f"q{i}") for i in range(rows))
    return runner, tally, delivered


def test_every_row_is_answered_once_despite_throttling_and_failures():
    endpoint = FlakyEndpoint(capacity=8, fail_rate=0.1)
    runner, tally, delivered = run(endpoint, 300)
    assert sorted(delivered) == list(range(300))
    assert all(outcome.error is None for outcome in delivered.values())
    assert sorted(endpoint.succeeded) == list(range(300))
    assert tally.done == 300
    assert runner.limiter.peak <= 64


def test_rows_fail_after_their_retries_with_the_error_recorded():
    endpoint = FlakyEndpoint(capacity=100, fail_rate=1.0)
    _, tally, delivered = run(endpoint, 5, max_retries=2)
    assert tally.failed == 5
    assert {outcome.attempts for outcome in delivered.values()} == {3}
    assert all("HTTP 500" in outcome.error for outcome in delivered.values())


def test_a_fatal_error_stops_the_batch():
    def send(job: Job):
        raise errors.AuthenticationError("bad signature", status=401)

    runner = BatchRunner(send, lambda job, outcome: None, concurrency=2)
    runner.run(Job(i, "x") for i in range(50))
    assert isinstance(runner.fatal, errors.AuthenticationError)
    assert runner.tally.requests < 50


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (errors.RateLimitError("x", status=429), "throttle"),
        (errors.ServerError("x", status=503), "throttle"),
        (errors.ServerError("x", status=500), "retry"),
        (errors.BadRequestError("x", status=408), "retry"),
        (errors.EndpointUnreachableError("reset"), "retry"),
        (errors.BadRequestError("x", status=400), "final"),
        (errors.NotFoundError("x", status=404), "fatal"),
    ],
)
def test_classify(error, kind):
    assert classify_failure(error).action == kind


def unreachable(cause: OSError) -> errors.EndpointUnreachableError:
    """The client's error for a transport failure, with the OS error in its chain as the client leaves it."""
    try:
        try:
            raise cause
        except OSError:
            raise errors.EndpointUnreachableError("Could not reach llm-a (ConnectionError).", target="llm-a") from None
    except errors.EndpointUnreachableError as exc:
        return exc


def test_only_connections_that_could_not_be_opened_count_as_the_endpoint_being_gone():
    assert connect_failure(unreachable(ConnectionRefusedError(111, "Connection refused"))) == "refused connections"
    assert connect_failure(unreachable(OSError(errno.EHOSTUNREACH, "No route to host"))) == "could not be reached"
    assert connect_failure(unreachable(ConnectionResetError(104, "Connection reset by peer"))) is None
    assert connect_failure(errors.ServerError("boom", status=500)) is None


def test_a_name_that_does_not_resolve_counts_as_unreachable():
    from urllib3.exceptions import NameResolutionError

    lookup = NameResolutionError("llm.example", None, socket.gaierror(-2, "Name or service not known"))  # type: ignore[arg-type]
    try:
        try:
            raise lookup
        except NameResolutionError:
            raise errors.EndpointUnreachableError("Could not reach llm-a (ConnectionError).") from None
    except errors.EndpointUnreachableError as exc:
        assert connect_failure(exc) == "could not be reached"
    assert connect_failure(errors.ServerError("boom", status=500)) is None


def test_refused_connections_stop_the_batch_after_a_few_and_fail_the_rest_unsent():
    def send(job: Job):
        raise unreachable(ConnectionRefusedError(111, "Connection refused"))

    delivered: dict[int, Outcome] = {}
    runner = BatchRunner(send, lambda job, outcome: delivered.setdefault(job.position, outcome), concurrency=1)
    runner.run(Job(i, "x") for i in range(50))
    assert runner.tally.requests == CONNECT_FAILURES_TO_STOP
    assert sorted(delivered) == list(range(50))
    assert all("llm-a refused connections 3 times in a row" in outcome.error for outcome in delivered.values())
    assert sum(outcome.attempts for outcome in delivered.values()) == CONNECT_FAILURES_TO_STOP
    assert runner.tally.failed == 50


def test_an_answer_between_refusals_and_dropped_connections_keep_the_batch_going():
    outcomes = iter(["refused", "refused", "ok", "refused", "refused", "reset", "reset", "reset", "reset"])

    def send(job: Job):
        what = next(outcomes, "ok")
        if what == "refused":
            raise unreachable(ConnectionRefusedError(111, "Connection refused"))
        if what == "reset":
            raise unreachable(ConnectionResetError(104, "Connection reset by peer"))
        return SimpleNamespace(text="fine", finish_reason="stop", usage={}, latency_s=0.0)

    delivered: dict[int, Outcome] = {}
    runner = BatchRunner(send, lambda job, outcome: delivered.setdefault(job.position, outcome), concurrency=1,
                         max_retries=9)  # fmt: skip
    runner.retry_policy = RetryPolicy(max_retries=9, base=0.0)
    runner.run(Job(i, "x") for i in range(3))
    assert runner.unreachable is None
    assert [delivered[i].error for i in range(3)] == [None, None, None]
