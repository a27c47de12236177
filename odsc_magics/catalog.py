"""What can be deployed: catalog and user models, the region's shapes, and the fit of one on the other."""

from __future__ import annotations

import difflib
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from odsc_magics.config import LLMSettings
from odsc_magics.context import get_context
from odsc_magics.errors import ConfigurationError, NotFoundError, ValidationError
from odsc_magics.shape_economics import ShapeEstimate, estimate_shape
from odsc_magics.sizing import (
    SHAPES,
    FitVerdict,
    ModelSpec,
    ShapeInfo,
    fit,
    model_spec_from,
    shapes_from_service,
)

__all__ = [
    "CatalogModel",
    "ShapeFit",
    "check_shape",
    "find_model",
    "list_models",
    "list_shapes",
    "model_metadata",
    "region_shapes",
]

SHAPES_CACHE_S = 300.0
_shape_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lock = threading.Lock()


@dataclass
class CatalogModel:
    """A model that can be deployed: a service (catalog) model or one of the compartment's own."""

    id: str
    name: str
    category: str  # "SERVICE" | "USER"
    task: str | None = None
    organization: str | None = None
    time_created: str | None = None
    tags: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    @property
    def spec(self) -> ModelSpec | None:
        """What sizing knows of the model (from its name and metadata); None when its size is unknown."""
        return model_spec_from(self.name, self.metadata)

    def to_dict(self) -> dict:
        spec = self.spec
        return {
            "id": self.id,
            "name": self.name,
            "category": self.category,
            "task": self.task,
            "organization": self.organization,
            "parameters_b": spec.parameters_b if spec else None,
            "context": spec.context if spec else None,
        }


@dataclass
class ShapeFit:
    """A shape the region offers, with the fit verdict of the model asked about (None: no model given).

    ``estimate`` is what the shape delivers for the model (sequences, tokens/s, price), when it fits and
    the model's architecture is known.
    """

    shape: ShapeInfo
    verdict: FitVerdict | None = None
    estimate: ShapeEstimate | None = None

    @property
    def fit_label(self) -> str:
        verdict = self.verdict
        if verdict is None:
            return ""
        if verdict.fits:
            return "✓ fits"
        label = f"✗ {verdict.short_reason}"
        if verdict.kind in ("too_big", "kv_cache") and verdict.suggested_max_model_len:
            label += f" (fits with --max-model-len {verdict.suggested_max_model_len})"
        return label


def _need_compartment(context: Any, what: str) -> None:
    if not context.compartment_id:
        raise ConfigurationError(
            f"Cannot {what}: no compartment is known.",
            hint="Set `%config LLMMagics.compartment_id = '...'` (env ODSC_MAGICS_COMPARTMENT_ID).",
        )


def model_metadata(model: Any) -> dict:
    """A model's custom metadata as a dict (empty for summaries, which carry none)."""
    return {item.key: item.value for item in (getattr(model, "custom_metadata_list", None) or [])}


def _time(value: Any) -> str | None:
    from odsc_magics.logs import _rfc3339

    return _rfc3339(value)


def _of(model: Any, category: str) -> CatalogModel:
    tags = dict(model.freeform_tags or {})
    return CatalogModel(
        id=model.id,
        name=model.display_name,
        category=category,
        task=tags.get("task"),
        organization=tags.get("organization"),
        time_created=_time(getattr(model, "time_created", None)),
        tags=tags,
        metadata=model_metadata(model),
    )


def _matches(name: str, search: str | None) -> bool:
    if not search:
        return True
    low = name.lower()
    return all(word in low for word in search.lower().split())


def list_models(
    *,
    search: str | None = None,
    include_user: bool = True,
    settings: LLMSettings | None = None,
    context: Any = None,
) -> list[CatalogModel]:
    """Service models ready to deploy (tag ``OCI_AQUA``), then the compartment's (and project's) own models.

    ``search``: every word must appear in the name (case-insensitive).
    """
    import oci

    context = context or get_context(settings)
    _need_compartment(context, "list models")
    client = context.data_science()
    service = context.call(
        "Listing the service models",
        oci.pagination.list_call_get_all_results,
        client.list_models,
        compartment_id=context.compartment_id,
        category="SERVICE",
        lifecycle_state="ACTIVE",
    ).data
    out = [
        _of(m, "SERVICE")
        for m in service
        if "OCI_AQUA" in (m.freeform_tags or {}) and (m.freeform_tags or {}).get("ready_to_deploy") != "false"
    ]
    if include_user:
        kwargs = {"project_id": context.project_id} if context.project_id else {}
        own = context.call(
            "Listing the compartment's models",
            oci.pagination.list_call_get_all_results,
            client.list_models,
            compartment_id=context.compartment_id,
            category="USER",
            lifecycle_state="ACTIVE",
            **kwargs,
        ).data
        out.extend(_of(m, "USER") for m in own)
    return [m for m in out if _matches(m.name, search)]


