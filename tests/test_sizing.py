"""GPU sizing: shape catalog, model specs from names and metadata, and the fit verdicts."""

from __future__ import annotations

import pytest

from odsc_magics.sizing import (
    SHAPES,
    FitVerdict,
    ModelSpec,
    ShapeInfo,
    deployment_config,
    fit,
    format_gb,
    model_spec_from,
    rank_shapes,
    shape_info,
    shapes_from_service,
    smallest_fitting_shape,
)

LLAMA_8B = "Meta-Llama-3.1-8B-Instruct"
LLAMA_70B = "meta-llama/Llama-3.3-70B-Instruct"


# ------------------------------------------------------------------------------------ published figures
# Written here from the publishers' documents, not from the implementation's tables, so that a wrong table
# entry fails. Read 2026-11-29.
#
# Models: (parameters, layers, hidden size, attention heads, KV heads, head dim, context), from each model's
# Hugging Face config.json (num_hidden_layers, hidden_size, num_attention_heads, num_key_value_heads,
# head_dim or hidden_size / num_attention_heads, max_position_embeddings) and the exact parameter count of
# its safetensors weights shown on the model card (https://huggingface.co/<repo>).
PUBLISHED_MODELS = {
    # mistralai/Mistral-7B-Instruct-v0.3: 7,248,023,552 parameters ("7.25B"; vocabulary 32,768)
    "Mistral-7B-Instruct-v0.3": (7_248_023_552, 32, 4096, 32, 8, 128, 32768),
    # meta-llama/Llama-3.1-8B-Instruct: 8,030,261,248 parameters ("8.03B")
    "Meta-Llama-3.1-8B-Instruct": (8_030_261_248, 32, 4096, 32, 8, 128, 131072),
    # meta-llama/Llama-3.1-70B-Instruct: 70,553,706,496 parameters ("70.6B")
    "Meta-Llama-3.1-70B-Instruct": (70_553_706_496, 80, 8192, 64, 8, 128, 131072),
    # mistralai/Mixtral-8x7B-Instruct-v0.1: 46,702,792,704 parameters ("46.7B", 8 experts, 2 per token)
    "Mixtral-8x7B-Instruct-v0.1": (46_702_792_704, 32, 4096, 32, 8, 128, 32768),
    # microsoft/Phi-3-mini-4k-instruct: 3,821,079,552 parameters ("3.82B"; multi-head attention)
    "Phi-3-mini-4k-instruct": (3_821_079_552, 32, 3072, 32, 32, 96, 4096),
    # google/gemma-2-9b-it: 9,241,705,984 parameters ("9.24B"); config.json sets head_dim 256 (≠ 3584 / 16)
    "gemma-2-9b-it": (9_241_705_984, 42, 3584, 16, 8, 256, 8192),
}

# Memory of one GPU, GB, from the vendors' datasheets: NVIDIA A10 (24 GB GDDR6), Tesla P100 (16 GB HBM2, the
# 16 GB part in OCI's GPU2 shapes), Tesla V100 (16 GB HBM2, OCI's GPU3 shapes), A100 (40 GB and 80 GB),
# H100 SXM (80 GB HBM3), H200 (141 GB HBM3e), L40S (48 GB GDDR6), DGX B200 (1,440 GB over 8 GPUs: 180 GB
# each); AMD Instinct MI300X (192 GB HBM3). GB200: NVIDIA's launch specification gave 384 GB HBM3e per
# superchip of 2 GPUs (192 GB each), the figure OCI's 768 GB for BM.GPU.GB200.4 uses; NVIDIA's later GB200
# NVL72 sheet says up to 372 GB (186 GB each). The table follows OCI's figure for its own shape.
PUBLISHED_GPU_GB = {
    "A10": 24,
    "P100": 16,
    "V100": 16,
    "A100-40G": 40,
    "A100-80G": 80,
    "H100": 80,
    "H200": 141,
    "L40S": 48,
    "B200": 180,
    "GB200": 192,
    "MI300X": 192,
}

