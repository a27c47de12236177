"""How a model server launch ends: shape capacity, GPU memory (by odsc_magics.serving), and its start-up log.

A launch (create, activate, or an update that changes the model, shape or container) first needs an instance
of the shape (``--no-capacity SHAPE`` says there is none), then vLLM must fit the model's weights and the KV
cache of its ``--max-model-len`` (else the model's context) into the shape's GPU memory, as vLLM's start-up
profile accounts it (``odsc_magics.serving.memory``: weights, runtime and activations, then KV blocks). The lines
follow vLLM 0.6's start-up; the failing ones are the lines vLLM and PyTorch print for that failure.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field

from odsc_magics import serving
from odsc_magics.gpus import GPUS
from odsc_magics.sizing import ModelSpec, ShapeInfo, model_spec_from, shape_info
from odsc_magics.vllm_container import flag_values
from odsc_magics.vllm_container import max_model_len as params_max_model_len

FAIL_ENV = "EMULATOR_FAIL"  # container env var: the deployment ends FAILED with this text as the reason
VLLM_VERSION = "0.6.4.post1"
MODEL_DIR = "/opt/ds/model/deployed_model"
CAPACITY_CODE = "InternalError"  # what OCI answers when a shape is out of host capacity
SERVER_CODE = "ModelDeploymentFailed"
STAMP = "{t}"  # where a line's time goes (vLLM prints "MM-DD HH:MM:SS")

_CUDA_CONTEXT_GIB = 0.31  # what the CUDA context takes before PyTorch allocates anything
_GIB = 2**30
_SITE = "/usr/local/lib/python3.11/dist-packages/vllm"


@dataclass
class Launch:
    """The end of a launch: ``failed`` with a work-request error, or started; and what the server printed."""

    failed: bool = False
    code: str | None = None
    message: str | None = None
    at: float = 1.0  # fraction of the operation's duration at which it ends
    details: str | None = None  # lifecycleDetails of the FAILED deployment (default: the message)
    lines: list[str] = field(default_factory=list)  # predict-log lines; STAMP marks a line's time


def plan(model: dict | None, env: dict[str, str], shape: str, *, no_capacity: Collection[str] = ()) -> Launch:
    """How launching a model server for ``model`` on ``shape`` with the container ``env`` ends."""
    if shape in no_capacity:
        message = (
            f"There is currently no capacity for the specified shape {shape}. Try a different shape, or try "
            "again later."
        )
        return Launch(True, CAPACITY_CODE, message, at=0.15)
    from odsc_magics.local.embeddings import tei_launch_lines

    tei = tei_launch_lines(model, env, STAMP) if not env.get(FAIL_ENV) else None
    if tei is not None:  # an embedding model: the TEI container starts, not vLLM
        return Launch(lines=tei)
    max_model_len = params_max_model_len(env.get("PARAMS", ""))
    spec = model_spec(model)
    info = shape_info(shape)
    head = _head(env, info, max_model_len)
    reason = env.get(FAIL_ENV)
    if reason:
        message = f"Model deployment failed: {reason}"
        return Launch(True, SERVER_CODE, message, 0.7, reason, [*head, f"ERROR:    {reason}"])
    engine = _engine(env, spec, info, max_model_len)
    memory = _memory(spec, info, env)
    failure = _server_failure(spec, info, max_model_len, shape, memory)
    if failure is not None:
        message, tail, loading = failure
        return Launch(True, SERVER_CODE, message, 0.9, lines=head + (engine if loading else []) + tail)
    return Launch(lines=head + engine + _started(spec, info, max_model_len, env, memory))


def stamp(lines: list[str], start: float, end: float) -> list[tuple[float, str]]:
    """The lines with times spread from ``start`` to ``end`` (epoch seconds), STAMP filled in."""
    if not lines:
        return []
    step = max(0.0, end - start) / max(1, len(lines) - 1)
    out = []
    for index, line in enumerate(lines):
        at = start + step * index
        out.append((at, line.replace(STAMP, time.strftime("%m-%d %H:%M:%S", time.gmtime(at)))))
    return out


# --------------------------------------------------------------------------------------------- sizing


def model_spec(model: dict | None) -> ModelSpec | None:
    """The size and architecture of a stored model resource, from its name and custom metadata."""
    if not model:
        return None
    metadata = {item.get("key"): item.get("value") for item in model.get("customMetadataList") or []}
    return model_spec_from(model.get("displayName") or "", metadata)


def _gpus(info: ShapeInfo) -> int:
    return max(1, info.gpu_count)


def _torch_gib(info: ShapeInfo) -> float:
    """One GPU's total memory as PyTorch reports it."""
    if info.gpu_model in GPUS:
        return round(GPUS[info.gpu_model].visible_bytes / _GIB, 2)
    per_gpu_gb = (info.gpu_memory_gb or 0.0) / _gpus(info)
    return round(per_gpu_gb * 1e9 / _GIB * 0.985, 2)


