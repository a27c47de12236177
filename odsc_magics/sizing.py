"""GPU sizing: the shape catalog and the fit check of a model's weights and KV cache against GPU memory.

The figures shown follow AQUA's shape recommender:

- weights  = parameters × bytes per parameter (2 at fp16/bf16, 1 at fp8/int8, 0.5 at 4-bit)
- KV cache = 2 (K and V) × layers × KV heads × head dim × KV bytes × tokens × concurrent sequences,
  counted only when the model's architecture is known
- usable   = 0.9 × the shape's total GPU memory (vLLM's default ``gpu_memory_utilization``)

Whether a model fits is decided as vLLM's start-up decides it (``odsc_magics.serving.memory``: the memory CUDA
reports, less the weights, the runtime's buffers and the activation peak, leaves the KV cache), so a suggested
``--max-model-len`` is what the KV cache holds, rounded down to a power of two. GB means 10⁹ bytes, as in the
shape table; each GPU's memory comes from ``odsc_magics.gpus``. A model's own deployment configuration (the
shapes it lists) wins over the estimate.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from odsc_magics.gpus import GPUS
from odsc_magics.vllm_container import max_model_len as params_max_model_len

__all__ = [
    "SHAPES",
    "USABLE_FRACTION",
    "FitKind",
    "FitVerdict",
    "ModelSpec",
    "ShapeInfo",
    "deployment_config",
    "fit",
    "format_gb",
    "model_spec_from",
    "rank_shapes",
    "shape_info",
    "shapes_from_service",
    "smallest_fitting_shape",
]

USABLE_FRACTION = 0.9
"""Share of GPU memory vLLM may use (its default ``gpu_memory_utilization``)."""

_GB = 1e9
_NO_VLLM = frozenset({"P100"})


@dataclass(frozen=True)
class ShapeInfo:
    """One compute shape: its GPUs and CPUs (``gpu_memory_gb`` is the total over all GPUs)."""

    name: str
    gpu_count: int
    gpu_model: str | None
    gpu_memory_gb: float | None
    cpu_count: int | None = None
    cpu_memory_gb: float | None = None

    @property
    def is_gpu(self) -> bool:
        return self.gpu_count > 0

    @property
    def runs_vllm(self) -> bool:
        """vLLM needs CUDA compute capability 7.0 or newer, so P100 (6.0) shapes cannot serve it."""
        return self.is_gpu and self.gpu_model not in _NO_VLLM

    @property
    def usable_gb(self) -> float | None:
        return None if self.gpu_memory_gb is None else USABLE_FRACTION * self.gpu_memory_gb


def _gpu(name: str, count: int, model: str, cpus: int | None, cpu_mem: float | None) -> ShapeInfo:
    return ShapeInfo(name, count, model, count * GPUS[model].memory_gb, cpus, cpu_mem)


def _cpu(name: str, cpus: int | None = None, cpu_mem: float | None = None) -> ShapeInfo:
    return ShapeInfo(name, 0, None, None, cpus, cpu_mem)


_CATALOG = [
    # GPU shapes: AQUA's gpu_shapes_index.json (gpus, type, cpu count, CPU GB); GPU memory from odsc_magics.gpus.
    _gpu("VM.GPU.A10.1", 1, "A10", 15, 240),
    _gpu("VM.GPU.A10.2", 2, "A10", 30, 480),
    _gpu("VM.GPU.A10.4", 4, "A10", None, None),  # listed by the AQUA samples; CPU figures not published
    _gpu("BM.GPU.A10.4", 4, "A10", 64, 1024),
    _gpu("VM.GPU2.1", 1, "P100", 12, 72),
    _gpu("BM.GPU2.2", 2, "P100", 28, 192),
    _gpu("VM.GPU3.1", 1, "V100", 6, 90),
    _gpu("VM.GPU3.2", 2, "V100", 12, 180),
    _gpu("VM.GPU3.4", 4, "V100", 24, 360),
    _gpu("BM.GPU3.8", 8, "V100", 24, 768),
    _gpu("VM.GPU3.8", 8, "V100", 24, 768),
    _gpu("BM.GPU.L40S.4", 4, "L40S", 112, 1024),
    _gpu("BM.GPU.L40S-NC.4", 4, "L40S", 112, 1024),
    _gpu("BM.GPU4.8", 8, "A100-40G", 64, 2048),
    _gpu("BM.GPU.B4.8", 8, "A100-40G", 64, 2048),
    _gpu("BM.GPU.A100-V2.8", 8, "A100-80G", 128, 2048),
    _gpu("BM.GPU.H100.8", 8, "H100", 112, 2048),
    _gpu("BM.GPU.GB200.4", 4, "GB200", 144, 1024),
    _gpu("BM.GPU.H200.8", 8, "H200", 112, 3072),
    _gpu("BM.GPU.B200.8", 8, "B200", 128, 4096),
    _gpu("BM.GPU.MI300X.8", 8, "MI300X", 112, 2048),
    # CPU shapes (no GPU: the vLLM container cannot run there). Flex shapes have no fixed size.
    _cpu("VM.Standard2.1", 1, 15),
    _cpu("VM.Standard2.2", 2, 30),
    _cpu("VM.Standard2.4", 4, 60),
    _cpu("VM.Standard2.8", 8, 120),
    _cpu("VM.Standard2.16", 16, 240),
    _cpu("VM.Standard2.24", 24, 320),
    _cpu("VM.Standard3.Flex"),
    _cpu("VM.Standard.E3.Flex"),
    _cpu("VM.Standard.E4.Flex"),
    _cpu("VM.Standard.E5.Flex"),
    _cpu("VM.Standard.A1.Flex"),
    _cpu("VM.Optimized3.Flex"),
]

SHAPES: dict[str, ShapeInfo] = {s.name: s for s in _CATALOG}
"""Known shapes by name, GPU shapes first, smallest GPU memory first."""

_ORDER = {name: i for i, name in enumerate(SHAPES)}


def shape_info(shape: ShapeInfo | str) -> ShapeInfo:
    """The catalog entry for a shape name; an unknown name gives a shape whose GPU memory is unknown."""
    if isinstance(shape, ShapeInfo):
        return shape
    known = SHAPES.get(shape)
    if known is not None:
        return known
    looks_gpu = ".GPU" in shape.upper()
    return ShapeInfo(shape, 1 if looks_gpu else 0, None, None)


def shapes_from_service(summaries: Iterable[Any]) -> list[ShapeInfo]:
    """Shapes a region offers (`list_model_deployment_shapes` dicts or SDK objects) with catalog facts.

    A shape the catalog does not know keeps its name and CPU figures; its GPU memory stays unknown.
    """
    out: list[ShapeInfo] = []
    for item in summaries:
        name = _field(item, "name")
        if not name:
            continue
        known = SHAPES.get(name)
        if known is not None:
            out.append(known)
            continue
        series = str(_field(item, "shape_series", "shapeSeries") or "").upper()
        is_gpu = "GPU" in series or ".GPU" in name.upper()
        out.append(
            ShapeInfo(
                name,
                1 if is_gpu else 0,
                None,
                None,
                _field(item, "core_count", "coreCount"),
                _field(item, "memory_in_gbs", "memoryInGBs"),
            )
        )
    return out


def _field(item: Any, *names: str) -> Any:
    for name in names:
        value = item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)
        if value is not None:
            return value
    return None


# --------------------------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelSpec:
    """What sizing needs to know about a model; the architecture fields are None when unknown."""

    name: str
    parameters_b: float
    bytes_per_param: float = 2.0
    layers: int | None = None
    hidden_size: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    context: int | None = None
    kv_bytes: float = 2.0
    source: str = "name"
    experts: int = 0  # mixture of experts: experts per layer (0: a dense model)
    experts_per_token: int = 0
    active_parameters_b: float | None = None  # parameters one token goes through (a mixture of experts' share)

    @property
    def has_architecture(self) -> bool:
        return bool(self.layers and self.kv_heads and self.head_dim)

    @property
    def weights_gb(self) -> float:
        return self.parameters_b * 1e9 * self.bytes_per_param / _GB

    def kv_bytes_per_token(self) -> float:
        """KV-cache bytes one token occupies (K and V, every layer); 0 when the architecture is unknown."""
        if not self.has_architecture:
            return 0.0
        return 2.0 * self.layers * self.kv_heads * self.head_dim * self.kv_bytes


@dataclass(frozen=True)
class _Arch:
    parameters_b: float
    layers: int
    hidden_size: int
    kv_heads: int
    head_dim: int
    context: int
    experts: tuple[int, int, float] | None = None  # (experts, experts per token, active parameters, billions)


# Popular architectures (from each model's config.json). First match wins, so specific patterns come first.
_KNOWN: list[tuple[re.Pattern[str], _Arch]] = [
    (re.compile(p), a)
    for p, a in [
        (r"llama-?3\.1-405b", _Arch(405.9, 126, 16384, 8, 128, 131072)),
        (r"llama-?3\.[13]-70b", _Arch(70.6, 80, 8192, 8, 128, 131072)),
        (r"llama-?3-70b", _Arch(70.6, 80, 8192, 8, 128, 8192)),
        (r"llama-?3\.1-8b", _Arch(8.03, 32, 4096, 8, 128, 131072)),
        (r"llama-?3-8b", _Arch(8.03, 32, 4096, 8, 128, 8192)),
        (r"llama-?3\.2-1b", _Arch(1.24, 16, 2048, 8, 64, 131072)),
        (r"llama-?3\.2-3b", _Arch(3.21, 28, 3072, 8, 128, 131072)),
        (r"codellama-7b", _Arch(6.74, 32, 4096, 32, 128, 16384)),
        (r"codellama-13b", _Arch(13.0, 40, 5120, 40, 128, 16384)),
        (r"codellama-34b", _Arch(33.7, 48, 8192, 8, 128, 16384)),
        (r"llama-?2-7b", _Arch(6.74, 32, 4096, 32, 128, 4096)),
        (r"llama-?2-13b", _Arch(13.0, 40, 5120, 40, 128, 4096)),
        (r"llama-?2-70b", _Arch(69.0, 80, 8192, 8, 128, 4096)),
        # Mixtral: 8 experts, 2 per token (config.json num_local_experts, num_experts_per_tok); active parameters
        # from Mistral AI's announcements ("12.9B parameters per token"; "39B active parameters out of 141B")
        (r"mixtral-8x7b", _Arch(46.7, 32, 4096, 8, 128, 32768, (8, 2, 12.9))),
        (r"mixtral-8x22b", _Arch(140.6, 56, 6144, 8, 128, 65536, (8, 2, 39.0))),
        (r"mistral-7b", _Arch(7.25, 32, 4096, 8, 128, 32768)),
        (r"phi-3-mini-4k", _Arch(3.82, 32, 3072, 32, 96, 4096)),
        (r"phi-3(\.5)?-mini", _Arch(3.82, 32, 3072, 32, 96, 131072)),
        (r"phi-3-medium-4k", _Arch(14.0, 40, 5120, 10, 128, 4096)),
        (r"phi-3-medium", _Arch(14.0, 40, 5120, 10, 128, 131072)),
        (r"gemma-2-2b", _Arch(2.61, 26, 2304, 4, 256, 8192)),
        (r"gemma-2-9b", _Arch(9.24, 42, 3584, 8, 256, 8192)),
        (r"gemma-2-27b", _Arch(27.2, 46, 4608, 16, 128, 8192)),
        (r"gemma-2b", _Arch(2.51, 18, 2048, 1, 256, 8192)),
        (r"gemma-7b", _Arch(8.54, 28, 3072, 16, 256, 8192)),
        (r"qwen2\.5-0\.5b", _Arch(0.49, 24, 896, 2, 64, 32768)),
        (r"qwen2\.5-1\.5b", _Arch(1.54, 28, 1536, 2, 128, 32768)),
        (r"qwen2\.5-3b", _Arch(3.09, 36, 2048, 2, 128, 32768)),
        (r"qwen2\.5-7b", _Arch(7.62, 28, 3584, 4, 128, 32768)),
        (r"qwen2\.5-14b", _Arch(14.8, 48, 5120, 8, 128, 32768)),
        (r"qwen2\.5-32b", _Arch(32.8, 64, 5120, 8, 128, 32768)),
        (r"qwen2\.5-72b", _Arch(72.7, 80, 8192, 8, 128, 32768)),
        (r"falcon-7b", _Arch(7.22, 32, 4544, 1, 64, 2048)),
        (r"falcon-40b", _Arch(41.8, 60, 8192, 8, 64, 2048)),
    ]
]

_MOE_COUNT = re.compile(r"(?<![a-z0-9.])(\d+)x(\d+(?:\.\d+)?)b(?![a-z0-9])")
_PARAM_COUNT = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)([bm])(?![a-z0-9])")
_DTYPE_BYTES = {
    "float32": 4.0,
    "fp32": 4.0,
    "float16": 2.0,
    "fp16": 2.0,
    "bfloat16": 2.0,
    "bf16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
}


def _moe(experts: tuple[int, int, float] | None) -> dict[str, Any]:
    if experts is None:
        return {}
    total, per_token, active = experts
    return {"experts": total, "experts_per_token": per_token, "active_parameters_b": active}


def _normalise(name: str) -> str:
    base = name.strip().rsplit("/", 1)[-1].lower()
    return re.sub(r"[\s_]+", "-", base)


def _bytes_from_name(norm: str) -> float | None:
    if re.search(r"(?<![a-z0-9])(awq|gptq|int4|4bit|w4a16|q4)(?![a-z0-9])", norm):
        return 0.5
    if re.search(r"(?<![a-z0-9])(fp8|int8|8bit|w8a8|w8a16)(?![a-z0-9])", norm):
        return 1.0
    return None


def _params_from_name(norm: str) -> float | None:
    moe = _MOE_COUNT.search(norm)
    if moe:
        # Experts share attention layers, so n × size over-counts: an upper bound, on the safe side.
        return int(moe.group(1)) * float(moe.group(2))
    for match in _PARAM_COUNT.finditer(norm):
        value = float(match.group(1))
        if value > 0:
            return value if match.group(2) == "b" else value / 1000.0
    return None


def model_spec_from(name: str, metadata: Mapping[str, Any] | None = None) -> ModelSpec | None:
    """A ``ModelSpec`` from a model's name, and from its metadata or tags when they say more.

    Known architectures come from a table of popular models; otherwise the parameter count is read from
    the name ("7B", "8x7B", "70b", "3.8B", "350M") and the KV cache stays unknown. Metadata may hold
    Hugging Face ``config.json`` keys (``num_hidden_layers``, ``num_key_value_heads``, ...), ``parameters_b``
    or ``num_parameters``, ``torch_dtype``. Returns None when nothing gives a parameter count.
    """
    meta = dict(metadata or {})
    norm = _normalise(name)
    spec: ModelSpec | None = None
    for pattern, arch in _KNOWN:
        if pattern.search(norm):
            spec = ModelSpec(
                name,
                arch.parameters_b,
                2.0,
                arch.layers,
                arch.hidden_size,
                arch.kv_heads,
                arch.head_dim,
                arch.context,
                source="known architecture",
                **_moe(arch.experts),
            )
            break
    if spec is None:
        params = _params_from_name(norm)
        if params is not None:
            spec = ModelSpec(name, params, source="name")
    spec = _apply_metadata(name, spec, meta)
    if spec is None:
        return None
    by_name = _bytes_from_name(norm)
    if by_name is not None and "torch_dtype" not in meta and "bytes_per_param" not in meta:
        spec = replace(spec, bytes_per_param=by_name)
    return spec


def _apply_metadata(name: str, spec: ModelSpec | None, meta: dict[str, Any]) -> ModelSpec | None:
    params = _number(meta.get("parameters_b"))
    if params is None and _number(meta.get("num_parameters")) is not None:
        params = _number(meta["num_parameters"]) / 1e9
    if params is None and meta.get("parameter_count"):
        params = _count_b(str(meta["parameter_count"]))
    if spec is None and params is None:
        return None
    if spec is None:
        spec = ModelSpec(name, params, source="metadata")
    elif params is not None:
        spec = replace(spec, parameters_b=params, source="metadata")
    changes: dict[str, Any] = {}
    layers = _number(meta.get("num_hidden_layers"))
    hidden = _number(meta.get("hidden_size"))
    heads = _number(meta.get("num_attention_heads"))
    kv_heads = _number(meta.get("num_key_value_heads")) or heads
    head_dim = _number(meta.get("head_dim")) or (hidden / heads if hidden and heads else None)
    context = _number(meta.get("max_position_embeddings")) or _number(meta.get("context_length"))
    if layers and kv_heads and head_dim:
        changes.update(layers=int(layers), kv_heads=int(kv_heads), head_dim=int(head_dim), source="metadata")
        if hidden:
            changes["hidden_size"] = int(hidden)
    if context:
        changes["context"] = int(context)
    dtype = str(meta.get("torch_dtype") or "").lower()
    if dtype in _DTYPE_BYTES:
        changes["bytes_per_param"] = _DTYPE_BYTES[dtype]
        changes["kv_bytes"] = max(2.0, _DTYPE_BYTES[dtype])
    if _number(meta.get("bytes_per_param")):
        changes["bytes_per_param"] = float(meta["bytes_per_param"])
    return replace(spec, **changes) if changes else spec


def _count_b(text: str) -> float | None:
    """Billions of parameters from a count such as "70.6B", "350M" or "8030261248"."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bBmMkK]?)\s*", text)
    if not match:
        return None
    value = float(match.group(1))
    scale = {"b": 1.0, "m": 1e-3, "k": 1e-6, "": 1e-9}[match.group(2).lower()]
    return value * scale if value > 0 else None


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def deployment_config(config: Mapping[str, Any] | None) -> tuple[list[str], dict[str, int]]:
    """A model's AQUA deployment configuration read as (shapes it lists, ``--max-model-len`` per shape).

    The configuration looks like ``{"shape": [...], "configuration": {"<shape>": {"parameters":
    {"VLLM_PARAMS": "--max-model-len 4096"}}}}``; missing parts give empty results.
    """
    if not config:
        return [], {}
    shapes = [str(s) for s in config.get("shape") or []]
    lengths: dict[str, int] = {}
    for shape, entry in (config.get("configuration") or {}).items():
        params = ((entry or {}).get("parameters") or {}).get("VLLM_PARAMS") or ""
        length = params_max_model_len(str(params))
        if length:
            lengths[str(shape)] = length
    return shapes, lengths