# GPUs per shape, from OCI's Compute shapes reference, "GPU shapes" (bare metal and VM tables,
# https://docs.oracle.com/en-us/iaas/Content/Compute/References/computeshapes.htm) and, for VM.GPU.A10.4
# and VM.GPU3.8, AI Quick Actions' supported GPU shapes (oracle-samples/oci-data-science-ai-samples,
# ai-quick-actions/supported-gpu-shapes.md).
PUBLISHED_SHAPES = {
    "VM.GPU.A10.1": (1, "A10"),
    "VM.GPU.A10.2": (2, "A10"),
    "VM.GPU.A10.4": (4, "A10"),
    "BM.GPU.A10.4": (4, "A10"),
    "VM.GPU2.1": (1, "P100"),
    "BM.GPU2.2": (2, "P100"),
    "VM.GPU3.1": (1, "V100"),
    "VM.GPU3.2": (2, "V100"),
    "VM.GPU3.4": (4, "V100"),
    "BM.GPU3.8": (8, "V100"),
    "VM.GPU3.8": (8, "V100"),
    "BM.GPU.L40S.4": (4, "L40S"),
    "BM.GPU.L40S-NC.4": (4, "L40S"),
    "BM.GPU4.8": (8, "A100-40G"),
    "BM.GPU.B4.8": (8, "A100-40G"),
    "BM.GPU.A100-V2.8": (8, "A100-80G"),
    "BM.GPU.H100.8": (8, "H100"),
    "BM.GPU.H200.8": (8, "H200"),
    "BM.GPU.B200.8": (8, "B200"),
    "BM.GPU.GB200.4": (4, "GB200"),
    "BM.GPU.MI300X.8": (8, "MI300X"),
}


def _published_b(name: str) -> float:
    return PUBLISHED_MODELS[name][0] / 1e9


@pytest.mark.parametrize("name", sorted(PUBLISHED_MODELS))
def test_known_architecture_matches_the_published_configuration(name):
    params, layers, hidden, _heads, kv_heads, head_dim, context = PUBLISHED_MODELS[name]
    spec = model_spec_from(name)
    assert spec is not None and spec.source == "known architecture"
    # the table keeps three significant figures
    assert spec.parameters_b == pytest.approx(params / 1e9, rel=1e-3)
    assert (spec.layers, spec.hidden_size, spec.kv_heads, spec.head_dim, spec.context) == (
        layers,
        hidden,
        kv_heads,
        head_dim,
        context,
    )
    assert spec.kv_bytes_per_token() == 2 * layers * kv_heads * head_dim * 2


@pytest.mark.parametrize("name", sorted(PUBLISHED_MODELS))
def test_a_published_config_json_gives_the_same_architecture(name):
    # Given a model the table does not know, whose metadata carries the published config.json keys
    params, layers, hidden, heads, kv_heads, head_dim, context = PUBLISHED_MODELS[name]
    config = {
        "num_hidden_layers": layers,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": context,
        "torch_dtype": "bfloat16",
        "num_parameters": params,
    }
    if head_dim != hidden // heads:
        config["head_dim"] = head_dim
    spec = model_spec_from("an-unlisted-model", config)
    # Then sizing reads the same figures from it
    assert spec is not None and spec.source == "metadata"
    assert spec.parameters_b == pytest.approx(params / 1e9)
    assert (spec.layers, spec.kv_heads, spec.head_dim, spec.context) == (layers, kv_heads, head_dim, context)
    assert spec.weights_gb == pytest.approx(params * 2 / 1e9)


def test_every_local_catalog_model_has_published_figures():
    from odsc_magics.local.catalog import SERVICE_MODELS

    for model in SERVICE_MODELS:
        name = model["displayName"]
        if model["freeformTags"]["task"] == "text_embedding":
            continue  # served by TEI, not sized as vLLM models: tests/test_embedding_models.py checks their figures
        assert name in PUBLISHED_MODELS, f"{name}: add its published figures to PUBLISHED_MODELS"
        meta = {m["key"]: m["value"] for m in model["customMetadataList"]}
        assert int(meta["context_length"]) == PUBLISHED_MODELS[name][6]
        shown = float(meta["parameter_count"].rstrip("B"))
        assert shown == pytest.approx(_published_b(name), rel=1e-3), name  # "7.25B": three significant figures


def test_gpu_shapes_match_the_published_gpu_count_and_memory():
    gpu_shapes = [s for s in SHAPES.values() if s.is_gpu]
    assert {s.name for s in gpu_shapes} <= set(PUBLISHED_SHAPES), "cite every GPU shape in PUBLISHED_SHAPES"
    for shape in gpu_shapes:
        count, gpu = PUBLISHED_SHAPES[shape.name]
        assert (shape.gpu_count, shape.gpu_model) == (count, gpu), shape.name
        assert shape.gpu_memory_gb == count * PUBLISHED_GPU_GB[gpu], shape.name


def test_local_catalog_shapes_match_the_published_gpu_count_and_memory():
    from odsc_magics.local.catalog import SHAPES as LOCAL_SHAPES

    for name, _cores, _memory, _series, gpus, gpu_memory in LOCAL_SHAPES:
        if not gpus:
            continue
        count, gpu = PUBLISHED_SHAPES[name]
        assert (gpus, gpu_memory) == (count, count * PUBLISHED_GPU_GB[gpu]), name


