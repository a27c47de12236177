"""What the REST handlers do, as plain blocking functions over the deployment API and the magics' settings."""

from __future__ import annotations

import datetime
from typing import Any

from odsc_magics._version import __version__
from odsc_magics.errors import ValidationError

ACTIONS = ("activate", "deactivate")
MAX_TAIL = 500


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _from_raw(raw: Any, key: str) -> Any:
    config = getattr(raw, "model_deployment_configuration_details", None)
    model = getattr(config, "model_configuration_details", None)
    if key == "shape":
        return getattr(getattr(model, "instance_configuration", None), "instance_shape_name", None)
    if key == "model_id":
        return getattr(model, "model_id", None)
    if key == "model":
        return (getattr(raw, "freeform_tags", None) or {}).get("aqua_model_name")
    if key == "created":
        return getattr(raw, "time_created", None)
    return getattr(raw, "lifecycle_details", None)


def summary(deployment: Any) -> dict:
    """The deployment as the panel shows it: id, name, state, url, shape, model, model_id, created, chat, ..."""
    attributes = {
        "shape": "shape",
        "model": "model_name",
        "model_id": "model_id",
        "created": "time_created",
        "lifecycle_details": "lifecycle_details",
    }
    data = {
        "id": deployment.id,
        "name": deployment.name,
        "state": deployment.state,
        "url": deployment.url,
        "chat": bool(getattr(deployment, "is_chat", False)),
    }
    for key, attribute in attributes.items():
        value = getattr(deployment, attribute, None)
        data[key] = value if value is not None else _from_raw(deployment.raw, key)
    return _jsonable(data)


def status() -> dict:
    """Version and backend: what the panel needs to explain an empty or failing list."""
    from odsc_magics.config import resolve

    backend = resolve("backend")[0] or "oci"
    info = {"version": __version__, "backend": backend}
    if backend == "local":
        info["local_dir"] = str(resolve("local_dir")[0])
    return info


def list_deployments() -> list[dict]:
    """Every deployment that is not DELETED, newest first."""
    from odsc_magics.control_plane import deployments

    found = [summary(d) for d in deployments()]
    found.sort(key=lambda d: d.get("created") or "", reverse=True)
    return found


def get_deployment(id_or_name: str) -> dict:
    from odsc_magics.control_plane import get_deployment as get

    return summary(get(id_or_name))


def logs(id_or_name: str, tail: int = 50) -> list[dict]:
    """The deployment's recent log lines, oldest first."""
    from odsc_magics.control_plane import get_deployment as get

    deployment = get(id_or_name)
    read = getattr(deployment, "logs", None)
    if read is None:
        raise ValidationError(
            "Reading deployment logs is not available in this version of odsc-magics.",
            hint="Open the deployment's logs in the OCI Console (Logging, the deployment's log group).",
            target=deployment.id,
        )
    return _jsonable(read(tail=max(1, min(int(tail), MAX_TAIL))))


def _control_plane(deployment: Any, operation: str) -> None:
    """Fallback for a Deployment without the lifecycle method: call the service directly."""
    client = deployment.context.data_science()
    method = getattr(client, f"{operation}_model_deployment")
    deployment.context.call(f"{operation.capitalize()} the model deployment", method, deployment.id)
    deployment.context.forget_targets()
    deployment.refresh()


def act(id_or_name: str, action: str) -> dict:
    """Activate or deactivate; returns the deployment right after the request (its state is then UPDATING)."""
    from odsc_magics.control_plane import get_deployment as get

    if action not in ACTIONS:
        raise ValidationError(f"Unknown action {action!r}.", hint=f"Use one of: {', '.join(ACTIONS)}.")
    deployment = get(id_or_name)
    method = getattr(deployment, action, None)
    if method is None:
        _control_plane(deployment, action)
    else:
        method(wait=False)
    return summary(deployment)


def delete(id_or_name: str, *, force: bool = False) -> dict:
    """Delete the deployment (an ACTIVE one only with ``force``); returns it right after the request."""
    from odsc_magics.control_plane import get_deployment as get

    deployment = get(id_or_name)
    method = getattr(deployment, "delete", None)
    if method is None:
        if deployment.state == "ACTIVE" and not force:
            raise ValidationError(
                f"The model deployment {deployment.name} is ACTIVE.",
                hint="Deactivate it first, or confirm the deletion of an active deployment.",
                target=deployment.id,
            )
        _control_plane(deployment, "delete")
    else:
        method(wait=False, force=force)
    return summary(deployment)