# -------------------------------------------------------------------------------------------- fit check


FitKind = Literal[
    "fits",  # weights and KV cache fit the shape's usable GPU memory
    "listed",  # the model's deployment configuration lists the shape
    "unchecked",  # the shape's GPU memory is unknown: not checked, not refused
    "not_listed",  # the model's deployment configuration does not list the shape
    "no_gpu",
    "gpu_unsupported",  # GPUs vLLM cannot run on
    "context_too_long",  # --max-model-len beyond the model's context
    "too_big",  # the weights alone exceed the usable GPU memory
    "kv_cache",  # the weights fit, the KV cache at this many tokens does not
]
"""Why a verdict is what it is; labels and advice are derived from it, never from the reason's wording."""


@dataclass(frozen=True)
class FitVerdict:
    """Whether a model fits a shape, the figures behind it, and what would fit instead."""

    fits: bool
    weights_gb: float
    kv_cache_gb: float | None
    usable_gb: float | None
    reason: str
    kind: FitKind = "fits"
    suggested_max_model_len: int | None = None
    suggested_shape: str | None = None
    tokens: int | None = None
    shape: str = ""
    alternatives: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.fits

    @property
    def short_reason(self) -> str:
        """A few words for a shape list: "fits", "no GPU", "needs ≈ 33.2 GB", ..."""
        if self.fits:
            return "fits"
        if self.kind == "not_listed":
            return "not in the model's configuration"
        if self.kind == "no_gpu":
            return "no GPU"
        if self.kind == "gpu_unsupported":
            return "GPU not supported by vLLM"
        if self.kind == "context_too_long":
            return f"over the model's {self.suggested_max_model_len:,}-token context"
        return f"needs ≈ {format_gb(self.weights_gb + (self.kv_cache_gb or 0.0))} GB"


