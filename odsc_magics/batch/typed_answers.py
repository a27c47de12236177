"""Typed answers of `predict_frame` (schema=, choices=, regex=): parsed into typed columns, or the raw text kept.

An answer that does not parse or fit (cut by ``max_tokens``, a server without constrained decoding) is asked
for once more with the same request; if the second answer does not fit either, the row fails with the reason
in ``error`` and the answer's text in ``raw``. A row that failed for another reason has no ``raw``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from odsc_magics import errors
from odsc_magics.structured_output import AnswerFormatError, OutputFormat, output_format, typed_columns

if TYPE_CHECKING:
    import pandas as pd

    from odsc_magics.batch.runner import Job, Outcome

RAW_COLUMN = "raw"


class TypedAnswers:
    """The parsed value and raw text of every row, filled as rows finish."""

    def __init__(self, fmt: OutputFormat, size: int, output_column: str) -> None:
        self.fmt = fmt
        self.output_column = output_column
        self.values: list[Any] = [None] * size
        self.raw: list[str | None] = [None] * size

    @property
    def columns(self) -> list[str]:
        """The columns the answers go into: the schema's top-level fields, else ``output_column``; then raw."""
        return [*(self.fmt.fields() or [self.output_column]), RAW_COLUMN]

    def sender(self, send: Callable[[Job], Any]) -> Callable[[Job], Any]:
        """``send`` plus the check of each answer, asking once more when it does not fit."""
        fmt = self.fmt

        def send_typed(job: Job) -> Any:
            result = send(job)
            try:
                value = fmt.parse(result.text, result.finish_reason)
            except AnswerFormatError:
                job.attempts += 1
                result = send(job)
                try:
                    value = fmt.parse(result.text, result.finish_reason)
                except AnswerFormatError as err:
                    self.raw[job.position] = err.raw
                    raise AnswerFormatError(f"{err.message[:-1]} (asked twice). {err.hint}", raw=err.raw) from None
            result.parsed = value
            self.values[job.position] = value
            self.raw[job.position] = None
            return result

        return send_typed

    def put(self, position: int, outcome: Outcome) -> None:
        """A finished row: a row answered in an earlier run (checkpoint) is parsed from its text here."""
        if outcome.error is not None:
            return
        self.raw[position] = None
        if self.values[position] is None and outcome.text is not None:
            try:
                self.values[position] = self.fmt.parse(outcome.text, outcome.finish_reason)
            except AnswerFormatError as err:  # a checkpoint written without this format
                outcome.error = err.message
                self.raw[position] = err.raw

    def add_to(self, out: pd.DataFrame, finished: Sequence[int]) -> None:
        """Put the typed columns into ``out`` (rows not finished stay missing)."""
        values = [value if done else None for value, done in zip(self.values, finished, strict=True)]
        for name, column in typed_columns(self.fmt, values, self.output_column).items():
            out[name] = column

    def add_raw(self, out: pd.DataFrame) -> None:
        """Put ``raw`` into ``out``: the text of each answer that did not fit, missing elsewhere."""
        import pandas as pd

        out[RAW_COLUMN] = pd.array(self.raw, dtype="string")


def typed_answers(
    schema: Any, choices: Any, regex: Any, *, size: int, output_column: str, df: pd.DataFrame, reserved: Sequence[str]
) -> TypedAnswers | None:
    """The typed answers asked for (None for free text); a clash with the frame's columns is a ValidationError."""
    fmt = output_format(schema=schema, choices=choices, regex=regex)
    if fmt is None:
        return None
    answers = TypedAnswers(fmt, size, output_column)
    taken = set(map(str, df.columns)) | set(reserved)
    clash = [name for name in answers.columns if name in taken]
    if clash:
        raise errors.ValidationError(
            f"the answers' column(s) {', '.join(map(repr, clash))} would replace columns of the frame or of "
            "predict_frame",
            hint="Rename those columns of the frame (or the schema's fields), or pass output_column=.",
        )
    return answers
