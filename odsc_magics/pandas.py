"""The `df.llm` and `series.llm` pandas accessors; importing this module registers them."""

from __future__ import annotations

from typing import Any

import pandas as pd

from odsc_magics.batch import FrameEstimate, embed_frame, estimate_frame, predict_frame

__all__ = ["FrameAccessor", "SeriesAccessor", "register"]


class FrameAccessor:
    """``df.llm.predict(template, **kwargs)``: ``predict_frame(df, template, **kwargs)``; ``df.llm.estimate`` the
    same with ``estimate_frame`` (nothing sent)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame

    def predict(self, template: str, **kwargs: Any) -> pd.DataFrame:
        """One prompt per row from ``template``; see ``odsc_magics.predict_frame`` for the options."""
        return predict_frame(self._frame, template, **kwargs)

    def estimate(self, template: str, **kwargs: Any) -> FrameEstimate:
        """What ``predict`` with these arguments would send, take and cost; see ``odsc_magics.estimate_frame``."""
        return estimate_frame(self._frame, template, **kwargs)

    def embed(self, column: Any, **kwargs: Any) -> pd.DataFrame:
        """The vector of each row's text in ``column``; see ``odsc_magics.embed_frame`` for the options."""
        return embed_frame(self._frame, column, **kwargs)


class SeriesAccessor:
    """``series.llm.predict(**kwargs)``: each value is a ready prompt; ``series.llm.estimate`` counts them."""

    def __init__(self, series: pd.Series) -> None:
        self._series = series

    def predict(self, **kwargs: Any) -> pd.DataFrame:
        """Answer each value as a prompt; returns a frame with the prompts and the answer columns."""
        name, frame = self._frame()
        return predict_frame(frame, prompt_column=name, **kwargs)

    def estimate(self, **kwargs: Any) -> FrameEstimate:
        """What ``predict`` with these arguments would send, take and cost (nothing sent)."""
        name, frame = self._frame()
        return estimate_frame(frame, prompt_column=name, **kwargs)

    def embed(self, **kwargs: Any) -> pd.DataFrame:
        """The vector of each value as a text; returns a frame with the texts and the embedding columns."""
        name, frame = self._frame()
        return embed_frame(frame, name, **kwargs)

    def _frame(self) -> tuple[Any, pd.DataFrame]:
        name = self._series.name if self._series.name is not None else "prompt"
        return name, self._series.to_frame(name=name)


def register() -> None:
    """Register the ``llm`` accessors (idempotent)."""
    if "llm" not in getattr(pd.DataFrame, "_accessors", set()) or not hasattr(pd.DataFrame, "llm"):
        pd.api.extensions.register_dataframe_accessor("llm")(FrameAccessor)
    if not hasattr(pd.Series, "llm"):
        pd.api.extensions.register_series_accessor("llm")(SeriesAccessor)


register()
