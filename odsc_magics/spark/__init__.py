"""`predict_spark`: one prompt per row of a Spark DataFrame, on local Spark or OCI Data Flow, once per row."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["predict_spark"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("odsc_magics.spark.job"), name)
    raise AttributeError(f"module 'odsc_magics.spark' has no attribute {name!r}")