def test_shape_table_cpu_figures_and_usable_memory():
    a10 = SHAPES["VM.GPU.A10.1"]
    # OCI Compute shapes: VM.GPU.A10.1 has 15 OCPUs and 240 GB of memory; BM.GPU.A10.4 has 1,024 GB
    assert (a10.cpu_count, a10.cpu_memory_gb) == (15, 240)
    assert SHAPES["BM.GPU.A10.4"].cpu_memory_gb == 1024
    assert SHAPES["VM.Standard.E4.Flex"].gpu_count == 0
    # vLLM's default gpu_memory_utilization is 0.9
    assert a10.usable_gb == pytest.approx(0.9 * 24)


def test_shapes_from_service_intersects_and_keeps_unknown_ones():
    offered = [
        {"name": "VM.GPU.A10.1", "coreCount": 15, "memoryInGBs": 240, "shapeSeries": "NVIDIA_GPU"},
        {"name": "VM.GPU.NEW.1", "coreCount": 8, "memoryInGBs": 64, "shapeSeries": "NVIDIA_GPU"},
        {"name": "VM.Standard.E4.Flex", "coreCount": 64, "memoryInGBs": 1024, "shapeSeries": "AMD_ROME"},
    ]
    shapes = shapes_from_service(offered)
    assert shapes[0] is SHAPES["VM.GPU.A10.1"]
    assert shapes[1] == ShapeInfo("VM.GPU.NEW.1", 1, None, None, 8, 64)
    assert shapes[2].gpu_count == 0

    class Summary:  # the SDK's ModelDeploymentShapeSummary uses snake_case attributes
        name = "VM.GPU.A10.2"
        core_count = 30
        memory_in_gbs = 480
        shape_series = "NVIDIA_GPU"

    assert shapes_from_service([Summary()]) == [SHAPES["VM.GPU.A10.2"]]


def test_unknown_shape_name():
    assert shape_info("VM.GPU.X9.1").gpu_memory_gb is None
    assert shape_info("VM.GPU.X9.1").is_gpu
    assert not shape_info("VM.Standard.X").is_gpu


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("my-org/custom-7B-chat", 7.0),
        ("acme_model_70b", 70.0),
        ("tiny-3.8B", 3.8),
        ("acme-8x7B-moe", 56.0),  # n × size: an upper bound for an unknown mixture of experts
        ("small-350M", 0.35),
    ],
)
def test_parameter_count_from_name(name, params):
    spec = model_spec_from(name)
    assert spec is not None and spec.source == "name"
    assert spec.parameters_b == pytest.approx(params)
    assert not spec.has_architecture


@pytest.mark.parametrize("name", ["Phi-mini", "mistral-nemo-instruct", "v0.1-release", "model-4k"])
def test_no_parameter_count(name):
    assert model_spec_from(name) is None


def test_quantisation_from_name_and_metadata():
    assert model_spec_from("Llama-3.1-8B-Instruct-AWQ").bytes_per_param == 0.5
    assert model_spec_from("Llama-3.1-8B-Instruct-FP8").bytes_per_param == 1.0
    meta = {
        "num_hidden_layers": 24,
        "hidden_size": 2048,
        "num_attention_heads": 16,
        "num_key_value_heads": 4,
        "max_position_embeddings": 16384,
        "torch_dtype": "float32",
        "num_parameters": 1_500_000_000,
    }
    spec = model_spec_from("whatever", meta)
    assert spec is not None and spec.source == "metadata"
    assert (spec.parameters_b, spec.layers, spec.kv_heads, spec.head_dim, spec.context) == (
        1.5,
        24,
        4,
        128,
        16384,
    )
    assert spec.bytes_per_param == 4.0
    assert spec.kv_bytes == 4.0


def test_kv_cache_formula():
    spec = model_spec_from(LLAMA_8B)
    # 2 × 32 layers × 8 KV heads × 128 head dim × 2 bytes
    assert spec.kv_bytes_per_token() == 131072
    verdict = fit(spec, "VM.GPU.A10.1", max_model_len=8192, concurrency=4)
    assert verdict.kv_cache_gb == pytest.approx(131072 * 8192 * 4 / 1e9)


