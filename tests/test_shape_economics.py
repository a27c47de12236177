"""What a shape delivers for a model: sequences at a context length, tokens/s, price; and which shapes get none."""

from __future__ import annotations

import pytest

from odsc_magics import scheduling, serving
from odsc_magics.shape_economics import WORKLOAD, estimate_shape, workload_for, workload_words
from odsc_magics.sizing import SHAPES, model_spec_from

MISTRAL = model_spec_from("Mistral-7B-Instruct-v0.3")
LIST = {"A10": 2.00, "A100-40G": 3.05}  # OCI list USD per GPU-hour (Oracle's price list, 2026-08)


def test_the_workload_is_1024_in_256_out_shrunk_to_a_short_context() -> None:
    assert WORKLOAD == (1024, 256)
    assert workload_for(32768) == (1024, 256)
    assert workload_for(1280) == (1024, 256)
    inputs, outputs = workload_for(640)
    assert inputs + outputs == 640 and outputs == 128
    assert workload_words(512) == "410 in / 102 out tokens per request"


def test_a_fitting_shape_is_priced_at_its_gpus() -> None:
    e = estimate_shape(MISTRAL, "VM.GPU.A10.1", max_model_len=4096, prices=LIST)
    assert e.shape == "VM.GPU.A10.1" and e.max_model_len == 4096
    assert (e.input_tokens, e.output_tokens) == WORKLOAD
    assert e.usd_per_hour == pytest.approx(2.00)
    assert e.usd_per_million_output == pytest.approx(2.00 / (e.output_tok_s_saturated * 3600) * 1e6)
    assert 0 < e.output_tok_s_1 < e.output_tok_s_saturated
    two = estimate_shape(MISTRAL, "VM.GPU.A10.2", max_model_len=4096, prices=LIST)
    assert two.usd_per_hour == pytest.approx(4.00)
    assert two.output_tok_s_saturated > e.output_tok_s_saturated


def test_sequences_at_a_context_length_follow_the_kv_cache() -> None:
    long = estimate_shape(MISTRAL, "VM.GPU.A10.1", max_model_len=32768, prices=LIST)
    short = estimate_shape(MISTRAL, "VM.GPU.A10.1", max_model_len=4096, prices=LIST)
    cfg = serving.engine_config(MISTRAL, SHAPES["VM.GPU.A10.1"], "--max-model-len 4096")
    kv_tokens = serving.memory(cfg).kv_blocks * cfg.block_size
    assert short.sequences_at_max_len == min(256, kv_tokens // 4096)  # vLLM's "maximum concurrency" at start-up
    assert long.sequences_at_max_len == min(256, kv_tokens // 32768)
    capped = estimate_shape(MISTRAL, "VM.GPU.A10.1", max_model_len=4096, params="--max-num-seqs 4", prices=LIST)
    assert capped.sequences_at_max_len == 4


def test_the_saturated_estimate_agrees_with_the_simulated_scheduler() -> None:
    e = estimate_shape(MISTRAL, "VM.GPU.A10.1", max_model_len=4096, prices=LIST)
    cfg = serving.engine_config(MISTRAL, SHAPES["VM.GPU.A10.1"], "--max-model-len 4096")
    run = scheduling.simulate(cfg, concurrency=256, input_tokens=1024, output_tokens=256)
    assert e.output_tok_s_saturated == pytest.approx(run.output_tok_s, rel=0.25)
    alone = scheduling.simulate(cfg, concurrency=1, input_tokens=1024, output_tokens=256, requests=4)
    assert e.output_tok_s_1 == pytest.approx(alone.output_tok_s, rel=0.25)


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        ("Mistral-7B-Instruct-v0.3", "VM.Standard.E4.Flex"),  # no GPU
        ("Mistral-7B-Instruct-v0.3", "VM.GPU2.1"),  # P100: vLLM does not run
        ("Meta-Llama-3.1-70B-Instruct", "VM.GPU.A10.1"),  # weights do not fit
        ("in-house-7b", "VM.GPU.A10.1"),  # parameter count only: the KV cache is unknown
    ],
)
def test_no_estimate_where_the_engine_cannot_run_or_is_unknown(model: str, shape: str) -> None:
    assert estimate_shape(model_spec_from(model), shape, prices=LIST) is None


def test_an_unpriced_gpu_has_speed_but_no_price() -> None:
    e = estimate_shape(MISTRAL, "BM.GPU4.8", max_model_len=4096, prices={})
    assert e is not None and e.output_tok_s_saturated > 0
    assert e.usd_per_hour is None and e.usd_per_million_output is None
    assert "$" not in e.summary
