"""Runs many independent requests at the endpoint's capacity: adaptive concurrency, retries, no lost rows."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from odsc_magics.batch.limiter import AdaptiveLimiter, RateLimiter
from odsc_magics.retry import Failure, RetryPolicy, classify_failure

# Connections that could not be opened this many times in a row, with no answer between, stop the batch.
CONNECT_FAILURES_TO_STOP = 3
_NOT_SENT = "not sent: endpoint unreachable"


@dataclass
class Job:
    """One row's work: where its answer goes, what to send, and the checkpoint key naming it."""

    position: int
    request: Any
    key: str | None = None
    attempts: int = 0
    error: str | None = None  # set for rows that fail before sending (e.g. a missing template value)


@dataclass
class Outcome:
    """What a finished row gets in the output columns."""

    text: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    attempts: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The outcome as a plain dict (checkpoint rows)."""
        return dict(self.__dict__)


@dataclass
class Tally:
    """Counters shown by the progress bar and the summary."""

    total: int = 0
    done: int = 0
    failed: int = 0
    resumed: int = 0
    retrying: int = 0
    requests: int = 0
    throttled: int = 0
    tokens: int = 0
    failures: Counter = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    busy_seconds: float = 0.0

    @property
    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.started


def unreachable_reason(failure: Failure) -> str | None:
    """How a connection could not even be opened ("refused connections" / "could not be reached"), else None.

    Only the connect phase counts (retry.classify_failure's "unreachable"): a dropped or reset connection may
    be a fault of one request; a refused one means nothing is listening, and every further request would be
    refused too.
    """
    if failure.action != "unreachable":
        return None
    return "refused connections" if failure.kind == "refused" else "could not be reached"


def failure_kind(exc: BaseException) -> str:
    """A short name for the summary's failures-by-kind."""
    status = getattr(exc, "status", None)
    if status:
        return f"HTTP {status}"
    return type(exc).__name__


def describe_error(exc: BaseException) -> str:
    """The text put in a failed row's error column."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    status = getattr(exc, "status", None)
    return f"HTTP {status}: {message}" if status else message


class BatchRunner:
    """Sends every job through ``send`` and delivers each finished row to ``deliver`` exactly once."""

    def __init__(
        self,
        send: Callable[[Job], Any],
        deliver: Callable[[Job, Outcome], None],
        *,
        concurrency: int | str = "auto",
        max_retries: int = 6,
        max_rps: float | None = None,
        stop_on_failure: bool = False,
        on_progress: Callable[[Tally, AdaptiveLimiter], None] | None = None,
        max_concurrency: int = 256,
        latency_limit: float | None = None,
    ) -> None:
        fixed = None if concurrency == "auto" else int(concurrency)
        self.limiter = AdaptiveLimiter(initial=16, maximum=max_concurrency, fixed=fixed, latency_limit=latency_limit)
        self.rate = RateLimiter(max_rps)
        self.limiter.rate = self.rate
        self.send = send
        self.deliver = deliver
        self.retry_policy = RetryPolicy(max_retries=max_retries)
        self.stop_on_failure = stop_on_failure
        self.on_progress = on_progress
        self.tally = Tally()
        self.stop = threading.Event()
        self.fatal: BaseException | None = None
        self.first_failure: BaseException | None = None
        self.unreachable: str | None = None  # why the batch stopped sending: the endpoint refuses connections
        self._connect_failures = 0
        self._connection_lost = False  # a connection failed since the last answer
        self._retries: list[tuple[float, int, Job]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._running = 0
        self._workers = ThreadPoolExecutor(max_workers=self.limiter.maximum, thread_name_prefix="odsc-batch")

    def run(self, jobs: Iterable[Job]) -> Tally:
        """Dispatch every job; returns when all are finished or the run was stopped."""
        feed = iter(jobs)
        exhausted = False
        try:
            while not self.stop.is_set():
                if self._probing():
                    self._wait_for_work()
                    continue
                job = self._next_retry()
                if job is None and not exhausted:
                    job = next(feed, None)
                    if job is None:
                        exhausted = True
                    elif job.error is not None:
                        self._finish(job, Outcome(attempts=0, error=job.error), failed=True, kind="template")
                        continue
                if job is None:
                    if exhausted and self._idle():
                        break
                    self._wait_for_work()
                    continue
                sent_at = self.limiter.acquire(self.stop)
                if sent_at is None:
                    self._requeue(job, 0.0)
                    break
                with self._cond:
                    held = self._connection_lost and self._running > 0  # lost while this waited for a slot
                    if not held:
                        self._running += 1
                if held:
                    self.limiter.release()
                    self._requeue(job, 0.0)
                    continue
                self.rate.wait()
                self._workers.submit(self._attempt, job, sent_at)
            if self.fatal is not None or self.stop_on_failure or self.unreachable is not None:
                self._drain()
            if self.unreachable is not None:
                self._give_up(feed, self.unreachable)
        except BaseException:
            # Interrupted: send nothing more, give the requests in flight a moment to land (their rows are
            # delivered and checkpointed), then hand control back without waiting for slow ones.
            self.stop.set()
            self._workers.shutdown(wait=False, cancel_futures=True)
            self._drain(timeout=2.0)
            raise
        self._workers.shutdown(wait=True)
        return self.tally

    def _attempt(self, job: Job, sent_at: int) -> None:
        if self.unreachable is not None:  # the batch stopped sending while this job waited for a worker
            self.limiter.release()
            self._finish(job, Outcome(attempts=job.attempts, error=self.unreachable), failed=True, kind=_NOT_SENT)
            with self._cond:
                self._running -= 1
                self._cond.notify_all()
            return
        job.attempts += 1
        start = time.monotonic()
        try:
            result = self.send(job)
        except Exception as exc:
            failure = classify_failure(exc)
            if failure.action == "unreachable" or failure.kind == "transport":
                with self._cond:  # before the slot is given back, so that no request takes it meanwhile
                    self._connection_lost = True
            self.limiter.release()
            self._failed_attempt(job, exc, sent_at, failure, time.monotonic() - start)
        else:
            latency = time.monotonic() - start
            self.limiter.release()
            with self._cond:
                self._connect_failures = 0
                self._connection_lost = False
            usage = getattr(result, "usage", None) or {}
            self.limiter.on_success(latency, sent_at, usage.get("completion_tokens"))
            self.rate.on_success()
            outcome = Outcome(
                text=result.text,
                finish_reason=result.finish_reason,
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
                latency_s=round(getattr(result, "latency_s", latency), 6),
                attempts=job.attempts,
            )
            self._finish(job, outcome, failed=False)
        finally:
            with self._cond:
                self._running -= 1
                self.tally.requests += 1
                self.tally.busy_seconds += time.monotonic() - start
                self._cond.notify_all()

    def _failed_attempt(
        self, job: Job, exc: Exception, sent_at: int, failure: Failure, latency: float | None = None
    ) -> None:
        kind, retry_after = failure.action, failure.retry_after
        limit = failure.kind if kind == "throttle" else None
        why = unreachable_reason(failure)
        if why is not None:
            with self._cond:
                self._connect_failures += 1
                if self._connect_failures >= CONNECT_FAILURES_TO_STOP and self.unreachable is None:
                    self.unreachable = _stopped_sending(exc, why, self._connect_failures)
                    self.stop.set()
                stopped = self.unreachable
            if stopped is not None:
                self._finish(job, Outcome(attempts=job.attempts, error=stopped), failed=True, kind=why)
                return
        if kind == "throttle":
            if limit == "timeout":
                self.limiter.on_timeout(latency)
            else:
                self.limiter.on_throttle(sent_at, retry_after, kind=limit or "concurrency")
            if limit in ("rate", "bandwidth"):
                self.rate.on_throttle(limit)
            with self._cond:
                self.tally.throttled += 1
        if kind == "fatal":
            with self._cond:
                self.fatal = self.fatal or exc
            self.stop.set()
            self._finish(
                job,
                Outcome(attempts=job.attempts, error=describe_error(exc)),
                failed=True,
                kind=failure_kind(exc),
            )
            return
        retried = failure.retried or why is not None  # unreachable: tried again until the batch stops sending
        if retried and job.attempts <= self.retry_policy.max_retries and not self.stop.is_set():
            self._requeue(job, self.retry_policy.delay(job.attempts - 1, retry_after))
            return
        self._finish(
            job,
            Outcome(attempts=job.attempts, error=describe_error(exc)),
            failed=True,
            kind=failure_kind(exc),
        )
        if self.stop_on_failure:
            with self._cond:
                self.first_failure = self.first_failure or exc
            self.stop.set()

    def _finish(self, job: Job, outcome: Outcome, *, failed: bool, kind: str | None = None) -> None:
        try:
            self.deliver(job, outcome)
        except Exception as exc:  # e.g. the checkpoint cannot be written: stop rather than lose track silently
            with self._cond:
                self.fatal = self.fatal or exc
            self.stop.set()
        with self._cond:
            if failed:
                self.tally.failed += 1
                self.tally.failures[kind or "error"] += 1
            else:
                self.tally.done += 1
                self.tally.tokens += outcome.completion_tokens or 0
        if self.on_progress is not None:
            self.on_progress(self.tally, self.limiter)

    def note_resumed(self) -> None:
        """A row was answered already (found in a checkpoint): counted as done, not sent."""
        with self._cond:
            self.tally.resumed += 1
            self.tally.done += 1

    def _give_up(self, feed: Iterable[Job], error: str) -> None:
        """Fail every row not finished (waiting for a retry, or never sent) with ``error``; nothing is sent."""
        with self._cond:
            waiting = [entry[2] for entry in sorted(self._retries)]
            self._retries.clear()
            self.tally.retrying = 0
        for job in itertools.chain(waiting, feed):
            if job.error is not None:
                self._finish(job, Outcome(attempts=0, error=job.error), failed=True, kind="template")
            else:
                self._finish(job, Outcome(attempts=job.attempts, error=error), failed=True, kind=_NOT_SENT)

    def _requeue(self, job: Job, delay: float) -> None:
        with self._cond:
            heapq.heappush(self._retries, (time.monotonic() + delay, next(self._seq), job))
            self.tally.retrying = len(self._retries)
            self._cond.notify_all()

    def _next_retry(self) -> Job | None:
        with self._cond:
            if self._retries and self._retries[0][0] <= time.monotonic():
                job = heapq.heappop(self._retries)[2]
                self.tally.retrying = len(self._retries)
                return job
        return None

    def _probing(self) -> bool:
        """True after a connection failed (refused, reset, dropped) until an answer comes: one request at a time
        meanwhile, so that an endpoint gone away costs a few failed requests rather than one per slot."""
        with self._cond:
            return self._connection_lost and self._running > 0

    def _idle(self) -> bool:
        with self._cond:
            return self._running == 0 and not self._retries

    def _wait_for_work(self) -> None:
        with self._cond:
            timeout = 0.05
            if self._retries:
                timeout = min(timeout, max(0.0, self._retries[0][0] - time.monotonic()))
            self._cond.wait(timeout=timeout)

    def _drain(self, timeout: float | None = None) -> None:
        """Let in-flight requests finish (their rows are kept); queued retries are not sent."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._running and (deadline is None or time.monotonic() < deadline):
                self._cond.wait(timeout=0.1)

    def unfinished(self) -> list[Job]:
        """Jobs waiting for a retry when the run stopped."""
        with self._cond:
            return [entry[2] for entry in self._retries]


def _stopped_sending(exc: BaseException, why: str, times: int) -> str:
    """The error of every row the batch could not answer once the endpoint stopped taking connections."""
    target = getattr(exc, "target", None) or "the endpoint"
    hint = getattr(exc, "hint", "") or "Check that the deployment is ACTIVE and its URL reachable."
    return (
        f"{target} {why} {times} times in a row, so the batch stopped sending. {hint} "
        "Then run predict_frame again: with checkpoint= only the rows not answered yet are sent."
    )