def test_8b_fits_a10_at_8k():
    verdict = fit(model_spec_from(LLAMA_8B), SHAPES["VM.GPU.A10.1"], max_model_len=8192)
    assert verdict.fits and bool(verdict)
    assert verdict.weights_gb == pytest.approx(16.06)
    assert verdict.kv_cache_gb == pytest.approx(1.07, abs=0.01)
    assert verdict.usable_gb == pytest.approx(21.6)
    assert (
        verdict.reason == "needs ≈ 16.1 GB weights + 1.1 GB KV cache at 8,192 tokens; VM.GPU.A10.1 has 24 GB"
    )


def test_8b_at_full_context_suggests_max_model_len():
    verdict = fit(model_spec_from(LLAMA_8B), "VM.GPU.A10.1")
    assert not verdict.fits
    assert verdict.tokens == 131072
    # vLLM budgets 0.9 × the 22.18 GiB CUDA reports (21.4 GB); less 16.06 GB of weights and ≈ 2.3 GB outside the
    # KV cache (runtime, activations) that leaves ≈ 3.1 GB: ≈ 23,800 tokens at 131,072 B → 16,384 (power of two)
    assert verdict.suggested_max_model_len == 16384
    assert verdict.suggested_shape == "VM.GPU.A10.2"
    assert verdict.reason == (
        "needs ≈ 16.1 GB weights + 17.2 GB KV cache at 131,072 tokens; does not fit VM.GPU.A10.1 "
        "(24 GB, ≈ 21.6 GB usable); smallest shape that fits: VM.GPU.A10.2, or --max-model-len 16384"
    )
    assert fit(model_spec_from(LLAMA_8B), "VM.GPU.A10.1", max_model_len=16384).fits
    assert not fit(model_spec_from(LLAMA_8B), "VM.GPU.A10.1", max_model_len=32768).fits


def test_70b_needs_more_than_four_a10s():
    spec = model_spec_from(LLAMA_70B)
    verdict = fit(spec, "BM.GPU.A10.4", max_model_len=8192)
    assert not verdict.fits
    assert verdict.weights_gb == pytest.approx(141.2)
    # 141 GB of weights leave no room on 4 × A10 (86.4 GB usable): no --max-model-len helps
    assert verdict.suggested_max_model_len is None
    assert verdict.suggested_shape == "BM.GPU.L40S.4"
    assert "does not fit BM.GPU.A10.4 (96 GB, ≈ 86.4 GB usable); smallest shape that fits: BM.GPU.L40S.4" in (
        verdict.reason
    )
    assert smallest_fitting_shape(spec, max_model_len=8192).name == "BM.GPU.L40S.4"
    region = ["VM.GPU.A10.1", "VM.GPU.A10.2", "BM.GPU.A10.4", "BM.GPU.H100.8"]
    assert smallest_fitting_shape(spec, region, max_model_len=8192).name == "BM.GPU.H100.8"
    assert (
        fit(spec, "VM.GPU.A10.1", max_model_len=8192, alternatives=region).suggested_shape == "BM.GPU.H100.8"
    )


def test_nothing_fits():
    spec = ModelSpec("giant", 2000.0)
    verdict = fit(spec, "VM.GPU.A10.1", alternatives=["VM.GPU.A10.1", "VM.GPU.A10.2"])
    assert not verdict.fits
    assert verdict.reason.endswith("no listed shape has enough GPU memory")
    assert smallest_fitting_shape(spec, ["VM.GPU.A10.1"]) is None


def test_unknown_architecture_checks_weights_only():
    verdict = fit(model_spec_from("custom-13B"), "VM.GPU.A10.1")
    assert not verdict.fits
    assert verdict.kv_cache_gb is None
    assert verdict.reason.startswith("needs ≈ 26 GB weights (KV cache not estimated: architecture unknown)")
    # 2 × V100 (32 GB) would hold the 13 GB per GPU only without the ≈ 2 GB per GPU vLLM keeps outside the KV
    # cache and NCCL's buffers: 2 × A10 (48 GB) is the smallest that does
    assert verdict.suggested_shape == "VM.GPU.A10.2"
    assert fit(model_spec_from("custom-7B"), "VM.GPU.A10.1").fits


def test_cpu_p100_and_unknown_shapes():
    spec = model_spec_from(LLAMA_8B)
    assert not fit(spec, "VM.Standard.E4.Flex").fits
    assert "no GPU" in fit(spec, "VM.Standard.E4.Flex").reason
    p100 = fit(spec, "BM.GPU2.2", max_model_len=4096)
    assert not p100.fits and "P100" in p100.reason
    unknown = fit(spec, "VM.GPU.X9.1", max_model_len=4096)
    assert unknown.fits and "not known" in unknown.reason


