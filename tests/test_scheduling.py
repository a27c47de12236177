"""vLLM's scheduler in simulated time: batching, KV blocks, preemption, saturation."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from odsc_magics.scheduling import Scheduler, simulate
from odsc_magics.serving import engine_config, memory
from odsc_magics.sizing import model_spec_from

MISTRAL = model_spec_from("Mistral-7B-Instruct-v0.3")
LLAMA_8B = model_spec_from("Meta-Llama-3.1-8B-Instruct")


def _a10(**changes):
    return replace(engine_config(MISTRAL, "VM.GPU.A10.1", "--max-model-len 4096"), **changes)


def _drain(scheduler: Scheduler, check=None) -> dict[str, int]:
    """Run until idle; output tokens per request; ``check`` sees the scheduler after each step."""
    emitted: dict[str, int] = {}
    while (step := scheduler.step()) is not None:
        for request_id, count in step.emitted.items():
            emitted[request_id] = emitted.get(request_id, 0) + count
        if check:
            check(scheduler, step)
    return emitted


def test_throughput_rises_then_saturates_while_latency_keeps_growing():
    cfg = _a10()
    runs = {c: simulate(cfg, concurrency=c, input_tokens=512, output_tokens=256) for c in (1, 4, 16, 64, 128, 256)}
    rates = [runs[c].output_tok_s for c in sorted(runs)]
    assert rates[0] * 4 < rates[2]  # batching: 16 sequences go far faster than one
    assert rates[1] < rates[2] < rates[3]
    saturated = [runs[c].output_tok_s for c in (64, 128, 256)]
    assert max(saturated) / min(saturated) < 1.05  # flat at saturation (the KV cache holds fewer than 64)
    latencies = [runs[c].p50_latency_s for c in sorted(runs)]
    assert latencies == sorted(latencies) and latencies[-1] > 3 * latencies[3]
    assert runs[256].p50_ttft_s > 10 * runs[1].p50_ttft_s  # queueing shows up in the time to first token


def test_running_never_exceeds_max_num_seqs_nor_the_kv_cache():
    cfg = _a10(max_num_seqs=24)
    scheduler = Scheduler(cfg)
    for i in range(100):
        scheduler.add(f"r{i}", 300 + 37 * (i % 9), 200 + 13 * (i % 7))
    seen = {"running": 0, "blocks": 0}

    def check(s: Scheduler, step) -> None:
        assert s.running + len(step.finished) <= cfg.max_num_seqs
        assert 0 <= s.kv_blocks_used <= s.kv_blocks_total
        seen["running"] = max(seen["running"], s.running)
        seen["blocks"] = max(seen["blocks"], s.kv_blocks_used)

    emitted = _drain(scheduler, check)
    assert seen["running"] == 24
    assert len(emitted) == 100 and scheduler.kv_blocks_used == 0


def test_preemption_when_kv_runs_short_and_every_request_still_gets_its_tokens():
    cfg = _a10()
    total = memory(cfg).kv_blocks
    scheduler = Scheduler(cfg)
    # 64 requests of up to 1,500 + 2,000 tokens: their prompts fit the cache at admission, their answers do not
    lengths = {f"r{i}": (1000 + 8 * i, 1500 + 7 * i) for i in range(64)}
    for request_id, (prompt, answer) in lengths.items():
        scheduler.add(request_id, prompt, answer)
    preempted: list[str] = []

    def check(s: Scheduler, step) -> None:
        assert s.kv_blocks_used <= total
        preempted.extend(step.preempted)

    emitted = _drain(scheduler, check)
    assert scheduler.preemptions == len(preempted) > 0
    assert emitted == {request_id: answer for request_id, (_, answer) in lengths.items()}
    assert scheduler.generation_tokens == sum(answer for _, answer in lengths.values())
    assert scheduler.kv_blocks_used == 0


def test_the_newest_running_sequence_is_preempted_first_and_requeued_at_the_front():
    cfg = replace(_a10(), max_model_len=16384)
    scheduler = Scheduler(cfg)
    total_tokens = scheduler.kv_blocks_total * cfg.block_size
    prompt = total_tokens // 4
    for i in range(4):
        scheduler.add(f"r{i}", prompt - 64, 2000)
    scheduler.step()
    scheduler.add("late", 2000, 16)  # no room for its prompt: it waits
    first = None
    while (step := scheduler.step()) is not None:
        if step.preempted:
            first = step
            break
    assert first is not None and first.preempted[0] == "r3"  # admitted last
    order = []
    while (step := scheduler.step()) is not None:
        order += [request_id for request_id in ("r3", "late") if request_id in step.emitted and request_id not in order]
    assert order == ["r3", "late"]  # r3 went back to the front of the queue: it resumes before "late" starts


def test_abort_frees_blocks():
    scheduler = Scheduler(_a10())
    scheduler.add("a", 2000, 500)
    scheduler.add("b", 1000, 500)
    for _ in range(5):
        scheduler.step()
    used = scheduler.kv_blocks_used
    assert scheduler.running == 2 and used >= (2000 + 1000) // 16
    scheduler.abort("a")
    assert scheduler.running == 1 and scheduler.kv_blocks_used <= used - 2000 // 16
    scheduler.abort("b")
    scheduler.abort("never-sent")
    assert scheduler.kv_blocks_used == 0 and scheduler.step() is None
    scheduler.add("c", 10, 3)
    scheduler.abort("c")  # while waiting
    assert scheduler.waiting == 0 and scheduler.step() is None


def test_a_request_longer_than_max_model_len_is_refused_at_add():
    scheduler = Scheduler(_a10())
    with pytest.raises(ValueError, match="maximum context length is 4096 tokens"):
        scheduler.add("long", 4000, 200)
    assert scheduler.waiting == 0
    scheduler.add("fits", 3896, 200)


def test_first_token_and_finish_are_reported_once_per_request():
    scheduler = Scheduler(_a10())
    scheduler.add("one", 5000 // 2, 1)  # prefilled over two steps of 2,048 tokens, done at its first token
    scheduler.add("two", 100, 3)
    firsts: list[str] = []
    finished: list[str] = []
    steps = 0
    while (step := scheduler.step()) is not None:
        steps += 1
        if steps == 1:
            assert step.emitted == {"one": 0}  # the first 2,048 prompt tokens: nothing to emit yet
        firsts += step.first_token
        finished += step.finished
        assert step.duration_s > 0
    assert sorted(firsts) == ["one", "two"] and sorted(finished) == ["one", "two"]
    assert scheduler.generation_tokens == 1 + 3
    assert steps == 4  # 2,048 | 452 + 100 (both first tokens) | two decode steps for "two"


def test_two_instances_double_saturation_throughput():
    one = _a10()
    two = replace(one, instances=2)
    single = simulate(one, concurrency=128, input_tokens=512, output_tokens=128)
    double = simulate(two, concurrency=256, input_tokens=512, output_tokens=128)
    assert double.output_tok_s == pytest.approx(2 * single.output_tok_s, rel=0.05)


def test_deterministic():
    cfg = _a10()
    runs = [simulate(cfg, concurrency=48, input_tokens=700, output_tokens=300) for _ in range(2)]
    assert runs[0] == runs[1]


def test_a_step_is_cheap_at_hundreds_of_running_sequences():
    cfg = engine_config(LLAMA_8B, "BM.GPU.H100.8", "--max-model-len 8192 --max-num-seqs 512")
    scheduler = Scheduler(cfg)
    for i in range(512):
        scheduler.add(f"r{i}", 200, 3000)
    for _ in range(200):  # all admitted and decoding
        scheduler.step()
    assert scheduler.running == 512
    started = time.process_time()
    for _ in range(2000):
        scheduler.step()
    spent = time.process_time() - started
    assert spent < 0.5, f"{spent / 2000 * 1e6:.0f} µs per step at 512 running sequences"
