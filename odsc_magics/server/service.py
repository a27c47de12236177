"""What the REST handlers do, as plain blocking functions over the deployment API and the magics' settings."""

from __future__ import annotations

from typing import Any

from odsc_magics._version import __version__
from odsc_magics.errors import ValidationError

ACTIONS = ("activate", "deactivate")
MAX_TAIL = 500


def summary(deployment: Any) -> dict:
    """The deployment as the panel shows it (``Deployment.to_dict``)."""
    return deployment.to_dict()


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

    return [summary(d) for d in deployments()]


def get_deployment(id_or_name: str) -> dict:
    from odsc_magics.control_plane import get_deployment as get

    return summary(get(id_or_name))


def logs(id_or_name: str, tail: int = 50) -> list[dict]:
    """The deployment's recent log lines, oldest first."""
    from odsc_magics.control_plane import get_deployment as get

    return get(id_or_name).logs(tail=max(1, min(int(tail), MAX_TAIL)))


def act(id_or_name: str, action: str) -> dict:
    """Activate or deactivate; returns the deployment right after the request (its state is then UPDATING)."""
    from odsc_magics.control_plane import get_deployment as get

    if action not in ACTIONS:
        raise ValidationError(f"Unknown action {action!r}.", hint=f"Use one of: {', '.join(ACTIONS)}.")
    deployment = get(id_or_name)
    getattr(deployment, action)(wait=False)
    return summary(deployment)


def delete(id_or_name: str, *, force: bool = False) -> dict:
    """Delete the deployment (an ACTIVE one only with ``force``); returns it right after the request."""
    from odsc_magics.control_plane import get_deployment as get

    deployment = get(id_or_name)
    deployment.delete(wait=False, force=force)
    return summary(deployment)