def _memory(spec: ModelSpec | None, info: ShapeInfo, env: dict[str, str]) -> serving.Memory | None:
    """The engine's memory as vLLM's start-up profile accounts it; None when the model or the GPU is unknown."""
    if spec is None or not info.runs_vllm or info.gpu_memory_gb is None:
        return None
    return serving.memory(serving.engine_config(spec, info, env.get("PARAMS", "")))


def _kv_tokens(spec: ModelSpec, memory: serving.Memory | None) -> int | None:
    """Tokens the KV cache holds (whole blocks), None when not estimable (architecture unknown)."""
    if memory is None or not spec.has_architecture:
        return None
    return memory.kv_tokens


def _server_failure(
    spec: ModelSpec | None, info: ShapeInfo, max_model_len: int | None, shape: str, memory: serving.Memory | None
) -> tuple[str, list[str], bool] | None:
    """(work-request message, the error's predict-log lines, whether it failed after the engine started
    loading the model) of a failing start, or None when the server starts."""
    prefix = "Model server failed to start: "
    see = "; see the predict log for details."
    if not info.is_gpu:
        error = "RuntimeError: Failed to infer device type"
        return prefix + f"no GPU on {shape} ({error})" + see, _traceback(_AT_DEVICE, error), False
    if not info.runs_vllm:
        error = "RuntimeError: CUDA error: no kernel image is available for execution on the device"
        message = prefix + f"the {info.gpu_model} GPUs of {shape} cannot run vLLM ({error})" + see
        return message, _traceback(_AT_KERNEL, error), False
    if spec is None:
        return None
    tokens = max_model_len or spec.context
    if max_model_len and spec.context and max_model_len > spec.context:
        text = (
            f"User-specified max_model_len ({max_model_len}) is greater than the derived max_model_len "
            f"(max_position_embeddings={spec.context} or model_max_length=None in model's config.json). This "
            "may lead to incorrect model outputs or CUDA errors. To allow overriding this maximum, set the env "
            "var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1"
        )
        return prefix + text + see, _traceback(_AT_CONTEXT, f"ValueError: {text}"), False
    if memory is None or memory.failure is None:
        return None
    if memory.failure == "kv_cache_too_small" and not spec.has_architecture:
        return None  # the KV cache per token is only estimated: not a reason to refuse
    if memory.failure == "weights_oom":
        text = _oom_text(spec, info)
        lines = [
            f"INFO {STAMP} weight_utils.py:243] Using model weights format ['*.safetensors']",
            _shards_line(spec, info),
            f"ERROR {STAMP} engine.py:366] {text}",
            *_traceback(_AT_LOAD, f"torch.OutOfMemoryError: {text}"),
        ]
        message = (
            f"{prefix}CUDA out of memory while loading the model weights on {shape} "
            f"(GPU 0 has a total capacity of {_torch_gib(info):.2f} GiB){see}"
        )
        return message, lines, True
    capacity = _kv_tokens(spec, memory)
    loaded = _loaded(spec, info, capacity)
    if memory.failure == "no_kv_cache":
        text = (
            "No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
            "initializing the engine."
        )
        lines = [*loaded, *_traceback(_AT_BLOCKS, f"ValueError: {text}")]
        return f"{prefix}No available memory for the cache blocks on {shape}{see}", lines, True
    text = (
        f"The model's max seq len ({tokens}) is larger than the maximum number of tokens that can be stored in "
        f"KV cache ({capacity}). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when "
        "initializing the engine."
    )
    lines = [
        *loaded,
        f"ERROR {STAMP} engine.py:366] {text}",
        *_traceback(_AT_KV, f"ValueError: {text}"),
    ]
    message = (
        f"{prefix}the model's max seq len ({tokens}) is larger than the maximum number of tokens that can be "
        f"stored in KV cache ({capacity}) on {shape}{see}"
    )
    return message, lines, True


