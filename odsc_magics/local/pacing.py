"""When the builtin engine's tokens come out: a fixed speed, or a simulated vLLM engine on the deployment's GPUs.

``--serving gpu``: each instance of a deployment runs one driver task stepping an
``odsc_magics.scheduling.Scheduler`` in simulated time; a step lasts ``duration_s / time_scale`` real seconds,
then the tokens it emitted are handed to the waiting answers at once. Answers only wait on a future of their
own; nothing runs per token.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)
MIN_SLEEP_S = 0.001  # steps ending sooner than this are taken together before sleeping
MAX_BATCH = 64  # at most this many steps between two deliveries
MAX_LAG_S = 0.5  # a driver this far behind real time (an overloaded process) stops trying to catch up


class Ticket(Protocol):
    """The timing of one answer's sequences (one per choice)."""

    async def reach(self, tokens: int) -> None:
        """Return once every sequence has emitted ``tokens`` tokens (or all of its own)."""

    def close(self) -> None:
        """The answer is over or abandoned: a sequence still running is aborted (its KV cache freed)."""


class Pace(Protocol):
    def start(self, prompt_tokens: list[int], output_tokens: list[int]) -> Ticket: ...


# --------------------------------------------------------------------------------------------- fixed


class FixedPace:
    """Today's fixed-speed model: the first token after ``ttft_s``, then one every ``token_s``."""

    def __init__(self, ttft_s: float, token_s: float) -> None:
        self.ttft_s = max(0.0, ttft_s)
        self.token_s = max(0.0, token_s)

    def start(self, prompt_tokens: list[int], output_tokens: list[int]) -> Ticket:
        return _FixedTicket(self)


class _FixedTicket:
    def __init__(self, pace: FixedPace) -> None:
        self._pace = pace
        self._reached = 0

    async def reach(self, tokens: int) -> None:
        if tokens <= self._reached:
            return
        pace = self._pace
        delay = (pace.ttft_s if self._reached == 0 else 0.0) + pace.token_s * (tokens - max(1, self._reached))
        self._reached = tokens
        if delay > 0:
            await asyncio.sleep(delay)

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------- simulated GPU


class _Sequence:
    __slots__ = ("done", "emitted", "id", "length", "waiter", "want")

    def __init__(self, request_id: str, length: int) -> None:
        self.id = request_id
        self.length = length
        self.emitted = 0
        self.done = False
        self.want = 0
        self.waiter: asyncio.Future | None = None


class Instance:
    """One model server instance: a scheduler and the driver task that steps it while it has work."""

    def __init__(self, scheduler: Any, time_scale: float, stats: Any) -> None:
        self.scheduler = scheduler
        self.time_scale = time_scale
        self.stats = stats
        self._sequences: dict[str, _Sequence] = {}
        self._task: asyncio.Task | None = None
        self._seen = (0, 0, 0)  # scheduler totals already counted: preemptions, prompt, generation tokens

    def submit(self, request_id: str, prompt_tokens: int, length: int) -> _Sequence:
        sequence = _Sequence(request_id, length)
        self.scheduler.add(request_id, prompt_tokens, length)
        self._sequences[request_id] = sequence
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drive())
        return sequence

    def abort(self, sequence: _Sequence) -> None:
        if self._sequences.pop(sequence.id, None) is not None and not sequence.done:
            self.scheduler.abort(sequence.id)

    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        pending: list = []
        try:
            while True:
                step = self.scheduler.step()
                if step is None:
                    break
                self._account(step)
                due += step.duration_s / self.time_scale
                pending.append(step)
                delay = due - loop.time()
                if delay < MIN_SLEEP_S and len(pending) < MAX_BATCH:
                    if delay > -MAX_LAG_S:
                        continue
                    due = loop.time()
                await asyncio.sleep(max(0.0, delay))
                self._deliver(pending)
                pending.clear()
        except Exception:  # a bug must not leave answers waiting forever
            log.exception("the simulated engine failed")
            for sequence in self._sequences.values():
                sequence.done = True
                _wake(sequence)
            self._sequences.clear()
        finally:
            self._deliver(pending)
            self._task = None

    def _account(self, step) -> None:
        stats, scheduler = self.stats, self.scheduler
        stats.busy_s += step.duration_s
        stats.steps += 1
        stats.max_running = max(stats.max_running, len(step.emitted), scheduler.running)
        stats.max_kv_blocks_used = max(stats.max_kv_blocks_used, scheduler.kv_blocks_used)
        totals = (scheduler.preemptions, scheduler.prompt_tokens, scheduler.generation_tokens)
        stats.preemptions += totals[0] - self._seen[0]
        stats.prompt_tokens += totals[1] - self._seen[1]
        stats.generation_tokens += totals[2] - self._seen[2]
        self._seen = totals

    def _deliver(self, steps: list) -> None:
        sequences = self._sequences
        touched: dict[str, _Sequence] = {}
        for step in steps:
            for request_id, count in step.emitted.items():
                sequence = sequences.get(request_id)
                if sequence is not None and count:
                    sequence.emitted += count
                    touched[request_id] = sequence
            for request_id in step.finished:
                sequence = sequences.pop(request_id, None)
                if sequence is not None:
                    sequence.done = True
                    touched[request_id] = sequence
        for sequence in touched.values():
            if sequence.done or sequence.emitted >= sequence.want:
                _wake(sequence)


def _wake(sequence: _Sequence) -> None:
    waiter = sequence.waiter
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class _GpuTicket:
    def __init__(self, instance: Instance, sequences: list[_Sequence]) -> None:
        self._instance = instance
        self.sequences = sequences

    async def reach(self, tokens: int) -> None:
        for sequence in self.sequences:
            want = min(tokens, sequence.length)
            while sequence.emitted < want and not sequence.done:
                sequence.want = want
                sequence.waiter = asyncio.get_running_loop().create_future()
                try:
                    await sequence.waiter
                finally:
                    sequence.waiter = None

    def close(self) -> None:
        for sequence in self.sequences:
            self._instance.abort(sequence)


class GpuPace:
    """A deployment's instances behind a round-robin load balancer, each a simulated vLLM engine."""

    _ids = itertools.count(1)

    def __init__(self, config: Any, *, time_scale: float, stats: Any) -> None:
        from odsc_magics.scheduling import Scheduler

        self.config = config
        self.instances = [Instance(Scheduler(config), time_scale, stats) for _ in range(max(1, config.instances))]
        self._turn = itertools.cycle(self.instances)
        stats.max_num_seqs = config.max_num_seqs
        stats.kv_blocks_total = self.instances[0].scheduler.kv_blocks_total

    def start(self, prompt_tokens: list[int], output_tokens: list[int]) -> Ticket:
        instance = next(self._turn)
        ticket = _GpuTicket(instance, [])
        try:
            for prompt, output in zip(prompt_tokens, output_tokens, strict=True):
                ticket.sequences.append(instance.submit(f"seq-{next(self._ids)}", max(1, prompt), max(1, output)))
        except BaseException:
            ticket.close()
            raise
        return ticket

    def live(self) -> dict[str, Any]:
        """What the engines hold now: running and waiting sequences, KV-cache usage (0..1)."""
        used = sum(i.scheduler.kv_blocks_used for i in self.instances)
        total = sum(i.scheduler.kv_blocks_total for i in self.instances)
        return {
            "running": sum(i.scheduler.running for i in self.instances),
            "waiting": sum(i.scheduler.waiting for i in self.instances),
            "kv_cache_usage": round(used / total, 4) if total else 0.0,
        }
