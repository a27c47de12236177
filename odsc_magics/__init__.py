"""odsc-magics: deploy and prompt LLMs on OCI Data Science from Jupyter (imports stay lazy)."""

from __future__ import annotations

import importlib
from typing import Any

from odsc_magics._version import __version__

__all__ = [
    "Deployment",
    "Endpoint",
    "Result",
    "__version__",
    "connect",
    "deploy",
    "deployments",
    "embed_frame",
    "estimate_frame",
    "get_deployment",
    "last_partial",
    "load_ipython_extension",
    "predict_frame",
    "request_snippet",
    "unload_ipython_extension",
]

# Public name -> module that defines it; imported on first access so `import odsc_magics` stays cheap.
_LAZY = {
    "connect": "odsc_magics.client",
    "Endpoint": "odsc_magics.client",
    "Result": "odsc_magics.client",
    "deploy": "odsc_magics.control_plane",
    "deployments": "odsc_magics.control_plane",
    "get_deployment": "odsc_magics.control_plane",
    "Deployment": "odsc_magics.control_plane",
    "predict_frame": "odsc_magics.batch",
    "estimate_frame": "odsc_magics.batch",
    "embed_frame": "odsc_magics.batch",
    "last_partial": "odsc_magics.batch",
    "request_snippet": "odsc_magics.request_snippets",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'odsc_magics' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext odsc_magics``: register the magics (no oci, no pandas, no network)."""
    from odsc_magics.magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext odsc_magics``."""
    from odsc_magics.magics import unload_ipython_extension as unload

    unload(ipython)


def _jupyter_labextension_paths() -> list[dict]:
    """Where the prebuilt JupyterLab extension is installed (share/jupyter/labextensions/odsc-magics)."""
    return [{"src": "labextension", "dest": "odsc-magics"}]


def _jupyter_server_extension_points() -> list[dict]:
    """The Jupyter server extension (REST handlers for the LLM Deployments panel); imported only by the server."""
    return [{"module": "odsc_magics.server"}]