def format_gb(value: float) -> str:
    """A memory figure as shown to users: one decimal below 100 GB, none above; "16" rather than "16.0"."""
    if value >= 100:
        return f"{value:,.0f}"
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _needs(model: ModelSpec, kv_gb: float | None, tokens: int | None) -> str:
    text = f"needs ≈ {format_gb(model.weights_gb)} GB weights"
    if kv_gb is not None and tokens:
        text += f" + {format_gb(kv_gb)} GB KV cache at {tokens:,} tokens"
    elif not model.has_architecture:
        text += " (KV cache not estimated: architecture unknown)"
    return text


def _round_tokens(tokens: float) -> int | None:
    """Largest power of two at or below ``tokens`` (at least 512), or None when less than 512 fit."""
    if tokens < 512:
        return None
    return 1 << (int(tokens).bit_length() - 1)


def fit(
    model: ModelSpec,
    shape: ShapeInfo | str,
    *,
    max_model_len: int | None = None,
    concurrency: int = 1,
    deployment_shapes: Sequence[str] | None = None,
    alternatives: Iterable[ShapeInfo | str] | None = None,
) -> FitVerdict:
    """Check whether ``model`` fits ``shape`` at ``max_model_len`` tokens (default: the model's context).

    ``deployment_shapes`` (the shapes the model's deployment configuration lists) decides when non-empty.
    ``alternatives`` are the shapes to suggest instead (default: every catalog shape).
    """
    info = shape_info(shape)
    tokens = max_model_len or model.context
    per_token = model.kv_bytes_per_token()
    kv_gb = per_token * tokens * max(1, concurrency) / _GB if per_token and tokens else None
    weights = model.weights_gb
    needs = _needs(model, kv_gb, tokens if kv_gb is not None else None)

    def verdict(kind: FitKind, reason: str, **extra: Any) -> FitVerdict:
        fits = kind in ("fits", "listed", "unchecked")
        return FitVerdict(
            fits, weights, kv_gb, info.usable_gb, reason, kind, tokens=tokens, shape=info.name, **extra
        )

    if deployment_shapes:
        listed = list(deployment_shapes)
        if info.name in listed:
            return verdict("listed", f"{needs}; {info.name} is listed in the model's deployment configuration")
        smallest = _smallest([shape_info(s) for s in listed])
        hint = f"; smallest listed shape: {smallest.name}" if smallest else ""
        reason = f"{info.name} is not in the model's deployment configuration ({', '.join(listed)}){hint}"
        return verdict(
            "not_listed", reason, suggested_shape=smallest.name if smallest else None, alternatives=listed
        )
    if not info.is_gpu:
        return verdict("no_gpu", f"{info.name} has no GPU; the vLLM container needs one")
    if not info.runs_vllm:
        return verdict(
            "gpu_unsupported",
            f"{info.name} has {info.gpu_model} GPUs, which vLLM does not support (compute capability < 7.0)",
        )
    if max_model_len and model.context and max_model_len > model.context:
        reason = f"--max-model-len {max_model_len} is more than the {model.context:,}-token context"
        reason += f" of {model.name}"
        return verdict("context_too_long", reason, suggested_max_model_len=model.context)
    if info.gpu_memory_gb is None:
        return verdict("unchecked", f"{needs}; GPU memory of {info.name} is not known, not checked")

    usable = info.usable_gb or 0.0
    room = _kv_room(model, info, tokens)
    if _room_holds(room, tokens, concurrency):
        return verdict("fits", f"{needs}; {info.name} has {format_gb(info.gpu_memory_gb)} GB")

    suggested_len = None
    if room and tokens and per_token:
        suggested_len = _round_tokens(room / max(1, concurrency))
        if suggested_len is not None and suggested_len >= tokens:
            suggested_len = None
    pool = [shape_info(s) for s in (alternatives if alternatives is not None else SHAPES.values())]
    bigger = _smallest(
        s
        for s in pool
        if s.runs_vllm
        and s.gpu_memory_gb is not None
        and s.name != info.name
        and _fits_memory(model, s, tokens, concurrency)
    )
    options = []
    if bigger is not None:
        options.append(f"smallest shape that fits: {bigger.name}")
    if suggested_len is not None:
        options.append(f"--max-model-len {suggested_len}")
    advice = ", or ".join(options) if options else "no listed shape has enough GPU memory"
    reason = (
        f"{needs}; does not fit {info.name} ({format_gb(info.gpu_memory_gb)} GB, "
        f"≈ {format_gb(usable)} GB usable); {advice}"
    )
    return verdict(
        "too_big" if not room else "kv_cache",
        reason,
        suggested_max_model_len=suggested_len,
        suggested_shape=bigger.name if bigger else None,
        alternatives=[bigger.name] if bigger else [],
    )


