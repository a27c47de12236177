"""Memory and speed of vLLM serving a model on a shape: KV-cache capacity, start-up failures, step time, estimates.

Memory follows vLLM's start-up profile run. vLLM may use ``gpu_memory_utilization`` × the memory CUDA reports for
each GPU; from that it takes the weights (split over the tensor-parallel GPUs), the memory outside PyTorch's
allocator (CUDA context, cuBLAS workspaces, NCCL buffers when tensor parallel) and the activation peak of a dummy
forward pass over ``max_num_batched_tokens`` tokens; what is left becomes the KV cache, in blocks of 16 tokens.
Basis: vLLM's memory profiler as logged in vllm-project/vllm PR #10511 ("overhaul memory profiling", 2024-12-14,
https://github.com/vllm-project/vllm/pull/10511, read 2026-11-29): Meta-Llama-3-8B on an H100 80 GB at 0.90 takes
14.96 GiB of weights, 1.79 GiB outside PyTorch (3.58 GiB per GPU at tensor parallel 2) and a 1.26 GiB activation
peak over 8,192 tokens (hidden size 4,096: ≈ 40 bytes per token per hidden unit).

Speed: one engine step reads the weights (per GPU; of a mixture of experts, the experts its tokens are routed to)
and the KV cache of the tokens it attends to from memory, and does 2 × active parameters FLOPs per token it
processes, plus attention over the prompt; decode is memory-bound, prefill compute-bound, and a step takes
the larger of the two, plus a fixed per-step cost (scheduling, sampling, kernel launches), a per-sequence cost, and,
when tensor parallel, two all-reduces per layer. The efficiency constants are calibrated against the published
vLLM measurements listed beside them.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

from odsc_magics.gpus import GPU, GPUS
from odsc_magics.sizing import ModelSpec, ShapeInfo, shape_info
from odsc_magics.vllm_container import flag_values

__all__ = [
    "MAX_NUM_BATCHED_TOKENS",
    "MAX_NUM_SEQS",
    "EngineConfig",
    "Estimate",
    "Memory",
    "engine_config",
    "estimate",
    "kv_bytes_per_token",
    "memory",
    "step_seconds",
]

_GIB = 2**30

MAX_NUM_SEQS = 256
"""vLLM's default ``--max-num-seqs`` (engine arguments, docs.vllm.ai)."""

MAX_NUM_BATCHED_TOKENS = 2048
"""vLLM's default token budget per step for an OpenAI-compatible server with chunked prefill (engine arguments:
``--max-num-batched-tokens`` defaults to 2048 for the API server), the budget a prefill is chunked under."""

GPU_MEMORY_UTILIZATION = 0.9
BLOCK_SIZE = 16

# ---- memory (vLLM's profile run, PR #10511 above)
RUNTIME_GIB = 1.79  # memory outside PyTorch's allocator on one GPU: CUDA context, cuBLAS/attention workspaces
NCCL_GIB = 1.79  # more per GPU when tensor parallel (3.58 GiB at TP 2 in the same log)
ACTIVATION_BYTES = 40.0  # activation peak per token of the profile run, per unit of hidden size

# ---- speed: calibrated against these published vLLM measurements (read 2026-11-29); tests/test_serving.py holds
# the simulation within ±25% of each (with these constants it is within ±22%):
# - johnmusgrave.com, "vLLM throughput-latency sweep on NVIDIA A100": Llama-3.1-8B-Instruct BF16, one A100 40 GB,
#   vLLM 0.23, `vllm bench serve` random 1,024 in / 128 out, --ignore-eos, 20 × C prompts at max concurrency C:
#   ≈ 75 output tok/s at C = 1, 6.6 × that at C = 8.
# - mushfiqrahman.dev, "Benchmarking Mistral-7B on RTX 4090": Mistral-7B-Instruct-v0.3, one RTX 4090 24 GB,
#   256 in / 128 out, 300 prompts: 210 / 377 / 644 / 975 / 1,190 output tok/s at max concurrency 4 / 8 / 16 / 32 / 48.
# - databasemart.com, "A40 vLLM Benchmark": Llama-3.1-8B-Instruct, one A40 48 GB, 50 requests of 100 in / up to 600
#   out all at once: 1,016.6 output tok/s (22,170 tokens in 21.81 s, as long as the longest answers took).
# - vllm-project/vllm PR #7117 (2024-08-04): Meta-Llama-3-8B, one H100, benchmark_throughput 1,000 prompts of
#   256 in / 256 out: 24.32 requests/s (6,226 output tok/s).
# - vllm-project/vllm issue #4702 (2024-05-09): Meta-Llama-3-8B-Instruct, one RTX A6000, benchmark_throughput
#   1,000 prompts of 128 in / 128 out: 16.94 requests/s (2,168 output tok/s).
# - neuralmagic/nm-vllm nightly benchmark (commit 4c04122, May 2024): Llama-2-7b-chat-hf on one A10G (AWS's A10,
#   24 GB, 600 GB/s), benchmark_throughput 1,000 prompts of 256 in / 128 out: 3.84 prompts/s (491 output tok/s).
# - yobitelcomm.github.io/bench/recipes/concurrency-sweep: Llama-3.1-8B-Instruct on one H100, vLLM 0.21: 6.48 ms
#   per output token at concurrency 1; databasemart's A40 run above: median 35.96 ms at 50.
BANDWIDTH_EFFICIENCY = 0.90  # share of the datasheet's memory bandwidth a decode step achieves
FLOPS_EFFICIENCY = 0.65  # share of the datasheet's dense BF16 TFLOPS a prefill achieves
STEP_OVERHEAD_S = 0.001  # per step: scheduling, sampling, launches
SEQ_OVERHEAD_S = 0.0001  # per sequence in the step (input preparation, detokenisation, output processing)
LINK_LATENCY_S = {True: 10e-6, False: 25e-6}  # one all-reduce's latency, NVLink or PCIe
LINK_GBPS = {True: 200.0, False: 20.0}  # all-reduce bus bandwidth, NVLink or PCIe