# ------------------------------------------------------------------------------------------ log lines


def _model_path(env: dict[str, str]) -> str:
    return f"{MODEL_DIR}/{env.get('BASE_MODEL') or 'model'}".rstrip("/")


def _utilization(env: dict[str, str]) -> float:
    """The deployment's ``--gpu-memory-utilization`` (vLLM's default unless PARAMS set it)."""
    try:
        return float(flag_values(env.get("PARAMS", "")).get("--gpu-memory-utilization", ""))
    except ValueError:
        return serving.GPU_MEMORY_UTILIZATION


def _head(env: dict[str, str], info: ShapeInfo, max_model_len: int | None) -> list[str]:
    """The API server's first lines (its version and arguments)."""
    port = env.get("PORT") or "8080"
    return [
        f"INFO {STAMP} api_server.py:585] vLLM API server version {VLLM_VERSION}",
        f"INFO {STAMP} api_server.py:586] args: Namespace(host=None, port={port}, model='{_model_path(env)}', "
        f"served_model_name=['odsc-llm'], seed=42, max_model_len={max_model_len}, "
        f"tensor_parallel_size={_gpus(info)}, gpu_memory_utilization={_utilization(env)})",
    ]


def _engine(env: dict[str, str], spec: ModelSpec | None, info: ShapeInfo, max_model_len: int | None) -> list[str]:
    """The engine's first lines, up to loading the weights."""
    model = _model_path(env)
    length = max_model_len or (spec.context if spec else None)
    return [
        f"INFO {STAMP} llm_engine.py:249] Initializing an LLM engine (v{VLLM_VERSION}) with config: "
        f"model='{model}', dtype=torch.bfloat16, max_seq_len={length}, tensor_parallel_size={_gpus(info)}, seed=42, "
        "served_model_name=odsc-llm",
        f"INFO {STAMP} model_runner.py:1072] Starting to load model {model}...",
    ]


def _loaded(spec: ModelSpec, info: ShapeInfo, capacity: int | None) -> list[str]:
    """Weights loaded, then (when the architecture is known) the KV cache vLLM could allocate."""
    per_gpu = spec.weights_gb * 1e9 / _gpus(info) / _GIB
    lines = [
        f"INFO {STAMP} weight_utils.py:243] Using model weights format ['*.safetensors']",
        f"INFO {STAMP} model_runner.py:1077] Loading model weights took {per_gpu:.4f} GB",
    ]
    if capacity is not None:
        blocks = capacity // serving.BLOCK_SIZE
        lines.append(f"INFO {STAMP} gpu_executor.py:122] # GPU blocks: {blocks}, # CPU blocks: 2048")
    return lines


