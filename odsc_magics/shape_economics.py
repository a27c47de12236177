"""What a shape will deliver for a model under vLLM: sequences that fit, output tokens/s, and their price."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from odsc_magics.sizing import ModelSpec, ShapeInfo, shape_info

__all__ = ["WORKLOAD", "ShapeEstimate", "estimate_shape", "workload_for", "workload_words"]

WORKLOAD = (1024, 256)
"""The request the throughput estimates assume: 1,024 prompt tokens in, 256 output tokens out."""


@dataclass(frozen=True)
class ShapeEstimate:
    """A model on one instance of a shape, with vLLM's defaults and the given ``--max-model-len``."""

    shape: str
    max_model_len: int
    input_tokens: int
    output_tokens: int
    sequences_at_max_len: int  # sequences of max_model_len tokens the KV cache holds at once (<= max-num-seqs)
    output_tok_s_1: float  # output tokens/s of one request alone
    output_tok_s_saturated: float  # output tokens/s with the engine saturated
    saturation_concurrency: int
    usd_per_hour: float | None
    usd_per_million_output: float | None  # at saturation

    @property
    def summary(self) -> str:
        """One line for a shape list: throughput and price."""
        from odsc_magics.prices import format_usd

        parts = [f"≈ {self.output_tok_s_1:,.0f}–{self.output_tok_s_saturated:,.0f} tok/s"]
        if self.usd_per_hour is not None:
            parts.append(f"{format_usd(self.usd_per_hour)}/h")
        if self.usd_per_million_output is not None:
            parts.append(f"{format_usd(self.usd_per_million_output)}/M tokens")
        return " · ".join(parts)


def workload_for(max_model_len: int) -> tuple[int, int]:
    """The estimates' request, shrunk in proportion when ``max_model_len`` is shorter than it."""
    inputs, outputs = WORKLOAD
    if inputs + outputs <= max_model_len:
        return inputs, outputs
    scale = max_model_len / (inputs + outputs)
    outputs = max(1, int(outputs * scale))
    return max(1, max_model_len - outputs), outputs


def workload_words(max_model_len: int | None = None) -> str:
    """``1,024 in / 256 out tokens per request`` for a table title."""
    inputs, outputs = workload_for(max_model_len) if max_model_len else WORKLOAD
    return f"{inputs:,} in / {outputs:,} out tokens per request"


def estimate_shape(
    model: ModelSpec,
    shape: ShapeInfo | str,
    *,
    max_model_len: int | None = None,
    params: str | None = None,
    prices: Mapping[str, float] | None = None,
) -> ShapeEstimate | None:
    """What ``model`` on ``shape`` delivers (serving.estimate, the emulator's physics); None when it cannot run.

    None when the model's architecture (the KV cache) is unknown, the shape has no GPU vLLM runs on, or the
    engine would not start (weights or ``max_model_len`` not fitting). ``params`` are the deployment's vLLM
    flags (``PARAMS``); ``max_model_len`` wins over a ``--max-model-len`` among them.
    """
    from odsc_magics import serving
    from odsc_magics.prices import shape_price_per_hour, usd_per_million_tokens

    info = shape_info(shape)
    if not model.has_architecture or not info.runs_vllm or info.gpu_memory_gb is None or info.gpu_model is None:
        return None
    flags = " ".join(p for p in (params, f"--max-model-len {max_model_len}" if max_model_len else None) if p)
    try:
        cfg = serving.engine_config(model, info, flags or None)
        memory = serving.memory(cfg)
    except ValueError:  # a GPU the physics does not know
        return None
    if memory.failure is not None:
        return None
    inputs, outputs = workload_for(cfg.max_model_len)
    found = serving.estimate(cfg, input_tokens=inputs, output_tokens=outputs)
    # vLLM's own start-up figure: "Maximum concurrency for N tokens per request" = KV tokens / max_model_len.
    per_sequence = math.ceil(cfg.max_model_len / cfg.block_size)
    sequences = min(cfg.max_num_seqs, memory.kv_blocks // per_sequence)
    price = shape_price_per_hour(info, prices)
    return ShapeEstimate(
        shape=info.name,
        max_model_len=cfg.max_model_len,
        input_tokens=inputs,
        output_tokens=outputs,
        sequences_at_max_len=sequences,
        output_tok_s_1=found.output_tok_s_1,
        output_tok_s_saturated=found.output_tok_s_saturated,
        saturation_concurrency=found.saturation_concurrency,
        usd_per_hour=price,
        usd_per_million_output=usd_per_million_tokens(price, found.output_tok_s_saturated),
    )
