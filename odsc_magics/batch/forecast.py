"""`estimate_frame`: the prompts a `predict_frame` call would send, its time at saturation and its cost; nothing sent.

Prompt tokens are counted with the builtin engine's tokenizer (odsc_magics.local.tokens: a word or a
punctuation mark per token, the count `odsc-magics local` reports), so they are an estimate of what the
deployment's own tokenizer counts: subword tokenizers usually count more. Output tokens are ``max_tokens`` per
row, the most a row can generate. The time is that of the deployment's engine saturated (serving.estimate, the
physics `odsc-magics local` serves with) and the cost that time at the shape's price (odsc_magics.prices). Only
the control plane is read (the deployment's shape, model, PARAMS and instance count); no request reaches the
endpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from odsc_magics import errors

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FrameEstimate", "estimate_frame"]

TOKENS_COUNTED = (
    "counted with the builtin engine's tokenizer (a word or punctuation mark per token), an estimate of "
    "the model's own count"
)
PREDICT_TIMEOUT_S = 60.0  # the platform's /predict limit (Oracle's model-deployment invoke docs)


@dataclass
class FrameEstimate:
    """What ``predict_frame`` would send and what it would take; ``None`` where no deployment tells."""

    rows: int
    prompts: int  # rows with a prompt to send
    skipped: int  # rows that fail before sending (a missing value, a template error)
    prompt_tokens: int  # all prompts, counted as TOKENS_COUNTED says
    max_prompt_tokens: int
    max_tokens: int  # output tokens per row, at most
    output_tokens: int  # prompts × max_tokens
    chat: bool = False
    deployment: str | None = None
    model: str | None = None
    shape: str | None = None
    instances: int | None = None
    max_model_len: int | None = None
    too_long: int = 0  # prompts whose tokens + max_tokens exceed max_model_len
    output_tok_s: float | None = None  # all instances, saturated
    answer_s: float | None = None  # one answer's time with the engine saturated
    duration_s: float | None = None
    usd_per_hour: float | None = None  # all instances
    cost_usd: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _lines(self) -> list[tuple[str, str]]:
        from odsc_magics.prices import format_usd

        per_row = self.prompt_tokens / self.prompts if self.prompts else 0
        lines = [
            ("rows", f"{self.rows:,}" + (f" ({self.skipped:,} would fail before sending)" if self.skipped else "")),
            (
                "prompt tokens",
                f"≈ {self.prompt_tokens:,} (≈ {per_row:,.0f} a row, at most {self.max_prompt_tokens:,}; "
                f"{TOKENS_COUNTED})",
            ),
            ("output tokens", f"≤ {self.output_tokens:,} (max_tokens {self.max_tokens:,} a row)"),
        ]
        if self.deployment is not None:
            where = f"{self.deployment}: {self.model or 'model unknown'} on {self.shape or 'shape unknown'}"
            if self.instances and self.instances > 1:
                where += f" × {self.instances} instances"
            lines.append(("deployment", where))
        if self.output_tok_s is not None:
            lines.append(("throughput", f"≈ {self.output_tok_s:,.0f} output tokens/s (saturated)"))
        if self.duration_s is not None:
            lines.append(("duration", f"≈ {_duration(self.duration_s)} at saturation"))
        if self.cost_usd is not None:
            lines.append(("cost", f"≈ {format_usd(self.cost_usd)} ({format_usd(self.usd_per_hour)}/hour)"))
        lines += [("note", note) for note in self.notes]
        return lines

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict:
        from odsc_magics.display import table_bundle

        title = "Estimate of the batch (nothing was sent)"
        return table_bundle(title, ["", ""], self._lines())

    def _repr_markdown_(self) -> str:
        return self._repr_mimebundle_()["text/markdown"]

    def __repr__(self) -> str:
        return self._repr_mimebundle_()["text/plain"]


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:,.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:,.0f} min"
    return f"{seconds / 3600:,.1f} h"


def estimate_frame(
    df: pd.DataFrame,
    template: str | None = None,
    *,
    deployment: Any = None,
    max_tokens: int | None = None,
    chat: bool = False,
    system: str | None = None,
    prompt_column: str | None = None,
    **params: Any,
) -> FrameEstimate:
    """What ``predict_frame(df, template, ...)`` with the same arguments would send, take and cost.

    The rows are rendered exactly as ``predict_frame`` renders them and their prompt tokens counted locally
    (an estimate: see ``FrameEstimate.notes``). With a deployment (the argument, else the default target), its
    shape, model, ``PARAMS`` and instance count are read from the control plane and the batch is timed at the
    engine's saturation: ``output_tokens / saturated output tokens/s``, at least one answer's time. The cost is
    that time at the shape's price per hour (OCI list prices, or ``%config LLMMagics.gpu_prices``), all
    instances. Nothing is sent to the endpoint. ``max_tokens`` defaults to the ``max_tokens`` setting;
    ``params`` are the generation parameters ``predict_frame`` would send (checked the same way).
    """
    import pandas as pd

    from odsc_magics import arguments
    from odsc_magics.batch.frame import check_arguments
    from odsc_magics.config import resolve

    if not isinstance(df, pd.DataFrame):
        raise errors.ValidationError(
            f"estimate_frame needs a pandas DataFrame, not {type(df).__name__}",
            hint="Use series.llm.estimate() for a Series of ready prompts.",
            target="df",
        )
    check_arguments(df, template, prompt_column, system, params)
    if not isinstance(chat, bool):
        raise errors.ValidationError(f"chat must be True or False, not {chat!r}", target="chat")
    if max_tokens is None:
        max_tokens = resolve("max_tokens")[0]
    else:
        arguments.setting("max_tokens", max_tokens)
    chat = chat or system is not None
    counts = _count(df, template, prompt_column, chat=chat, system=system, params=params)
    prompts = len(counts)
    result = FrameEstimate(
        rows=len(df),
        prompts=prompts,
        skipped=len(df) - prompts,
        prompt_tokens=sum(counts),
        max_prompt_tokens=max(counts, default=0),
        max_tokens=max_tokens,
        output_tokens=prompts * max_tokens,
        chat=chat,
    )
    found = _deployment(deployment)
    if found is None:
        result.notes.append(
            "No deployment to time the batch against: pass deployment= or set the default target "
            "(`%llm_deploy use NAME`)."
        )
        return result
    if isinstance(found, str):
        result.notes.append(found)
        return result
    _time(result, found, counts)
    return result


def _count(
    df: pd.DataFrame, template: str | None, prompt_column: Any, *, chat: bool, system: str | None, params: dict
) -> list[int]:
    """Prompt tokens of each row that renders (as predict_frame renders it; rows that would fail are left out)."""
    from odsc_magics.batch.frame import OutputColumns, row_jobs
    from odsc_magics.local.tokens import count_tokens, render_chat

    out: list[int] = []
    jobs = row_jobs(
        df,
        template,
        prompt_column,
        chat=chat,
        system=system,
        params=params,
        target="",
        store=None,
        columns=OutputColumns(len(df), "completion"),
        resumed=lambda: None,
    )
    for job in jobs:
        if job.request is None:
            continue
        text = render_chat(job.request) if chat else job.request
        out.append(count_tokens(text))
    return out


def _deployment(deployment: Any) -> Any:
    """The Deployment to time against; None when there is no target, a str saying why when it is no deployment."""
    from odsc_magics.client import connect
    from odsc_magics.control_plane import Deployment, get_deployment

    if isinstance(deployment, Deployment):
        return deployment
    if deployment is not None and hasattr(deployment, "complete"):  # an Endpoint
        endpoint = deployment
    elif deployment is None or isinstance(deployment, str):
        try:
            endpoint = connect(deployment)
        except errors.ConfigurationError:
            if deployment is None:
                return None
            raise
    else:
        raise errors.ValidationError(
            f"deployment must be an OCID, URL or display name (str), a Deployment or an Endpoint, "
            f"not {type(deployment).__name__}",
            hint="Leave it out to use the default deployment (`%llm_deploy use NAME` sets it).",
            target="deployment",
        )
    deployment_id = getattr(endpoint, "deployment_id", None)
    if not deployment_id:
        label = getattr(endpoint, "label", None) or getattr(endpoint, "url", "the endpoint")
        return f"{label} is not an OCI model deployment, so its shape and model are unknown: no time or cost."
    return get_deployment(deployment_id, settings=getattr(endpoint, "settings", None))


def _time(result: FrameEstimate, deployment: Any, counts: list[int]) -> None:
    """Fill in the deployment, its saturated throughput, the batch's duration and cost."""
    from odsc_magics.control_plane import _env
    from odsc_magics.prices import gpu_prices, shape_price_per_hour
    from odsc_magics.sizing import shape_info

    result.deployment = deployment.name
    result.model = deployment.model_name
    result.shape = deployment.shape
    result.instances = deployment.instances or 1
    spec = _model_spec(deployment)
    info = shape_info(deployment.shape or "")
    if spec is None or not spec.has_architecture:
        result.notes.append(
            f"The architecture of {deployment.model_name or 'the model'} is not known: no time or cost."
        )
        return
    if not info.runs_vllm or info.gpu_memory_gb is None:
        result.notes.append(f"The GPUs of {deployment.shape} are not known: no time or cost.")
        return
    from odsc_magics import serving

    params = _env(deployment.raw).get("PARAMS") or None
    cfg = serving.engine_config(spec, info, params, instances=result.instances)
    result.max_model_len = cfg.max_model_len
    result.too_long = sum(1 for c in counts if c + result.max_tokens > cfg.max_model_len)
    if result.too_long:
        result.notes.append(
            f"{result.too_long:,} prompt(s) plus max_tokens exceed the deployment's --max-model-len "
            f"{cfg.max_model_len:,}: vLLM refuses them (400)."
        )
    if not result.prompts:
        return
    mean_prompt = max(1, round(result.prompt_tokens / result.prompts))
    found = serving.estimate(cfg, input_tokens=min(mean_prompt, cfg.max_model_len - 1),
                             output_tokens=result.max_tokens)  # fmt: skip
    result.output_tok_s = found.output_tok_s_saturated
    one_answer = result.max_tokens / found.output_tok_s_1 if found.output_tok_s_1 > 0 else 0.0
    if found.output_tok_s_saturated > 0:
        per_instance = found.output_tok_s_saturated / result.instances
        result.answer_s = found.saturation_concurrency * result.max_tokens / per_instance
        result.duration_s = max(result.output_tokens / found.output_tok_s_saturated, one_answer)
    if result.answer_s is not None and result.answer_s > PREDICT_TIMEOUT_S:
        result.notes.append(
            f"With the engine saturated an answer of {result.max_tokens:,} tokens takes ≈ "
            f"{result.answer_s:,.0f} s, past the platform's {PREDICT_TIMEOUT_S:.0f} s /predict limit (500): "
            "lower max_tokens or the batch's concurrency."
        )
    price = shape_price_per_hour(info, gpu_prices(deployment.settings))
    if price is not None and result.duration_s is not None:
        result.usd_per_hour = price * result.instances
        result.cost_usd = result.usd_per_hour * result.duration_s / 3600.0


def _model_spec(deployment: Any) -> Any:
    """The deployment's model as sizing knows it, from the model's catalog entry (name and metadata)."""
    from odsc_magics.catalog import find_model, model_metadata
    from odsc_magics.sizing import model_spec_from

    if deployment.model_id:
        try:
            model = find_model(deployment.model_id, context=deployment.context)
        except errors.OdscMagicsError:
            model = None
        if model is not None:
            return model_spec_from(model.display_name, model_metadata(model))
    return model_spec_from(deployment.model_name) if deployment.model_name else None
