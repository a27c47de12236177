"""Jupyter server extension: authenticated REST handlers under /odsc-magics/ for the LLM Deployments panel."""

from __future__ import annotations

from typing import Any

from odsc_magics._version import __version__

__all__ = ["__version__"]


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "odsc_magics.server"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    """Mount the handlers on the server's web application."""
    from odsc_magics.server.routes import setup_route_handlers

    setup_route_handlers(server_app.web_app)
    server_app.log.info("odsc_magics %s: REST handlers mounted under /odsc-magics/", __version__)