def _kv_room(model: ModelSpec, info: ShapeInfo, tokens: int | None) -> int | None:
    """Tokens of KV cache vLLM allocates for ``model`` on ``info`` (odsc_magics.serving's accounting): 0 when the
    weights leave no room; None when the KV cache is not estimated (architecture unknown) and the weights fit."""
    from odsc_magics import serving

    cfg = serving.engine_config(model, info)
    if tokens:
        cfg = replace(cfg, max_model_len=tokens)
    memory = serving.memory(cfg)
    if memory.failure in ("weights_oom", "no_kv_cache"):
        return 0
    return memory.kv_tokens if model.has_architecture else None


def _fits_memory(model: ModelSpec, info: ShapeInfo, tokens: int | None, concurrency: int) -> bool:
    return _room_holds(_kv_room(model, info, tokens), tokens, concurrency)


def _room_holds(room: int | None, tokens: int | None, concurrency: int) -> bool:
    return room is None or (room > 0 and room >= (tokens or 0) * max(1, concurrency))


def _size_key(shape: ShapeInfo) -> tuple[float, int, int]:
    mem = shape.gpu_memory_gb if shape.gpu_memory_gb is not None else float("inf")
    return (mem, shape.gpu_count, _ORDER.get(shape.name, len(_ORDER)))


