"""vLLM's memory and speed on a shape, against what vLLM logs and what published benchmarks measured."""

from __future__ import annotations

from dataclasses import replace

import pytest

from odsc_magics.serving import Estimate, engine_config, estimate, memory, step_seconds
from odsc_magics.sizing import model_spec_from

LLAMA_8B = model_spec_from("Meta-Llama-3.1-8B-Instruct")
LLAMA_70B = model_spec_from("Meta-Llama-3.1-70B-Instruct")
MISTRAL = model_spec_from("Mistral-7B-Instruct-v0.3")


def test_engine_config_reads_the_deployment_params():
    cfg = engine_config(
        LLAMA_8B,
        "BM.GPU.A10.4",
        "--max-model-len 8192 --max-num-seqs 64 --max-num-batched-tokens 4096 --gpu-memory-utilization 0.95",
    )
    assert (cfg.max_model_len, cfg.max_num_seqs, cfg.max_num_batched_tokens) == (8192, 64, 4096)
    assert cfg.gpu_memory_utilization == 0.95 and cfg.tensor_parallel_size == 4  # AQUA: all the shape's GPUs
    default = engine_config(LLAMA_8B, "VM.GPU.A10.2", None, instances=3)
    assert (default.max_model_len, default.max_num_seqs, default.tensor_parallel_size) == (131072, 256, 2)
    assert default.instances == 3
    assert engine_config(LLAMA_8B, "BM.GPU.H100.8", "--tensor-parallel-size 2").tensor_parallel_size == 2


def test_kv_bytes_come_from_the_architecture():
    # Llama 3.1 8B: 2 (K, V) × 32 layers × 8 KV heads × 128 head dim × 2 bytes
    assert memory(engine_config(LLAMA_8B, "VM.GPU.A10.1", "--max-model-len 8192")).kv_bytes_per_token == 131072
    # Llama 3.1 70B: 80 layers
    assert memory(engine_config(LLAMA_70B, "BM.GPU.H100.8", "--max-model-len 8192")).kv_bytes_per_token == 327680


def test_start_up_failures_from_the_accounting():
    assert memory(engine_config(LLAMA_70B, "VM.GPU.A10.1", "--max-model-len 4096")).failure == "weights_oom"
    assert memory(engine_config(LLAMA_8B, "VM.GPU.A10.1")).failure == "kv_cache_too_small"  # 131,072 tokens
    # 8B's 16 GB of weights fit a 22 GiB A10, but not within 50% of it: no room for any KV block
    assert memory(engine_config(LLAMA_8B, "VM.GPU.A10.1", "--gpu-memory-utilization 0.5")).failure == "no_kv_cache"
    ok = memory(engine_config(LLAMA_8B, "VM.GPU.A10.1", "--max-model-len 8192"))
    assert ok.failure is None and ok.kv_blocks * 16 >= 8192
    assert ok.weights_gb + ok.overhead_gb + ok.kv_cache_gb == pytest.approx(ok.usable_gb)


def test_tensor_parallel_splits_weights_and_kv_heads():
    one = memory(engine_config(LLAMA_8B, "VM.GPU.A10.1", "--max-model-len 8192"))
    two = memory(engine_config(LLAMA_8B, "VM.GPU.A10.2", "--max-model-len 8192"))
    assert two.weights_gb == pytest.approx(one.weights_gb / 2)
    assert two.kv_blocks > 3 * one.kv_blocks  # half the weights per GPU and half the KV heads per GPU


def test_decode_is_memory_bound_and_prefill_compute_bound():
    cfg = engine_config(LLAMA_8B, "BM.GPU.H100.8", "--max-model-len 8192 --tensor-parallel-size 1")
    one = step_seconds(cfg, prefill_tokens=0, decode_seqs=1, kv_tokens=1000)
    batch = step_seconds(cfg, prefill_tokens=0, decode_seqs=32, kv_tokens=32_000)
    assert one < batch < 2 * one  # 32 sequences cost little more than one: the weights are read once
    prefill = step_seconds(cfg, prefill_tokens=2048, decode_seqs=0, kv_tokens=2048)
    assert prefill > 3 * one
    assert step_seconds(cfg, prefill_tokens=4096, decode_seqs=0, kv_tokens=4096) == pytest.approx(2 * prefill, rel=0.1)