def _started(
    spec: ModelSpec | None,
    info: ShapeInfo,
    max_model_len: int | None,
    env: dict[str, str],
    memory: serving.Memory | None,
) -> list[str]:
    capacity = _kv_tokens(spec, memory) if spec is not None else None
    lines = _loaded(spec, info, capacity) if spec is not None else []
    length = max_model_len or (spec.context if spec else None)
    if capacity and length:
        lines.append(
            f"INFO {STAMP} gpu_executor.py:126] Maximum concurrency for {length} tokens per request: "
            f"{capacity / length:.2f}x"
        )
    port = env.get("PORT") or "8080"
    return [
        *lines,
        "INFO:     Started server process [1]",
        "INFO:     Waiting for application startup.",
        "INFO:     Application startup complete.",
        f"INFO:     Uvicorn running on http://0.0.0.0:{port} (Press CTRL+C to quit)",
    ]


def _traceback(frame: tuple[str, int, str, str], error: str) -> list[str]:
    module, line, function, code = frame
    return [
        "Traceback (most recent call last):",
        f'  File "{_SITE}/engine/multiprocessing/engine.py", line 357, in run_mp_engine',
        "    engine = MQLLMEngine.from_engine_args(engine_args=engine_args,",
        f'  File "{_SITE}/{module}", line {line}, in {function}',
        f"    {code}",
        error,
    ]


# Where vLLM 0.6 raises each error: (module, line, function, code).
_AT_DEVICE = ("platforms/__init__.py", 118, "<module>", 'raise RuntimeError("Failed to infer device type")')
_AT_KERNEL = ("worker/worker.py", 141, "init_device", "torch.cuda.set_device(self.device)")
_AT_CONTEXT = ("config.py", 1893, "_get_and_verify_max_len", "raise ValueError(")
_AT_LOAD = (
    "model_executor/model_loader/loader.py",
    364,
    "load_model",
    "model = _initialize_model(vllm_config=vllm_config)",
)
_AT_BLOCKS = (
    "worker/worker.py",
    510,
    "raise_if_cache_size_invalid",
    'raise ValueError("No available memory for the cache "',
)
_AT_KV = ("worker/worker.py", 512, "raise_if_cache_size_invalid", "raise ValueError(")


def _shards_line(spec: ModelSpec, info: ShapeInfo) -> str:
    shards = max(1, round(spec.weights_gb / 5))
    done = min(shards - 1, int(shards * _oom_point(spec, info)[0]))
    return f"Loading safetensors checkpoint shards: {100 * done // shards:3d}% Completed | {done}/{shards}"


def _oom_point(spec: ModelSpec, info: ShapeInfo) -> tuple[float, int, int, int, int]:
    """Where loading runs out: (share loaded, chunk, allocated, reserved-unallocated, free) in bytes."""
    total = _torch_gib(info) * _GIB
    weights = spec.weights_gb * 1e9 / _gpus(info)
    chunk = weights / (spec.layers or 32)
    room = total - _CUDA_CONTEXT_GIB * _GIB
    reserved = chunk * 0.01
    allocated = int((room - reserved) // chunk) * chunk
    free = max(0.0, room - reserved - allocated)
    return allocated / weights, int(chunk), int(allocated), int(reserved), int(free)


def _oom_text(spec: ModelSpec, info: ShapeInfo) -> str:
    """PyTorch's CUDA out-of-memory message for loading these weights on one of the shape's GPUs."""
    _, chunk, allocated, reserved, free = _oom_point(spec, info)
    total = _torch_gib(info) * _GIB
    return (
        f"CUDA out of memory. Tried to allocate {_size(chunk)}. GPU 0 has a total capacity of {_size(total)} "
        f"of which {_size(free)} is free. Including non-PyTorch memory, this process has {_size(total - free)} "
        f"memory in use. Of the allocated memory {_size(allocated)} is allocated by PyTorch, and "
        f"{_size(reserved)} is reserved by PyTorch but unallocated. If reserved but unallocated memory is large "
        "try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation "
        "for Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)"
    )


def _size(value: float) -> str:
    """A byte count the way PyTorch's caching allocator prints it."""
    if value <= 1024:
        return f"{int(value)} bytes"
    if value <= 1024**2:
        return f"{value / 1024:.2f} KiB"
    if value <= 1024**3:
        return f"{value / 1024**2:.2f} MiB"
    return f"{value / 1024**3:.2f} GiB"