@dataclass(frozen=True)
class EngineConfig:
    """One vLLM engine (per instance) serving ``model`` on ``shape``, and how many instances serve the deployment."""

    model: ModelSpec
    shape: ShapeInfo
    max_model_len: int
    tensor_parallel_size: int
    max_num_seqs: int = MAX_NUM_SEQS
    max_num_batched_tokens: int = MAX_NUM_BATCHED_TOKENS
    gpu_memory_utilization: float = GPU_MEMORY_UTILIZATION
    block_size: int = BLOCK_SIZE
    instances: int = 1


def _int_flag(flags: dict[str, str], name: str, default: int) -> int:
    value = flags.get(name, "")
    return int(value) if value.isdigit() and int(value) > 0 else default


def engine_config(
    model: ModelSpec, shape: ShapeInfo | str, params: str | None = None, *, instances: int = 1
) -> EngineConfig:
    """The engine a deployment's PARAMS give: ``--max-model-len`` (default: the model's context),
    ``--max-num-seqs``, ``--max-num-batched-tokens``, ``--tensor-parallel-size`` (default: the shape's GPUs, as
    AI Quick Actions sets it) and ``--gpu-memory-utilization``."""
    info = shape_info(shape)
    flags = flag_values(params)
    utilization = GPU_MEMORY_UTILIZATION
    with contextlib.suppress(ValueError):
        utilization = float(flags.get("--gpu-memory-utilization", "")) or utilization
    return EngineConfig(
        model=model,
        shape=info,
        max_model_len=_int_flag(flags, "--max-model-len", model.context or 8192),
        tensor_parallel_size=_int_flag(flags, "--tensor-parallel-size", max(1, info.gpu_count)),
        max_num_seqs=_int_flag(flags, "--max-num-seqs", MAX_NUM_SEQS),
        max_num_batched_tokens=_int_flag(flags, "--max-num-batched-tokens", MAX_NUM_BATCHED_TOKENS),
        gpu_memory_utilization=utilization,
        instances=max(1, instances),
    )


# ------------------------------------------------------------------------------------------------ memory


@dataclass(frozen=True)
class Memory:
    """Where one engine's GPU memory goes (GB = 10⁹ bytes, per GPU) and the KV blocks it ends with."""

    weights_gb: float
    overhead_gb: float
    usable_gb: float
    kv_cache_gb: float
    kv_bytes_per_token: int
    kv_blocks: int
    failure: str | None  # None | "weights_oom" | "kv_cache_too_small" | "no_kv_cache"

    @property
    def kv_tokens(self) -> int:
        return self.kv_blocks * BLOCK_SIZE


def _gpu(shape: ShapeInfo) -> GPU:
    """The shape's GPU; one the table does not know gets the shape's memory and no speed figures."""
    if shape.gpu_model in GPUS:
        return GPUS[shape.gpu_model]
    per_gpu = (shape.gpu_memory_gb or 0.0) / max(1, shape.gpu_count)
    if not per_gpu:
        raise ValueError(f"the GPU memory of {shape.name} is not known")
    return GPU(shape.gpu_model or "unknown", per_gpu, 0.0, 0.0, "shape table")


def _hidden(model: ModelSpec) -> float:
    """Hidden size; unknown, estimated from the parameter count (an 8B model has 4,096)."""
    return float(model.hidden_size or 4096 * math.sqrt(model.parameters_b / 8.0))