@pytest.mark.parametrize(
    ("model", "shape", "params", "prompt", "answer"),
    [
        (MISTRAL, "VM.GPU.A10.1", "--max-model-len 4096", 1000, 500),
        (MISTRAL, "VM.GPU.A10.2", "--max-model-len 8192", 6000, 300),  # prompts outweigh answers: token-bound steps
        (LLAMA_8B, "BM.GPU.A10.4", "--max-model-len 8192", 2000, 100),
        (LLAMA_70B, "BM.GPU4.8", "--max-model-len 8192", 1000, 500),
        (LLAMA_8B, "BM.GPU.H100.8", "--max-model-len 8192", 6000, 300),
    ],
)
def test_estimate_agrees_with_the_simulation(model, shape, params, prompt, answer):
    from odsc_magics.scheduling import simulate

    cfg = engine_config(model, shape, params)
    guess = estimate(cfg, input_tokens=prompt, output_tokens=answer)
    assert 0 < guess.max_concurrent_seqs <= cfg.max_num_seqs
    alone = simulate(cfg, concurrency=1, input_tokens=prompt, output_tokens=answer, requests=3)
    assert guess.output_tok_s_1 == pytest.approx(alone.output_tok_s, rel=0.05)
    full = simulate(cfg, concurrency=guess.max_concurrent_seqs, input_tokens=prompt, output_tokens=answer)
    assert guess.output_tok_s_saturated == pytest.approx(full.output_tok_s, rel=0.1)


def test_estimate_of_a_shape_that_cannot_start_is_empty():
    assert estimate(
        engine_config(LLAMA_70B, "VM.GPU.A10.1", "--max-model-len 4096"), input_tokens=100, output_tokens=10
    ) == (Estimate(0, 0.0, 0.0, 0))


def test_instances_multiply_saturation_not_single_stream_speed():
    one = estimate(engine_config(MISTRAL, "VM.GPU.A10.1", "--max-model-len 4096"), input_tokens=500, output_tokens=200)
    three = estimate(
        engine_config(MISTRAL, "VM.GPU.A10.1", "--max-model-len 4096", instances=3), input_tokens=500, output_tokens=200
    )
    assert three.output_tok_s_1 == one.output_tok_s_1
    assert three.output_tok_s_saturated == pytest.approx(3 * one.output_tok_s_saturated)
    assert three.saturation_concurrency == 3 * one.saturation_concurrency


# ------------------------------------------------------------------------------- what vLLM logs at start-up
# KV-cache capacity vLLM itself logged for a model on a GPU (read 2026-11-29), with the engine settings of that run.
LLAMA_2_7B = model_spec_from("Llama-2-7b-hf")
LLAMA_3_8B = model_spec_from("Meta-Llama-3-8B")


def _one(gpu: str, count: int = 1):
    from odsc_magics.gpus import GPUS
    from odsc_magics.sizing import ShapeInfo

    return ShapeInfo(f"{count}x{gpu}", count, gpu, count * GPUS[gpu].memory_gb)


VLLM_LOGGED_KV = [
    # https://github.com/vllm-project/vllm/pull/2031 (2023-12-12): Llama-2-7B, TP 1, one A100 80 GB, 0.9,
    # max_model_len 4,096 (the profile batch): "# GPU blocks: 7351"
    (
        "llama-2-7b on A100 80GB",
        LLAMA_2_7B,
        _one("A100-80G"),
        "--max-model-len 4096 --max-num-batched-tokens 4096",
        7351,
    ),
    # https://github.com/vllm-project/vllm/pull/10511 (2024-12-14): `vllm serve meta-llama/Meta-Llama-3-8B` on an
    # H100 80 GB: available_kv_cache_memory 53.29 GiB at 128 KiB a token = 27,284 blocks of 16
    (
        "llama-3-8b on H100",
        LLAMA_3_8B,
        _one("H100"),
        "--max-model-len 8192 --max-num-batched-tokens 8192",
        int(53.29 * 2**30 / 131072 / 16),
    ),
    # https://github.com/vllm-project/vllm/pull/17122 (2025-04-24): Llama-3.1-8B-Instruct on one L40S, max model
    # length 32,768: "GPU KV cache size: 158,656 tokens", "Maximum concurrency for 32,768 tokens per request: 4.84x"
    (
        "llama-3.1-8b on L40S",
        LLAMA_8B,
        _one("L40S"),
        "--max-model-len 32768 --max-num-batched-tokens 8192",
        158656 // 16,
    ),
]


@pytest.mark.parametrize(
    ("label", "model", "shape", "params", "blocks"), VLLM_LOGGED_KV, ids=[r[0] for r in VLLM_LOGGED_KV]
)
def test_kv_cache_capacity_is_within_15_percent_of_what_vllm_logs(label, model, shape, params, blocks):
    ours = memory(engine_config(model, shape, params))
    assert ours.failure is None
    assert ours.kv_blocks == pytest.approx(blocks, rel=0.15), f"{label}: {ours.kv_blocks} blocks, vLLM logged {blocks}"


