"""Targets: a deployment OCID, a model deployment URL (with or without /predict), or a display name."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from odsc_magics.errors import NotFoundError, OdscMagicsError, ValidationError

__all__ = ["ResolvedTarget", "find_deployments_by_name", "resolve_target", "split_url"]

_PREDICT_SEGMENTS = ("predict", "predictWithResponseStream")


@dataclass(frozen=True)
class ResolvedTarget:
    """Where to send predictions, and what the user called it."""

    url: str  # model deployment URL, without /predict
    deployment_id: str | None
    name: str | None
    kind: str  # "ocid" | "url" | "name"
    target: str


def is_deployment_ocid(text: str) -> bool:
    return text.startswith("ocid1.") and "modeldeployment" in text.split(".")[1]


def split_url(url: str) -> tuple[str, str | None]:
    """(model deployment URL, deployment OCID if the path names one) for a URL with or without /predict..."""
    parts = urlsplit(url.strip())
    segments = [s for s in parts.path.split("/") if s]
    for i, segment in enumerate(segments):
        if segment in _PREDICT_SEGMENTS:
            segments = segments[:i]
            break
    path = "/" + "/".join(segments) if segments else ""
    base = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    ocid = segments[-1] if segments and segments[-1].startswith("ocid1.") else None
    return base, ocid


def find_deployments_by_name(context, name: str, *, deleted: bool = False) -> list:
    """Model deployments of the context's compartment whose display name is exactly ``name``: the live ones, or
    with ``deleted`` the DELETED ones."""
    import oci

    if not context.compartment_id:
        raise ValidationError(
            f"Cannot look up the deployment named {name!r}: no compartment is known.",
            hint="Set `%config LLMMagics.compartment_id = '...'`, or pass the deployment OCID or URL.",
        )
    client = context.data_science()
    found = context.call(
        f"Listing model deployments named {name!r}",
        oci.pagination.list_call_get_all_results,
        client.list_model_deployments,
        compartment_id=context.compartment_id,
        display_name=name,
    ).data
    return [d for d in found if d.display_name == name and (d.lifecycle_state == "DELETED") == deleted]


def _resolve_name(context, name: str) -> ResolvedTarget:
    matches = find_deployments_by_name(context, name)
    if not matches:
        gone = bool(find_deployments_by_name(context, name, deleted=True))
        raise NotFoundError(
            f"The model deployment named {name!r} was deleted."
            if gone
            else f"No model deployment named {name!r} in compartment {context.compartment_id}.",
            hint=("Deploy it again (`%llm_deploy create ...`) or pick another: " if gone else "")
            + "`%llm_deploy list` (or odsc_magics.deployments()) lists them; a target may also be "
            "a deployment OCID or URL.",
            target=name,
        )
    if len(matches) > 1:
        listing = "; ".join(f"{d.display_name} {d.id} {d.lifecycle_state}" for d in matches)
        raise ValidationError(
            f"{len(matches)} model deployments are named {name!r}: {listing}.",
            hint="Use the OCID of the one you mean.",
            target=name,
        )
    found = matches[0]
    return ResolvedTarget(found.model_deployment_url.rstrip("/"), found.id, found.display_name, "name", name)


def _resolve_ocid(context, ocid: str) -> ResolvedTarget:
    try:
        found = context.call(
            "Reading the model deployment", context.data_science().get_model_deployment, ocid
        ).data
    except OdscMagicsError:
        # Predict permission does not imply read permission: fall back to the URL's known form.
        return ResolvedTarget(context.deployment_url(ocid), ocid, None, "ocid", ocid)
    return ResolvedTarget(found.model_deployment_url.rstrip("/"), ocid, found.display_name, "ocid", ocid)


def resolve_target(target: str, context) -> ResolvedTarget:
    """Resolve ``target`` to a data-plane URL; OCID and name look-ups are cached in the context briefly."""
    target = target.strip()
    if not target:
        raise ValidationError("The target is empty.", hint="Pass a deployment OCID, URL or display name.")
    if target.startswith(("http://", "https://")):
        url, ocid = split_url(target)
        return ResolvedTarget(url, ocid, None, "url", target)
    if target.startswith("ocid1.") and not is_deployment_ocid(target):
        raise ValidationError(
            f"{target} is not a model deployment OCID.",
            hint="Predictions go to a model deployment (ocid1.datasciencemodeldeployment...): deploy one, "
            "with odsc_magics.deploy(model, shape) or `%llm_deploy`.",
            target=target,
        )
    cached = context.cached_target(target)
    if cached is not None:
        return cached
    resolved = (
        _resolve_ocid(context, target) if target.startswith("ocid1.") else _resolve_name(context, target)
    )
    context.cache_target(target, resolved)
    return resolved