def kv_bytes_per_token(model: ModelSpec) -> int:
    """KV-cache bytes of one token, whole model (K and V, every layer and KV head).

    Unknown architecture: estimated from the parameter count as a grouped-query model like Llama 3 (an 8B model
    holds 128 KiB a token), scaled by the square root of its size.
    """
    exact = model.kv_bytes_per_token()
    if exact:
        return int(exact)
    return int(131072 * math.sqrt(model.parameters_b / 8.0) * model.kv_bytes / 2.0)


def _kv_bytes_per_gpu(cfg: EngineConfig) -> float:
    """A token's KV bytes on one GPU: the KV heads split over the GPUs (replicated when fewer than them)."""
    model, tp = cfg.model, cfg.tensor_parallel_size
    if model.has_architecture:
        heads = max(1.0, model.kv_heads / tp)
        return 2.0 * model.layers * heads * model.head_dim * model.kv_bytes
    return kv_bytes_per_token(model) / tp


def memory(cfg: EngineConfig) -> Memory:
    """The engine's memory as vLLM's start-up profile accounts it, and the start-up failure it leads to."""
    gpu = _gpu(cfg.shape)
    tp = cfg.tensor_parallel_size
    visible = gpu.visible_bytes
    usable = cfg.gpu_memory_utilization * visible
    weights = cfg.model.weights_gb * 1e9 / tp
    runtime = (RUNTIME_GIB + (NCCL_GIB if tp > 1 else 0.0)) * _GIB
    activation = ACTIVATION_BYTES * _hidden(cfg.model) * cfg.max_num_batched_tokens
    kv = usable - weights - runtime - activation
    per_token = _kv_bytes_per_gpu(cfg)
    blocks = max(0, int(kv // (per_token * cfg.block_size))) if kv > 0 else 0
    failure = None
    if weights + runtime > visible:
        failure = "weights_oom"
    elif blocks <= 0:
        failure = "no_kv_cache"
    elif blocks * cfg.block_size < cfg.max_model_len:
        failure = "kv_cache_too_small"
    return Memory(
        weights_gb=weights / 1e9,
        overhead_gb=(runtime + activation) / 1e9,
        usable_gb=usable / 1e9,
        kv_cache_gb=max(0.0, kv) / 1e9,
        kv_bytes_per_token=kv_bytes_per_token(cfg.model),
        kv_blocks=blocks,
        failure=failure,
    )


# ------------------------------------------------------------------------------------------------- speed


def _weights_read(model: ModelSpec, tokens: int) -> float:
    """Bytes of weights one step reads for ``tokens`` tokens (whole model): all of a dense model's; of a mixture of
    experts, the shared layers plus the experts the batch's tokens are routed to (each picks ``experts_per_token``
    of ``experts``, taken as uniform: an expert is missed by all of them with probability (1 - k/E) ** tokens)."""
    if not (model.experts and model.experts_per_token and model.active_parameters_b):
        return model.weights_gb * 1e9
    experts, per_token = model.experts, model.experts_per_token
    per_expert = (model.parameters_b - model.active_parameters_b) / (experts - per_token)
    shared = model.active_parameters_b - per_token * per_expert
    touched = experts * (1.0 - (1.0 - per_token / experts) ** max(1, tokens))
    return (shared + touched * per_expert) * 1e9 * model.bytes_per_param


def step_seconds(
    cfg: EngineConfig, *, prefill_tokens: int, decode_seqs: int, kv_tokens: int, prefill_attended: int | None = None
) -> float:
    """Simulated seconds of one engine step over ``prefill_tokens`` prompt tokens and ``decode_seqs`` decoding
    sequences that attend to ``kv_tokens`` tokens of KV cache in all.

    ``prefill_attended`` is the sum, over the prompt tokens, of the tokens each attends to (its attention costs
    4 × layers × hidden FLOPs per pair, which matters for long prompts); default: one chunk from a fresh prompt.
    """
    gpu = _gpu(cfg.shape)
    if not gpu.bandwidth_gbps:
        raise ValueError(f"no speed figures for the GPUs of {cfg.shape.name}")
    tp = cfg.tensor_parallel_size
    model = cfg.model
    tokens = prefill_tokens + decode_seqs
    read = _weights_read(model, tokens) / tp + kv_tokens * _kv_bytes_per_gpu(cfg)
    memory_s = read / (gpu.bandwidth_gbps * 1e9 * BANDWIDTH_EFFICIENCY)
    if prefill_attended is None:
        prefill_attended = prefill_tokens * (prefill_tokens + 1) // 2
    active = model.active_parameters_b or model.parameters_b
    flops = 2.0 * active * 1e9 * tokens + 4.0 * (model.layers or 32) * _hidden(model) * prefill_attended
    compute_s = flops / (tp * gpu.bf16_tflops * 1e12 * FLOPS_EFFICIENCY)
    seconds = max(memory_s, compute_s) + STEP_OVERHEAD_S + SEQ_OVERHEAD_S * (decode_seqs + (1 if prefill_tokens else 0))
    if tp > 1:
        layers = model.layers or 32
        bytes_per_reduce = tokens * _hidden(model) * 2.0 * 2.0 * (tp - 1) / tp
        per_reduce = LINK_LATENCY_S[gpu.nvlink] + bytes_per_reduce / (LINK_GBPS[gpu.nvlink] * 1e9)
        seconds += 2 * layers * per_reduce
    return seconds


@dataclass(frozen=True)
class Estimate:
    """What one deployment of the engine delivers for requests of a given length."""

    max_concurrent_seqs: int
    output_tok_s_1: float
    output_tok_s_saturated: float
    saturation_concurrency: int


def estimate(cfg: EngineConfig, *, input_tokens: int, output_tokens: int) -> Estimate:
    """Output tokens/s alone and at saturation for requests of ``input_tokens`` in, ``output_tokens`` out."""
    mem = memory(cfg)
    per_seq_blocks = math.ceil((input_tokens + output_tokens) / cfg.block_size)
    fitting = min(cfg.max_num_seqs, mem.kv_blocks // max(1, per_seq_blocks))
    if mem.failure in ("weights_oom", "no_kv_cache") or fitting <= 0:
        return Estimate(0, 0.0, 0.0, 0)
    alone = _cycle_tok_s(cfg, 1, input_tokens, output_tokens)
    saturated = _cycle_tok_s(cfg, fitting, input_tokens, output_tokens) * cfg.instances
    return Estimate(fitting, alone, saturated, fitting * cfg.instances)


def _cycle_tok_s(cfg: EngineConfig, seqs: int, input_tokens: int, output_tokens: int) -> float:
    """Output tokens/s of ``seqs`` sequences each going round prefill → decode → next request (steady state).

    Every sequence needs ``output_tokens`` steps per request (the last prefill chunk emits the first token); the
    prompt tokens share those steps' token budget, or add steps when they do not fit it.
    """
    budget = cfg.max_num_batched_tokens
    if seqs == 1:
        chunks = max(1, math.ceil(input_tokens / budget))
        prefill = 0.0
        for i in range(chunks):
            chunk = min(budget, input_tokens - i * budget)
            prefill += step_seconds(
                cfg,
                prefill_tokens=chunk,
                decode_seqs=0,
                kv_tokens=i * budget + chunk,
                prefill_attended=chunk * i * budget + chunk * (chunk + 1) // 2,
            )
        decode = (output_tokens - 1) * step_seconds(
            cfg, prefill_tokens=0, decode_seqs=1, kv_tokens=input_tokens + output_tokens // 2
        )
        return output_tokens / (prefill + decode)
    # Requests drift apart in a closed loop. While the prompts fit the steps every sequence needs for its answer,
    # each prompt is prefilled in its own step(s) of up to ``budget`` tokens alongside the others' decoding and the
    # remaining steps only decode; when they do not fit, every step is a full budget of prompt and decode tokens.
    steps_for_tokens = seqs * (input_tokens + output_tokens - 1) / budget
    if steps_for_tokens <= output_tokens:
        chunk = min(budget - seqs, input_tokens)
        prefill_steps = seqs * input_tokens / chunk
        kv = round(seqs * (input_tokens + output_tokens / 2))
        attended = chunk * (input_tokens - chunk) // 2 + chunk * (chunk + 1) // 2  # chunks start mid-prompt on average
        mixed = step_seconds(cfg, prefill_tokens=chunk, decode_seqs=seqs - 1, kv_tokens=kv, prefill_attended=attended)
        decode = step_seconds(cfg, prefill_tokens=0, decode_seqs=seqs, kv_tokens=kv)
        cycle = prefill_steps * mixed + max(0.0, output_tokens - prefill_steps) * decode
        return seqs * output_tokens / cycle
    decoding = seqs * (output_tokens - 1) / steps_for_tokens
    prompt = budget - decoding
    if prompt >= input_tokens:  # whole prompts in a step
        attended = prompt / input_tokens * input_tokens * (input_tokens + 1) / 2
        prompt_kv = prompt
    else:  # a chunk of a prompt, starting mid-prompt on average
        attended = prompt * (input_tokens - prompt) / 2 + prompt * (prompt + 1) / 2
        prompt_kv = (input_tokens - prompt) / 2 + prompt
    step = step_seconds(
        cfg,
        prefill_tokens=round(prompt),
        decode_seqs=round(decoding),
        kv_tokens=round(decoding * (input_tokens + output_tokens / 2) + prompt_kv),
        prefill_attended=round(attended),
    )
    return seqs * output_tokens / (steps_for_tokens * step)
