"""Batch prompting from pandas: `predict_frame`, `estimate_frame`, `embed_frame` (imported on first use)."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BatchError",
    "BatchInterrupted",
    "FrameEstimate",
    "embed_frame",
    "estimate_frame",
    "last_partial",
    "predict_frame",
]

_MODULES = {
    "FrameEstimate": "odsc_magics.batch.forecast",
    "estimate_frame": "odsc_magics.batch.forecast",
    "embed_frame": "odsc_magics.batch.embedding",
}


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(_MODULES.get(name, "odsc_magics.batch.frame")), name)
    raise AttributeError(f"module 'odsc_magics.batch' has no attribute {name!r}")
