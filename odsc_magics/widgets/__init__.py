"""Notebook widgets of odsc-magics (ipywidgets is imported only when one is built)."""

from __future__ import annotations

from typing import Any

__all__ = ["DeployForm", "DeployRequest", "ModelChoice", "ProgressSink"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from odsc_magics.widgets import deploy_form

        return getattr(deploy_form, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