def test_the_logged_concurrency_line_follows_from_the_blocks():
    # vLLM prints "Maximum concurrency for 32,768 tokens per request: 4.84x" for 158,656 tokens (PR #17122)
    ours = memory(engine_config(LLAMA_8B, _one("L40S"), "--max-model-len 32768 --max-num-batched-tokens 8192"))
    assert ours.kv_tokens / 32768 == pytest.approx(4.84, rel=0.15)


# ------------------------------------------------------------------------------ published vLLM measurements
# Output tokens/s measured with vLLM, and the workload it was measured on (model, GPU, input / output tokens,
# concurrency, requests in the run), read 2026-11-29. simulate() on the same workload must land within ±25%.
MEASUREMENTS = [
    # johnmusgrave.com/p/vllm-throughput-latency-sweep-on: Llama-3.1-8B-Instruct BF16, one A100 40 GB, vLLM 0.23,
    # random 1,024 in / 128 out, --ignore-eos, --num-prompts 20 × C: "about 75 tokens/sec" at C = 1, "a 6.6x gain"
    # at C = 8
    ("A100-40G c1", LLAMA_8B, "A100-40G", "", 1024, 128, 1, 20, 75.0),
    ("A100-40G c8", LLAMA_8B, "A100-40G", "", 1024, 128, 8, 160, 6.6 * 75.0),
    # mushfiqrahman.dev (Benchmarking Mistral-7B on RTX 4090): Mistral-7B-Instruct-v0.3, one RTX 4090 24 GB, 256 in /
    # 128 out, 300 prompts at max concurrency 4, 8, 16, 32, 48
    ("RTX4090 c4", MISTRAL, "RTX4090", "", 256, 128, 4, 300, 210.0),
    ("RTX4090 c8", MISTRAL, "RTX4090", "", 256, 128, 8, 300, 377.0),
    ("RTX4090 c16", MISTRAL, "RTX4090", "", 256, 128, 16, 300, 644.0),
    ("RTX4090 c32", MISTRAL, "RTX4090", "", 256, 128, 32, 300, 975.0),
    ("RTX4090 c48", MISTRAL, "RTX4090", "", 256, 128, 48, 300, 1190.0),
    # databasemart.com/blog/vllm-gpu-benchmark-a40: Llama-3.1-8B-Instruct, one A40 48 GB, 50 requests of 100 in /
    # 600 out at once; the answers stopped at 443 tokens on average (22,170 generated in 21.81 s, as long as the
    # longest took): 1,016.6 output tok/s. Simulated with 600-token answers, measured rate scaled to them.
    ("A40 c50", LLAMA_8B, "A40", "", 100, 600, 50, 50, 1016.6 * 600 * 50 / 22170),
    # github.com/vllm-project/vllm/pull/7117 (2024-08-04): Meta-Llama-3-8B on an H100, benchmark_throughput.py
    # --input-len 256 --output-len 256 (1,000 prompts, all at once): "Throughput: 24.32 requests/s"
    ("H100 offline", LLAMA_3_8B, "H100", "--max-num-batched-tokens 8192", 256, 256, 1000, 1000, 24.32 * 256),
    # github.com/vllm-project/vllm/issues/4702 (2024-05-09): Meta-Llama-3-8B-Instruct on an RTX A6000,
    # benchmark_throughput.py --input-len 128 --output-len 128 (1,000 prompts): "Throughput: 16.94 requests/s"
    ("A6000 offline", LLAMA_3_8B, "A6000", "--max-num-batched-tokens 8192", 128, 128, 1000, 1000, 16.94 * 128),
    # github.com/neuralmagic/nm-vllm commit 4c04122 (nightly benchmark, May 2024): NousResearch/Llama-2-7b-chat-hf,
    # max_model_len 4,096, benchmark_throughput --input-len 256 --output-len 128 --num-prompts 1000 on "NVIDIA A10G x
    # 1" (AWS's A10: 24 GB GDDR6, 600 GB/s): 3.8367 prompts/s. Llama 2's 32 KV heads fill the cache fast: preemptions.
    (
        "A10 offline",
        LLAMA_2_7B,
        "A10",
        "--max-model-len 4096 --max-num-batched-tokens 4096",
        256,
        128,
        1000,
        1000,
        3.8367 * 128,
    ),
]