def test_max_model_len_beyond_context():
    verdict = fit(model_spec_from("Phi-3-mini-4k-instruct"), "VM.GPU.A10.1", max_model_len=8192)
    assert not verdict.fits
    assert verdict.suggested_max_model_len == 4096
    assert "4,096-token context" in verdict.reason


def test_deployment_configuration_wins():
    spec = model_spec_from(LLAMA_8B)
    listed = ["VM.GPU.A10.2", "BM.GPU.A10.4"]
    # the estimate says 8B fits A10.1 at 4k tokens, but the model's configuration does not list it
    refused = fit(spec, "VM.GPU.A10.1", max_model_len=4096, deployment_shapes=listed)
    assert not refused.fits
    assert refused.suggested_shape == "VM.GPU.A10.2"
    assert "not in the model's deployment configuration" in refused.reason
    accepted = fit(spec, "VM.GPU.A10.2", deployment_shapes=listed)
    assert accepted.fits and "listed in the model's deployment configuration" in accepted.reason


def test_rank_shapes_orders_fitting_first_by_size():
    spec = model_spec_from(LLAMA_8B)
    ranked = rank_shapes(spec, ["BM.GPU.H100.8", "VM.GPU.A10.1", "VM.GPU.A10.2", "VM.Standard.E4.Flex"])
    assert [(s.name, v.fits) for s, v in ranked] == [
        ("VM.GPU.A10.2", True),
        ("BM.GPU.H100.8", True),
        ("VM.GPU.A10.1", False),
        ("VM.Standard.E4.Flex", False),
    ]
    # suggestions come from the ranked shapes only
    assert ranked[2][1].suggested_shape == "VM.GPU.A10.2"


def test_format_gb():
    assert [format_gb(x) for x in (16.06, 4.0, 21.6, 141.2, 0.35)] == ["16.1", "4", "21.6", "141", "0.3"]


def test_deployment_config():
    config = {
        "shape": ["VM.GPU.A10.1", "VM.GPU.A10.2"],
        "configuration": {
            "VM.GPU.A10.1": {"parameters": {"VLLM_PARAMS": "--max-model-len 4096 --enforce-eager"}},
            "VM.GPU.A10.2": {"parameters": {}},
        },
    }
    assert deployment_config(config) == (["VM.GPU.A10.1", "VM.GPU.A10.2"], {"VM.GPU.A10.1": 4096})
    assert deployment_config(None) == ([], {})
    assert deployment_config({"configuration": {"X": None}}) == ([], {})


def test_every_verdict_says_its_kind():
    spec = model_spec_from(LLAMA_8B)
    listed = ["VM.GPU.A10.2"]
    kinds = {
        "fits": fit(spec, "VM.GPU.A10.1", max_model_len=8192),
        "listed": fit(spec, "VM.GPU.A10.2", deployment_shapes=listed),
        "not_listed": fit(spec, "VM.GPU.A10.1", deployment_shapes=listed),
        "no_gpu": fit(spec, "VM.Standard.E4.Flex"),
        "gpu_unsupported": fit(spec, "VM.GPU2.1", max_model_len=4096),
        "context_too_long": fit(spec, "VM.GPU.A10.1", max_model_len=262144),
        "unchecked": fit(spec, "VM.GPU.X9.1", max_model_len=4096),
        "kv_cache": fit(spec, "VM.GPU.A10.1"),  # 16 GB of weights fit 21.6 GB; 17 GB more of KV cache does not
        "too_big": fit(model_spec_from(LLAMA_70B), "VM.GPU.A10.1", max_model_len=4096),
    }
    assert {kind: verdict.kind for kind, verdict in kinds.items()} == {kind: kind for kind in kinds}
    assert [k for k, v in kinds.items() if v.fits] == ["fits", "listed", "unchecked"]


def test_short_reason_comes_from_the_kind_not_the_wording():
    # A verdict whose reason says nothing recognisable is still labelled by its kind
    def made(kind: str, **extra) -> FitVerdict:
        return FitVerdict(False, 10.0, 2.5, 21.6, "whatever the service said: has no GPU; context", kind, **extra)

    assert made("no_gpu").short_reason == "no GPU"
    assert made("gpu_unsupported").short_reason == "GPU not supported by vLLM"
    assert made("not_listed").short_reason == "not in the model's configuration"
    assert made("context_too_long", suggested_max_model_len=4096).short_reason == "over the model's 4,096-token context"
    assert made("kv_cache").short_reason == "needs ≈ 12.5 GB"
    assert made("too_big").short_reason == "needs ≈ 12.5 GB"
