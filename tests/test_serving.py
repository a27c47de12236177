"""vLLM's memory and speed on a shape, against what vLLM logs and what published benchmarks measured."""

from __future__ import annotations

import pytest

from odsc_magics.serving import engine_config, estimate, memory, step_seconds
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
    assert step_seconds(cfg, prefill_tokens=4096, decode_seqs=0, kv_tokens=4096) == pytest.approx(
        2 * prefill, rel=0.1
    )


def test_estimate_agrees_with_the_simulation():
    from odsc_magics.scheduling import simulate

    cfg = engine_config(MISTRAL, "VM.GPU.A10.1", "--max-model-len 4096")
    guess = estimate(cfg, input_tokens=1000, output_tokens=500)
    assert 0 < guess.max_concurrent_seqs <= cfg.max_num_seqs
    alone = simulate(cfg, concurrency=1, input_tokens=1000, output_tokens=500, requests=3)
    assert guess.output_tok_s_1 == pytest.approx(alone.output_tok_s, rel=0.1)
    full = simulate(cfg, concurrency=guess.max_concurrent_seqs, input_tokens=1000, output_tokens=500)
    assert guess.output_tok_s_saturated == pytest.approx(full.output_tok_s, rel=0.15)