@pytest.mark.parametrize(
    ("label", "model", "gpu", "params", "prompt", "answer", "concurrency", "requests", "measured"),
    MEASUREMENTS,
    ids=[m[0] for m in MEASUREMENTS],
)
def test_simulation_is_within_25_percent_of_published_measurements(
    label, model, gpu, params, prompt, answer, concurrency, requests, measured
):
    from odsc_magics.scheduling import simulate

    cfg = engine_config(model, _one(gpu), params)
    run = simulate(cfg, concurrency=concurrency, input_tokens=prompt, output_tokens=answer, requests=requests)
    assert run.output_tok_s == pytest.approx(measured, rel=0.25), f"{label}: {run.output_tok_s:.0f} tok/s"


# Time per output token: how fast one sequence's tokens arrive, read 2026-11-29.
# - yobitelcomm.github.io/bench/recipes/concurrency-sweep: Llama-3.1-8B-Instruct fp16 on one H100 80 GB, vLLM 0.21.0,
#   a short chat workload: tpot_p50 6.48 ms at concurrency 1.
# - databasemart.com/blog/vllm-gpu-benchmark-a40: Llama-3.1-8B-Instruct on an A40, 50 requests of 100 in / up to
#   600 out at once: median TPOT 35.96 ms.
TPOT = [
    ("H100 c1", LLAMA_8B, "H100", 128, 128, 1, 6.48e-3),
    ("A40 c50", LLAMA_8B, "A40", 100, 600, 50, 35.96e-3),
]


@pytest.mark.parametrize(
    ("label", "model", "gpu", "prompt", "answer", "concurrency", "tpot"), TPOT, ids=[t[0] for t in TPOT]
)
def test_time_per_output_token_is_within_25_percent_of_published_measurements(
    label, model, gpu, prompt, answer, concurrency, tpot
):
    from odsc_magics.scheduling import simulate

    cfg = engine_config(model, _one(gpu), "--max-model-len 8192")
    run = simulate(cfg, concurrency=concurrency, input_tokens=prompt, output_tokens=answer, requests=concurrency)
    ours = (run.p50_latency_s - run.p50_ttft_s) / (answer - 1)
    assert ours == pytest.approx(tpot, rel=0.25), f"{label}: {ours * 1e3:.2f} ms"


def test_long_prompts_cost_more_than_their_tokens_alone():
    # Attention over a prompt grows with its square: the second 16k of a 32k prompt costs more than the first 16k
    cfg = engine_config(LLAMA_8B, "BM.GPU.H100.8", "--tensor-parallel-size 1 --max-num-batched-tokens 16384")
    first = step_seconds(cfg, prefill_tokens=16384, decode_seqs=0, kv_tokens=16384)
    second = step_seconds(
        cfg, prefill_tokens=16384, decode_seqs=0, kv_tokens=32768, prefill_attended=16384 * 16384 + 16384 * 16385 // 2
    )
    assert second > 1.3 * first
    # and a 32k-token prompt takes more than twice as long to prefill as a 16k one
    from odsc_magics.scheduling import simulate

    short = simulate(cfg, concurrency=1, input_tokens=16384, output_tokens=2, requests=1)
    long = simulate(cfg, concurrency=1, input_tokens=32768, output_tokens=2, requests=1)
    assert long.p50_ttft_s > 2.2 * short.p50_ttft_s


def test_a_mixture_of_experts_reads_and_computes_only_the_experts_it_uses():
    # Mixtral-8x7B: 46.7B parameters, 12.9B per token (2 of 8 experts): one token reads about a quarter of the weights
    mixtral = model_spec_from("Mixtral-8x7B-Instruct-v0.1")
    assert (mixtral.experts, mixtral.experts_per_token, mixtral.active_parameters_b) == (8, 2, 12.9)
    cfg = engine_config(mixtral, "BM.GPU.H100.8", "--max-model-len 8192 --tensor-parallel-size 2")
    dense = replace(mixtral, experts=0, experts_per_token=0, active_parameters_b=None)
    dense_cfg = replace(cfg, model=dense)
    alone = step_seconds(cfg, prefill_tokens=0, decode_seqs=1, kv_tokens=1000)
    assert alone < 0.5 * step_seconds(dense_cfg, prefill_tokens=0, decode_seqs=1, kv_tokens=1000)
    # a large batch touches every expert: it reads what a dense model of the same size reads
    batch = step_seconds(cfg, prefill_tokens=0, decode_seqs=64, kv_tokens=64_000)
    assert batch == pytest.approx(step_seconds(dense_cfg, prefill_tokens=0, decode_seqs=64, kv_tokens=64_000), rel=0.02)
    # and a prompt costs the FLOPs of the active parameters
    prefill = step_seconds(cfg, prefill_tokens=8192, decode_seqs=0, kv_tokens=8192)
    assert prefill < 0.5 * step_seconds(dense_cfg, prefill_tokens=8192, decode_seqs=0, kv_tokens=8192)
