"""vLLM's continuous-batching scheduler in simulated time: waiting queue, KV blocks, chunked prefill, preemption.

One ``Scheduler`` is one engine. Each ``step()`` is one forward pass, scheduled as vLLM does with chunked prefill:
the running sequences that decode go first (one token each, a new KV block whenever their context crosses a block
boundary), then running sequences still prefilling, then waiting ones, first come first served, while fewer than
``max_num_seqs`` run, the step's ``max_num_batched_tokens`` budget lasts and the KV cache has blocks for the whole
prompt. When a decoding sequence needs a block and none is free, the newest running sequence is preempted by
recompute: its blocks are freed and it goes back to the front of the queue, to prefill its prompt and what it had
generated again. The step's duration comes from ``odsc_magics.serving.step_seconds``.

A decoding sequence's progress is implicit in the step counter (its context grows by one a step), so a step costs
C-level work proportional to the running batch plus Python work for the few sequences that cross a block boundary,
finish, or prefill in it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from odsc_magics.serving import EngineConfig, memory, step_seconds

__all__ = ["Run", "Scheduler", "Step", "simulate"]


@dataclass(frozen=True)
class Step:
    """One engine step: how long it took and what it emitted, finished and preempted."""

    duration_s: float
    emitted: dict[str, int]
    first_token: list[str]
    finished: list[str]
    preempted: list[str]


class _Seq:
    __slots__ = (
        "base_computed",
        "base_generated",
        "base_step",
        "blocks",
        "computed",
        "epoch",
        "generated",
        "id",
        "max_tokens",
        "order",
        "prompt",
        "state",
    )

    def __init__(self, request_id: str, prompt: int, max_tokens: int, order: int) -> None:
        self.id = request_id
        self.prompt = prompt
        self.max_tokens = max_tokens
        self.order = order  # admission order: the newest running sequence is preempted first
        self.computed = 0  # tokens whose KV is computed (prefilling or waiting)
        self.generated = 0  # output tokens emitted (prefilling or waiting)
        self.blocks = 0
        self.epoch = 0  # bumped when the sequence leaves the decoding set: its calendar entries go stale
        self.state = "waiting"
        self.base_step = 0  # while decoding: computed = base_computed + (step - base_step), likewise generated
        self.base_computed = 0
        self.base_generated = 0


class Scheduler:
    """One vLLM engine's scheduler over a simulated clock."""

    def __init__(self, cfg: EngineConfig) -> None:
        if cfg.max_num_batched_tokens < cfg.max_num_seqs:
            raise ValueError(
                f"max_num_batched_tokens ({cfg.max_num_batched_tokens}) must be at least max_num_seqs "
                f"({cfg.max_num_seqs})"
            )
        self.cfg = cfg
        self.kv_blocks_total = memory(cfg).kv_blocks
        self._free = self.kv_blocks_total
        self._bs = cfg.block_size
        self._running: dict[str, _Seq] = {}  # admission order
        self._decoding: dict[str, _Seq] = {}
        self._prefilling: dict[str, _Seq] = {}
        self._waiting: deque[_Seq] = deque()
        self._by_id: dict[str, _Seq] = {}
        self._calendar: dict[int, list[tuple[_Seq, int]]] = {}  # step -> decoders needing a block or finishing
        self._step = 0
        self._order = 0
        self._decode_context = 0  # sum of the decoding sequences' computed tokens
        self.preemptions = 0
        self.prompt_tokens = 0
        self.generation_tokens = 0

    # ---------------------------------------------------------------------------------------------- state

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def kv_blocks_used(self) -> int:
        return self.kv_blocks_total - self._free

    def _blocks_for(self, tokens: int) -> int:
        return -(-tokens // self._bs)

    # ----------------------------------------------------------------------------------------- requests

    def add(self, request_id: str, prompt_tokens: int, max_tokens: int) -> None:
        """Queue a request; one longer than the engine's ``max_model_len`` is refused with ValueError."""
        if request_id in self._by_id:
            raise ValueError(f"request {request_id!r} is already queued or running")
        if prompt_tokens < 1 or max_tokens < 1:
            raise ValueError("a request needs at least one prompt token and max_tokens of at least 1")
        limit = self.cfg.max_model_len
        if prompt_tokens + max_tokens > limit:
            raise ValueError(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in the "
                "completion). Please reduce the length of the messages or completion."
            )
        if self._blocks_for(prompt_tokens + max_tokens) > self.kv_blocks_total:
            raise ValueError(
                f"the request needs {prompt_tokens + max_tokens} tokens of KV cache; the engine holds "
                f"{self.kv_blocks_total * self._bs}"
            )
        seq = _Seq(request_id, prompt_tokens, max_tokens, 0)
        self._by_id[request_id] = seq
        self._waiting.append(seq)
        self.prompt_tokens += prompt_tokens

    def abort(self, request_id: str) -> None:
        """Drop a request (its client went away), freeing its KV blocks; unknown ids are ignored."""
        seq = self._by_id.pop(request_id, None)
        if seq is None:
            return
        if seq.state == "waiting":
            self._waiting.remove(seq)
        else:
            self._leave_running(seq)

    # ------------------------------------------------------------------------------------------- helpers

    def _sync(self, seq: _Seq) -> None:
        """Write a decoding sequence's implicit progress into its fields."""
        done = self._step - seq.base_step
        seq.computed = seq.base_computed + done
        seq.generated = seq.base_generated + done

    def _leave_running(self, seq: _Seq) -> None:
        if seq.state == "decoding":
            self._sync(seq)
            self._decode_context -= seq.computed
            del self._decoding[seq.id]
            seq.epoch += 1
        else:
            del self._prefilling[seq.id]
        del self._running[seq.id]
        self._free += seq.blocks
        seq.blocks = 0
        seq.state = "gone"

    def _schedule(self, seq: _Seq, at: int) -> None:
        self._calendar.setdefault(at, []).append((seq, seq.epoch))

    def _start_decoding(self, seq: _Seq, step: int) -> None:
        """``seq`` decodes from ``step`` on: its next block and its last token go in the calendar."""
        seq.state = "decoding"
        seq.base_step = step
        seq.base_computed = seq.computed
        seq.base_generated = seq.generated
        self._decoding[seq.id] = seq
        self._decode_context += seq.computed
        self._schedule(seq, step + seq.blocks * self._bs - seq.computed)
        self._schedule(seq, step + seq.max_tokens - seq.generated - 1)

    def _preempt_newest(self, preempted: list[str]) -> _Seq:
        seq = self._running[next(reversed(self._running))]
        self._leave_running(seq)
        seq.computed = 0
        seq.state = "waiting"
        self._waiting.appendleft(seq)
        preempted.append(seq.id)
        self.preemptions += 1
        return seq

    # ---------------------------------------------------------------------------------------------- step

    def step(self) -> Step | None:
        """Run one engine step; None when nothing is running or waiting."""
        if not self._running and not self._waiting:
            return None
        k = self._step
        bs = self._bs
        preempted: list[str] = []
        finishing: list[_Seq] = []

        # 1. decoding sequences: a block for those whose context crosses a boundary, preempting when none is free
        due = self._calendar.pop(k, None)
        if due:
            due.sort(key=lambda entry: entry[0].order)
            for seq, epoch in due:
                if seq.epoch != epoch or seq.state != "decoding":
                    continue
                if seq.base_computed + (k - seq.base_step) < seq.blocks * bs:
                    finishing.append(seq)  # not a block boundary: its last token
                    continue
                while not self._free and seq.state == "decoding":
                    self._preempt_newest(preempted)
                if seq.state != "decoding":
                    continue
                self._free -= 1
                seq.blocks += 1
                self._schedule(seq, k + bs)
        decoders = len(self._decoding)
        emitted = dict.fromkeys(self._decoding, 1)
        kv_tokens = self._decode_context + decoders
        budget = self.cfg.max_num_batched_tokens - decoders

        # 2. running sequences still prefilling, then 3. waiting ones (none admitted in a step that preempted)
        prefill_tokens = 0
        chunks: list[tuple[_Seq, int]] = []
        for seq in self._prefilling.values():
            if budget <= 0:
                break
            chunk = min(seq.prompt + seq.generated - seq.computed, budget)
            chunks.append((seq, chunk))
            budget -= chunk
        while not preempted and self._waiting and budget > 0 and len(self._running) < self.cfg.max_num_seqs:
            seq = self._waiting[0]
            need = self._blocks_for(seq.prompt + seq.generated + 1) - seq.blocks
            if need > self._free:
                break
            self._waiting.popleft()
            self._free -= need
            seq.blocks += need
            seq.state = "prefilling"
            seq.order = self._order
            self._order += 1
            self._running[seq.id] = seq
            self._prefilling[seq.id] = seq
            chunk = min(seq.prompt + seq.generated, budget)
            chunks.append((seq, chunk))
            budget -= chunk
        first_token: list[str] = []
        attended = 0
        for seq, chunk in chunks:
            prefill_tokens += chunk
            kv_tokens += seq.computed + chunk
            attended += chunk * seq.computed + chunk * (chunk + 1) // 2

        if not decoders and not chunks:
            raise RuntimeError("the scheduler could not schedule anything")  # add() guards against it
        duration = step_seconds(
            self.cfg,
            prefill_tokens=prefill_tokens,
            decode_seqs=decoders,
            kv_tokens=kv_tokens,
            prefill_attended=attended,
        )

        # apply: decoders advance implicitly with the step counter; prefills move on
        self._step = k + 1
        self._decode_context += decoders
        finished: list[str] = []
        for seq in finishing:
            if seq.state == "decoding":
                finished.append(seq.id)
                self._leave_running(seq)
                del self._by_id[seq.id]
        completed = 0
        for seq, chunk in chunks:
            seq.computed += chunk
            if seq.computed < seq.prompt + seq.generated:
                emitted[seq.id] = 0  # a prompt chunk that does not end the prompt emits nothing yet
                continue
            seq.generated += 1
            emitted[seq.id] = 1
            completed += 1
            if seq.generated == 1:
                first_token.append(seq.id)
            if seq.generated >= seq.max_tokens:
                self._leave_running(seq)
                del self._by_id[seq.id]
                finished.append(seq.id)
            else:
                del self._prefilling[seq.id]
                self._start_decoding(seq, k + 1)
        self.generation_tokens += decoders + completed
        return Step(duration, emitted, first_token, finished, preempted)


@dataclass(frozen=True)
class Run:
    """A closed-loop run's figures (latency and time to first token in simulated seconds)."""

    concurrency: int
    requests: int
    output_tok_s: float
    p50_latency_s: float
    p99_latency_s: float
    p50_ttft_s: float
    p99_ttft_s: float
    max_running: int
    max_kv_blocks_used: int
    preemptions: int


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def simulate(
    cfg: EngineConfig, *, concurrency: int, input_tokens: int, output_tokens: int, requests: int | None = None
) -> Run:
    """``concurrency`` clients in a closed loop, each sending its next request when its answer ends, spread
    round-robin over ``cfg.instances`` engines; output tokens/s over the whole run, as vLLM's benchmark reports."""
    total = requests if requests is not None else max(4 * concurrency, 32)
    engines = [Scheduler(cfg) for _ in range(cfg.instances)]
    clocks = [0.0] * len(engines)
    started: dict[str, float] = {}
    latencies: list[float] = []
    ttfts: list[float] = []
    sent = 0
    max_running = max_blocks = 0

    def send(at: float) -> None:
        nonlocal sent
        index = sent % len(engines)
        engine = engines[index]
        if not engine.running and not engine.waiting:
            clocks[index] = max(clocks[index], at)
        request_id = str(sent)
        started[request_id] = at
        engine.add(request_id, input_tokens, output_tokens)
        sent += 1

    for _ in range(min(concurrency, total)):
        send(0.0)
    done = 0
    end = 0.0
    while done < total:
        busy = [i for i, e in enumerate(engines) if e.running or e.waiting]
        index = min(busy, key=clocks.__getitem__)
        engine = engines[index]
        step = engine.step()
        assert step is not None
        now = clocks[index] + step.duration_s
        clocks[index] = now
        max_running = max(max_running, engine.running + len(step.finished))
        max_blocks = max(max_blocks, engine.kv_blocks_used)
        for request_id in step.first_token:
            ttfts.append(now - started[request_id])
        for request_id in step.finished:
            latencies.append(now - started.pop(request_id))
            done += 1
            end = now
            if sent < total:
                send(now)
    return Run(
        concurrency=concurrency,
        requests=total,
        output_tok_s=total * output_tokens / end if end else 0.0,
        p50_latency_s=_percentile(latencies, 0.5),
        p99_latency_s=_percentile(latencies, 0.99),
        p50_ttft_s=_percentile(ttfts, 0.5),
        p99_ttft_s=_percentile(ttfts, 0.99),
        max_running=max_running,
        max_kv_blocks_used=max_blocks,
        preemptions=sum(e.preemptions for e in engines),
    )
