"""Why a model deployment failed: work-request errors and predict-log lines matched to known signatures."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from odsc_magics.markup import markdown_code_block, markdown_message, markdown_text
from odsc_magics.sizing import ModelSpec, ShapeInfo, fit, format_gb, rank_shapes, shape_info

__all__ = ["POLICY_STATEMENTS", "Diagnosis", "diagnose", "log_messages", "round_max_model_len"]

_LAST_LINES = 10

POLICY_STATEMENTS = [
    "allow group <group> to manage data-science-family in compartment <compartment>",
    "allow dynamic-group <dynamic-group> to manage data-science-family in compartment <compartment>",
    "allow dynamic-group <dynamic-group> to read objects in compartment <compartment>",
    "allow service datascience to use virtual-network-family in compartment <compartment>",
    "allow group <group> to use log-groups in compartment <compartment>",
    "allow group <group> to use log-content in compartment <compartment>",
    "allow any-user to use log-content in compartment <compartment> "
    "where ALL {request.principal.type = 'datasciencemodeldeployment'}",
]
"""IAM statements a model deployment commonly needs; <group>, <dynamic-group> and <compartment> are
placeholders (the dynamic group holds the notebook sessions, e.g. ``resource.type =
'datasciencenotebooksession'``)."""


@dataclass
class Diagnosis:
    """What went wrong (``kind``, ``summary``), what to do next, and the lines that show it."""

    kind: str
    summary: str
    next_step: str
    evidence: list[str] = field(default_factory=list)
    suggested_max_model_len: int | None = None
    suggested_shapes: list[str] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"{self.summary}\nNext step: {self.next_step}"
        if self.policies:
            text += "\n" + "\n".join(f"  {p}" for p in self.policies)
        return text

    def to_text(self) -> str:
        """The summary, the next step, then the evidence lines."""
        if not self.evidence:
            return str(self)
        return str(self) + "\n\nEvidence:\n" + "\n".join(f"  {line}" for line in self.evidence)

    def _repr_markdown_(self) -> str:
        lines = [f"**{markdown_text(self.summary.strip())}**", "", f"Next step: {markdown_message(self.next_step)}"]
        if self.policies:
            lines += ["", markdown_code_block("\n".join(self.policies))]
        if self.evidence:
            lines += ["", markdown_code_block("\n".join(self.evidence))]
        return "\n".join(lines)


def round_max_model_len(tokens: int) -> int:
    """A ``--max-model-len`` at or below ``tokens``: a multiple of 1,024 (or a power of two below 1,024)."""
    if tokens >= 1024:
        return tokens - tokens % 1024
    return 1 << (max(tokens, 1).bit_length() - 1)


def log_messages(results: Iterable[Any]) -> list[str]:
    """The messages of Logging Search results (``SearchResult`` objects or dicts), oldest first.

    A record is ``{"data": {"datetime": <epoch ms>, "logContent": {"data": {"message": ...}}}}``; results are
    usually searched newest first, so they are put back in time order here.
    """
    rows: list[tuple[float, int, str]] = []
    for index, result in enumerate(results):
        data = result.get("data") if isinstance(result, Mapping) else getattr(result, "data", None)
        if not isinstance(data, Mapping):
            continue
        content = data.get("logContent") or {}
        body = content.get("data") if isinstance(content, Mapping) else None
        message = body.get("message") if isinstance(body, Mapping) else None
        if message is None:
            continue
        stamp = data.get("datetime")
        rows.append((float(stamp) if isinstance(stamp, (int, float)) else 0.0, -index, str(message)))
    rows.sort()
    return [message for _, _, message in rows]


# ------------------------------------------------------------------------------------------ signatures

_KV_CAPACITY = re.compile(
    r"max seq len \((\d+)\) is larger than the maximum number of tokens that can be stored in KV cache"
    r" \((\d+)\)",
    re.IGNORECASE,
)
_KV_ESTIMATE = re.compile(r"max seq len \((\d+)\).*?estimated maximum model length is (\d+)", re.IGNORECASE)
_NO_KV_MEMORY = re.compile(r"No available memory for the cache blocks", re.IGNORECASE)
_OOM = re.compile(
    r"CUDA out of memory|torch\.OutOfMemoryError|torch\.cuda\.OutOfMemoryError|OutOfMemoryError"
)
_TRUST = re.compile(r"trust_remote_code=True|requires you to execute the configuration file in that repo")
_ARCH = re.compile(r"Model architectures? \[([^\]]*)\] (?:are|is) not supported", re.IGNORECASE)
_CAPACITY = re.compile(
    r"no capacity for the specified shape|Out of host capacity|OutOfCapacity|insufficient capacity",
    re.IGNORECASE,
)
_NOT_AUTHORIZED = re.compile(r"NotAuthorizedOrNotFound|NotAuthorized\b|Authorization failed", re.IGNORECASE)
_IMAGE = re.compile(
    r"ImagePullBackOff|ErrImagePull|Failed to pull image|manifest unknown|pull access denied", re.IGNORECASE
)
_TIMEOUT = re.compile(r"Service timeout|timed out|did not become healthy|health check", re.IGNORECASE)


def _text_of(error: Any) -> str:
    if isinstance(error, str):
        return error
    if isinstance(error, Mapping):
        code, message = error.get("code"), error.get("message")
    else:
        code, message = getattr(error, "code", None), getattr(error, "message", None)
    if code and message:
        return f"{code}: {message}"
    return str(message or code or error)


def diagnose(
    *,
    state: str,
    work_request_errors: Sequence[Any] = (),
    log_lines: Sequence[str] = (),
    shape: str | None = None,
    model: ModelSpec | None = None,
    available_shapes: Iterable[ShapeInfo | str] | None = None,
    max_model_len: int | None = None,
    name: str | None = None,
) -> Diagnosis:
    """Match the work-request errors (dicts or SDK objects with ``code``/``message``) and the last predict-log
    lines against known failure signatures; the first signature found decides.

    ``shape``, ``model`` and ``available_shapes`` let the next step name shapes that fit; ``name`` (the
    deployment's) lets it give the command that reads the predict log.
    """
    errors = [_text_of(e) for e in work_request_errors]
    lines = [str(line).rstrip() for line in log_lines if str(line).strip()]
    haystack = errors + lines
    tail = lines[-_LAST_LINES:]
    shapes = [shape_info(s) for s in available_shapes] if available_shapes is not None else None
    ctx = _Context(state, errors, tail, shape, model, shapes, max_model_len, name)

    for check in (_kv_capacity, _oom, _trust_remote_code, _architecture, _capacity, _authorization, _image):
        found = check(ctx, haystack)
        if found is not None:
            return found
    return _fallback(ctx, haystack)


@dataclass
class _Context:
    state: str
    errors: list[str]
    tail: list[str]
    shape: str | None
    model: ModelSpec | None
    shapes: list[ShapeInfo] | None
    max_model_len: int | None
    name: str | None = None

    def read_the_log(self) -> str:
        """Where the predict log is read: the evidence when it has lines, else the command that reads it."""
        where = f"`%llm_deploy logs {shlex.quote(self.name)}`" if self.name else "Deployment.logs()"
        if self.tail:
            return f"Read the predict-log lines in the evidence, and the whole predict log with {where}"
        return (
            f"No predict-log lines could be read: {where} reads them if the deployment has a predict log "
            "(deploy with a log group to get one)"
        )

    def evidence(self, *matched: str) -> list[str]:
        out: list[str] = []
        for line in [*matched, *self.errors, *self.tail]:
            if line not in out:
                out.append(line)
        return out

    def fitting_shapes(self, *, max_model_len: int | None = None, exclude_current: bool = True) -> list[str]:
        """Shapes (region's when known, else the catalog's GPU shapes) the model fits, smallest first."""
        if self.model is None:
            return []
        from odsc_magics.sizing import SHAPES

        pool = self.shapes if self.shapes is not None else [s for s in SHAPES.values() if s.is_gpu]
        ranked = rank_shapes(self.model, pool, max_model_len=max_model_len or self.max_model_len)
        return [
            s.name
            for s, v in ranked
            if v.fits and s.gpu_memory_gb is not None and not (exclude_current and s.name == self.shape)
        ]

    def bigger_shapes(self) -> list[str]:
        """Fitting shapes with more GPU memory than the current one (it ran out, so the estimate was low)."""
        current = shape_info(self.shape).gpu_memory_gb if self.shape else None
        names = self.fitting_shapes()
        if current is None:
            return names
        return [n for n in names if (shape_info(n).gpu_memory_gb or 0) > current]


def _first(pattern: re.Pattern[str], haystack: list[str]) -> tuple[re.Match[str], str] | None:
    for line in haystack:
        match = pattern.search(line)
        if match:
            return match, line
    return None


def _kv_capacity(ctx: _Context, haystack: list[str]) -> Diagnosis | None:
    hit = _first(_KV_CAPACITY, haystack) or _first(_KV_ESTIMATE, haystack)
    if hit is None:
        return None
    match, line = hit
    wanted, capacity = int(match.group(1)), int(match.group(2))
    suggested = round_max_model_len(capacity)
    bigger = ctx.bigger_shapes()
    on = f" on {ctx.shape}" if ctx.shape else ""
    step = f"Redeploy with `--max-model-len {suggested}` in the vLLM flags"
    if bigger:
        step += f", or keep {wanted:,} tokens on a shape with more GPU memory: {', '.join(bigger[:3])}"
    return Diagnosis(
        "max_model_len",
        f"The model's context ({wanted:,} tokens) does not fit the KV cache{on}: "
        f"there is room for {capacity:,} tokens.",
        step + ".",
        ctx.evidence(line),
        suggested_max_model_len=suggested,
        suggested_shapes=bigger,
    )


def _oom(ctx: _Context, haystack: list[str]) -> Diagnosis | None:
    hit = _first(_OOM, haystack) or _first(_NO_KV_MEMORY, haystack)
    if hit is None:
        return None
    _, line = hit
    bigger = ctx.bigger_shapes()
    on = f" on {ctx.shape}" if ctx.shape else ""
    summary = f"The model ran out of GPU memory{on} while loading or warming up."
    if ctx.model is not None and ctx.shape:
        verdict = fit(ctx.model, ctx.shape, max_model_len=ctx.max_model_len)
        need = f"≈ {format_gb(verdict.weights_gb)} GB weights"
        if verdict.kv_cache_gb is not None:
            need += f" + {format_gb(verdict.kv_cache_gb)} GB KV cache"
        summary += f" It needs {need}."
    if bigger:
        step = f"Choose a shape with more GPU memory: {', '.join(bigger[:3])}"
        step += " (or lower `--max-model-len` / use a quantised model)."
    else:
        step = "Choose a shape with more GPU memory, or lower `--max-model-len`, or use a quantised model."
    return Diagnosis("cuda_oom", summary, step, ctx.evidence(line), suggested_shapes=bigger)


def _trust_remote_code(ctx: _Context, haystack: list[str]) -> Diagnosis | None:
    hit = _first(_TRUST, haystack)
    if hit is None:
        return None
    return Diagnosis(
        "trust_remote_code",
        "The model ships its own Python code, which vLLM runs only when told to trust it.",
        "Add `--trust-remote-code` to the vLLM flags and redeploy (only if you trust the model's source).",
        ctx.evidence(hit[1]),
    )


def _architecture(ctx: _Context, haystack: list[str]) -> Diagnosis | None:
    hit = _first(_ARCH, haystack)
    if hit is None:
        return None
    match, line = hit
    names = match.group(1).replace("'", "").replace('"', "").strip() or "this architecture"
    return Diagnosis(
        "unsupported_architecture",
        f"The vLLM version in the serving container does not support {names}.",
        "Deploy a model with a supported architecture, or use a newer vLLM serving container.",
        ctx.evidence(line),
    )


def _capacity(ctx: _Context, haystack: list[str]) -> Diagnosis | None:
    hit = _first(_CAPACITY, haystack)
    if hit is None:
        return None
    if ctx.model is not None:
        others = ctx.fitting_shapes()
    elif ctx.shapes is not None:
        others = [s.name for s in ctx.shapes if s.runs_vllm and s.name != ctx.shape]
    else:
        others = []
    which = ctx.shape or "the chosen shape"
    step = "Try again later"
    if others:
        step = f"Deploy on another shape that fits: {', '.join(others[:4])}; or try again later"
    step += " (capacity changes; a capacity reservation avoids this)."
    return Diagnosis(
        "no_capacity",
        f"The region has no free capacity for {which} right now.",
        step,
        ctx.evidence(hit[1]),
        suggested_shapes=others,
    )


def _authorization(ctx: _Context, haystack: list[str]) -> Diagnosis | None:
    hit = _first(_NOT_AUTHORIZED, haystack)
    if hit is None:
        return None
    return Diagnosis(
        "not_authorized",
        "A resource the deployment needs was not found, or no policy lets it be used "
        "(NotAuthorizedOrNotFound).",
        "Check the OCIDs (model, project, compartment, log group, subnet), then ask an administrator to add "
        "the policy statements below (placeholders in <>).",
        ctx.evidence(hit[1]),
        policies=list(POLICY_STATEMENTS),
    )


def _image(ctx: _Context, haystack: list[str]) -> Diagnosis | None:
    hit = _first(_IMAGE, haystack)
    if hit is None:
        return None
    return Diagnosis(
        "image_pull",
        "The serving container image could not be pulled.",
        "Check the container image URI and tag, and that a policy lets the deployment read the repository "
        "(`allow any-user to read repos in compartment <compartment> where ALL "
        "{request.principal.type = 'datasciencemodeldeployment'}`).",
        ctx.evidence(hit[1]),
    )


def _fallback(ctx: _Context, haystack: list[str]) -> Diagnosis:
    state = ctx.state.upper() if ctx.state else "UNKNOWN"
    timeout = _first(_TIMEOUT, haystack)
    if timeout is not None:
        return Diagnosis(
            "timeout",
            "The model server did not become ready in time.",
            f"{ctx.read_the_log()}. The predict log shows where start-up stopped; a large model may need a bigger "
            "shape or a smaller `--max-model-len`.",
            ctx.evidence(timeout[1]),
        )
    if ctx.errors:
        summary = f"The deployment is {state}: {ctx.errors[0]}"
    elif state in {"ACTIVE", "SUCCEEDED"}:
        summary = "The deployment is ACTIVE; no failure was found."
    else:
        summary = f"The deployment is {state}; no known failure signature was found."
    return Diagnosis("unknown", summary, ctx.read_the_log() + ".", ctx.evidence())