def _smallest(shapes: Iterable[ShapeInfo]) -> ShapeInfo | None:
    return min(shapes, key=_size_key, default=None)


def rank_shapes(
    model: ModelSpec,
    shapes: Iterable[ShapeInfo | str],
    *,
    max_model_len: int | None = None,
    concurrency: int = 1,
    deployment_shapes: Sequence[str] | None = None,
) -> list[tuple[ShapeInfo, FitVerdict]]:
    """Every shape with its verdict: fitting shapes first (smallest GPU memory first), then the others."""
    infos = [shape_info(s) for s in shapes]
    ranked = [
        (
            s,
            fit(
                model,
                s,
                max_model_len=max_model_len,
                concurrency=concurrency,
                deployment_shapes=deployment_shapes,
                alternatives=infos,
            ),
        )
        for s in infos
    ]
    ranked.sort(key=lambda pair: (not pair[1].fits, _size_key(pair[0])))
    return ranked


def smallest_fitting_shape(
    model: ModelSpec,
    shapes: Iterable[ShapeInfo | str] | None = None,
    *,
    max_model_len: int | None = None,
    concurrency: int = 1,
    deployment_shapes: Sequence[str] | None = None,
) -> ShapeInfo | None:
    """The GPU shape with the least GPU memory that fits ``model`` (None when none does)."""
    pool = [shape_info(s) for s in (shapes if shapes is not None else SHAPES.values())]
    fitting = [
        s
        for s in pool
        if s.runs_vllm
        and s.gpu_memory_gb is not None
        and fit(
            model,
            s,
            max_model_len=max_model_len,
            concurrency=concurrency,
            deployment_shapes=deployment_shapes,
            alternatives=(),
        ).fits
    ]
    return _smallest(fitting)