def find_model(model: str, *, context: Any) -> Any:
    """The full SDK Model for an OCID or an exact display name (service catalog first, then own models)."""
    import oci

    client = context.data_science()
    if model.startswith("ocid1."):
        return context.call("Reading the model", client.get_model, model).data
    _need_compartment(context, f"look up the model {model!r}")
    matches = []
    for category in ("SERVICE", "USER"):
        found = context.call(
            f"Listing {category.lower()} models named {model!r}",
            oci.pagination.list_call_get_all_results,
            client.list_models,
            compartment_id=context.compartment_id,
            category=category,
            display_name=model,
        ).data
        matches.extend(m for m in found if m.display_name == model and m.lifecycle_state == "ACTIVE")
    if not matches:
        close = difflib.get_close_matches(model, [m.name for m in list_models(context=context)], n=3, cutoff=0.5)
        maybe = f" Did you mean {', '.join(close)}?" if close else ""
        raise NotFoundError(
            f"Unknown model {model!r}: no catalog or compartment model has that name.{maybe}",
            hint="`%llm_deploy models --search TEXT` lists the models; give an exact name or a model OCID.",
            target=model,
        )
    if len(matches) > 1:
        listing = "; ".join(f"{m.display_name} {m.id} ({m.category})" for m in matches)
        raise ValidationError(
            f"{len(matches)} models are named {model!r}: {listing}.", hint="Pass the OCID of the one you mean."
        )
    return context.call("Reading the model", client.get_model, matches[0].id).data


def region_shapes(*, settings: LLMSettings | None = None, context: Any = None) -> list[ShapeInfo]:
    """The shapes the region offers for model deployments, with the catalog's GPU facts (cached 5 min)."""
    import oci

    context = context or get_context(settings)
    _need_compartment(context, "list the region's shapes")
    with _lock:
        hit = _shape_cache.get(context)
    if hit is not None and time.monotonic() - hit[0] < SHAPES_CACHE_S:
        return list(hit[1])
    found = context.call(
        "Listing the model deployment shapes",
        oci.pagination.list_call_get_all_results,
        context.data_science().list_model_deployment_shapes,
        context.compartment_id,
    ).data
    shapes = shapes_from_service(found)
    with _lock:
        _shape_cache[context] = (time.monotonic(), shapes)
    return list(shapes)


def check_shape(shape: str, offered: Iterable[ShapeInfo], region: str) -> ShapeInfo:
    """The shape's facts, or a ValidationError: unknown anywhere, or not offered in this region."""
    offered = list(offered)
    by_name = {s.name: s for s in offered}
    if shape in by_name:
        return by_name[shape]
    gpu = [s.name for s in offered if s.runs_vllm]
    if shape not in SHAPES:
        close = difflib.get_close_matches(shape, list(dict.fromkeys([*by_name, *SHAPES])), n=3, cutoff=0.6)
        maybe = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValidationError(
            f"Unknown shape {shape!r}.{maybe}",
            hint="`%llm_deploy shapes` lists the region's shapes (e.g. VM.GPU.A10.1).",
            target=shape,
        )
    raise ValidationError(
        f"Shape {shape} is not offered for model deployments in {region}.",
        hint=f"Pick one the region offers: {', '.join(gpu[:6]) or 'none with a GPU'} (`%llm_deploy shapes`).",
        target=shape,
    )


def list_shapes(
    *,
    model: str | None = None,
    max_model_len: int | None = None,
    settings: LLMSettings | None = None,
    context: Any = None,
) -> list[ShapeFit]:
    """The region's shapes (GPU shapes first, smallest GPU memory first), each with ``model``'s fit verdict.

    Each shape ``model`` fits carries an estimate of what it delivers, priced with the ``gpu_prices`` setting
    over OCI's list prices.
    """
    from odsc_magics import arguments
    from odsc_magics.prices import gpu_prices

    arguments.whole("max_model_len", max_model_len, minimum=1, optional=True, hint="e.g. --max-model-len 8192")
    context = context or get_context(settings)
    shapes = region_shapes(context=context)
    spec = None
    if model:
        found = find_model(model, context=context)
        spec = model_spec_from(found.display_name, model_metadata(found))
    ordered = sorted(
        shapes,
        key=lambda s: (not s.is_gpu, s.gpu_memory_gb if s.gpu_memory_gb is not None else float("inf"), s.name),
    )
    prices = gpu_prices(settings)
    out = []
    for s in ordered:
        verdict = fit(spec, s, max_model_len=max_model_len, alternatives=shapes) if spec else None
        estimate = None
        if spec is not None and verdict is not None and verdict.fits:
            estimate = estimate_shape(spec, s, max_model_len=max_model_len, prices=prices)
        out.append(ShapeFit(s, verdict, estimate))
    return out
