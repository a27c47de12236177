"""Batch prompting from pandas: `predict_frame` and what runs it (imported on first use)."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["BatchError", "BatchInterrupted", "last_partial", "predict_frame"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("odsc_magics.batch.frame"), name)
    raise AttributeError(f"module 'odsc_magics.batch' has no attribute {name!r}")
