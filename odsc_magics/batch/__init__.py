"""Batch prompting from pandas: `predict_frame` and what runs it."""

from __future__ import annotations

from odsc_magics.batch.frame import BatchError, BatchInterrupted, last_partial, predict_frame

__all__ = ["BatchError", "BatchInterrupted", "last_partial", "predict_frame"]
