"""A discrete-event endpoint on a fake clock, to drive the concurrency controller without sleeping."""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from odsc_magics.batch.limiter import AdaptiveLimiter

MAX_ATTEMPTS = 7


@dataclass
class FakeClock:
    """Time that moves only when the simulation says so."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Run:
    """What one simulated batch did: when it ended, its latencies, and its limit over time."""

    rows: int
    ended: float = 0.0
    started: float = 0.0
    latencies: list[float] = field(default_factory=list)
    limits: list[tuple[float, int]] = field(default_factory=list)
    throttled: int = 0
    timeouts: int = 0
    failed: int = 0
    timed_out_at: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    @property
    def rows_s(self) -> float:
        return self.rows / self.seconds

    @property
    def p50(self) -> float:
        return sorted(self.latencies)[len(self.latencies) // 2]

    @property
    def throttled_share(self) -> float:
        return self.throttled / (len(self.latencies) + self.throttled + self.timeouts)


@dataclass
class _Batch:
    run: Run
    limiter: AdaptiveLimiter
    pending: list[int]  # attempts made by each request waiting to be sent
    retries: list[tuple[float, int, int]] = field(default_factory=list)  # (when, seq, attempts)
    done: int = 0


def simulate(
    latency_at: Callable[[int], float],
    rows: int | list[int],
    *,
    concurrency: int | str = "auto",
    capacity: int | None = None,
    timeout_s: float | None = None,
    retry_delay: float = 0.2,
    stray_throttles: float = 0.0,
    starts: list[float] | None = None,
    slowdown: tuple[float, float] | None = None,
    seed: int = 7,
    maximum: int = 512,
) -> Run | list[Run]:
    """Send ``rows`` requests (a list: one batch each, sharing the endpoint, started at ``starts``); while ``n``
    are in service each gets 1 / ``latency_at(n)`` of its work (±5%) a second, so a request alone all its life
    takes ``latency_at(n)``. Beyond ``capacity`` in service a request is refused at once (a concurrency 429), and
    a share ``stray_throttles`` of the others too; one still unanswered after ``timeout_s`` comes back as a
    Service Timeout then. Failed requests are retried after
    ``retry_delay``, up to MAX_ATTEMPTS attempts. ``slowdown`` (when, factor): from then on every request
    takes ``factor`` times longer. ``maximum`` is each batch's max_concurrency."""
    clock = FakeClock()
    sizes = rows if isinstance(rows, list) else [rows]
    fixed = None if concurrency == "auto" else int(concurrency)
    batches = [
        _Batch(
            Run(size, started=(starts or [0.0] * len(sizes))[n]),
            AdaptiveLimiter(initial=16, maximum=maximum, fixed=fixed, latency_limit=timeout_s, clock=clock),
            [0] * size,
        )
        for n, size in enumerate(sizes)
    ]
    # Requests in service share the server (processor sharing): all progress at 1 / latency_at(n) of their
    # work a second while n are in service, so a request's latency follows the load over its whole life.
    work = 0.0  # the work each request in service has received since time 0
    serving: list[tuple[float, int]] = []  # (work at which it is done, id)
    deadlines: list[tuple[float, int]] = []  # (time it times out, id)
    requests: dict[int, tuple[int, int, float, int]] = {}  # id -> (batch, sent_at, sent, tries)
    refusals: list[tuple[float, int, int, int, float, int]] = []  # (at, seq, batch, sent_at, sent, tries)
    seq = itertools.count()
    randomness = random.Random(seed)

    def in_service() -> int:
        return len(requests)

    def send_what_fits() -> None:
        for number, batch in enumerate(batches):
            if batch.run.started > clock.now:
                continue
            while batch.retries and batch.retries[0][0] <= clock.now:
                batch.pending.append(heapq.heappop(batch.retries)[2])
            limiter = batch.limiter
            while batch.pending and limiter.in_flight < limiter.limit and limiter.paused_until <= clock.now:
                tries = batch.pending.pop() + 1
                sent_at = limiter.acquire()
                if (capacity is not None and in_service() >= capacity) or randomness.random() < stray_throttles:
                    heapq.heappush(refusals, (clock.now + 0.001, next(seq), number, sent_at, clock.now, tries))
                    continue
                ident = next(seq)
                requests[ident] = (number, sent_at, clock.now, tries)
                heapq.heappush(serving, (work + 0.95 + 0.1 * randomness.random(), ident))
                if timeout_s is not None:
                    heapq.heappush(deadlines, (clock.now + timeout_s, ident))

    def finish(number: int, kind: str, sent_at: int, sent: float, tries: int) -> None:
        batch = batches[number]
        batch.limiter.release()
        at = clock.now
        if kind == "ok":
            batch.done += 1
            batch.run.latencies.append(at - sent)
            batch.limiter.on_success(at - sent, sent_at)
        else:
            if kind == "throttle":
                batch.run.throttled += 1
                batch.limiter.on_throttle(sent_at)
            else:
                batch.run.timeouts += 1
                batch.run.timed_out_at.append(at)
                batch.limiter.on_timeout(at - sent)
            if tries < MAX_ATTEMPTS:
                heapq.heappush(batch.retries, (at + retry_delay, next(seq), tries))
            else:
                batch.done += 1
                batch.run.failed += 1
        if batch.done == batch.run.rows:
            batch.run.ended = at
        batch.run.limits.append((at, batch.limiter.limit))

    while any(batch.done < batch.run.rows for batch in batches):
        send_what_fits()
        while serving and serving[0][1] not in requests:
            heapq.heappop(serving)
        while deadlines and deadlines[0][1] not in requests:
            heapq.heappop(deadlines)
        seconds_per_work = latency_at(in_service()) if requests else 0.0
        if slowdown is not None and clock.now >= slowdown[0]:
            seconds_per_work *= slowdown[1]
        candidates = []
        if serving:
            candidates.append((clock.now + (serving[0][0] - work) * seconds_per_work, "ok"))
        if deadlines:
            candidates.append((deadlines[0][0], "timeout"))
        if refusals:
            candidates.append((refusals[0][0], "throttle"))
        wakes = [b.retries[0][0] for b in batches if b.retries]
        wakes += [b.run.started for b in batches if b.run.started > clock.now]
        wakes += [b.limiter.paused_until for b in batches if b.limiter.paused_until > clock.now]
        if slowdown is not None and clock.now < slowdown[0]:
            wakes.append(slowdown[0])
        if wakes:
            candidates.append((min(wakes), "wake"))
        at, kind = min(candidates)
        if requests and seconds_per_work > 0:
            work += (at - clock.now) / seconds_per_work
        clock.now = max(clock.now, at)
        if kind == "ok":
            ident = heapq.heappop(serving)[1]
            number, sent_at, sent, tries = requests.pop(ident)
            finish(number, "ok", sent_at, sent, tries)
        elif kind == "timeout":
            ident = heapq.heappop(deadlines)[1]
            number, sent_at, sent, tries = requests.pop(ident)
            finish(number, "timeout", sent_at, sent, tries)
        elif kind == "throttle":
            _, _, number, sent_at, sent, tries = heapq.heappop(refusals)
            finish(number, "throttle", sent_at, sent, tries)
    runs = [batch.run for batch in batches]
    return runs if isinstance(rows, list) else runs[0]


def vllm_like(base: float = 0.2, slowdown_at: int = 64, max_seqs: int = 128) -> Callable[[int], float]:
    """Latency of a continuous-batching server: each sequence slows as the batch grows (memory-bound decode),
    and beyond ``max_seqs`` requests wait in line."""

    def latency(n: int) -> float:
        running = min(n, max_seqs)
        service = base * (1 + running / slowdown_at)
        return service * max(1.0, n / max_seqs)

    return latency
