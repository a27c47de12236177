"""What each Spark task runs (inside mapInPandas): render its rows, skip finished ones, send the rest, record."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from odsc_magics import errors
from odsc_magics.batch.checkpoint import row_key
from odsc_magics.spark.budget import TaskBudget
from odsc_magics.spark.executor_endpoint import EndpointSpec
from odsc_magics.spark.ledger import STATUS_ERROR, STATUS_EXHAUSTED, STATUS_OK, Ledger

if TYPE_CHECKING:
    import pandas as pd

KEY_COLUMN = "row_key"
DRIVER_PARTITION = 99_999  # the checkpoint folder of the rows the driver answers itself (task partitions are below)
# Added after the input's columns, in this order (the output column's name is the caller's, first).
RESULT_COLUMNS = ("finish_reason", "prompt_tokens", "completion_tokens", "latency_s", "attempts", "status", "error")
_YIELD_ROWS = 10_000  # rows per pandas frame handed back to Spark
# Finished rows a task buffers before it writes a checkpoint file (or FLUSH_SECONDS pass): at least this many,
# so that a task at low concurrency does not write one file per row.
MIN_FLUSH_ROWS = 16


def flush_rows(budget: TaskBudget) -> int:
    """The rows per checkpoint file of a task under ``budget``: its concurrency ceiling, at least MIN_FLUSH_ROWS.

    A killed task attempt loses at most its requests in flight (up to that ceiling) and this many finished rows
    not yet in a file: its retry re-sends at most the sum.
    """
    return max(MIN_FLUSH_ROWS, budget.max_concurrency)


@dataclass(frozen=True)
class Prompts:
    """How each row becomes a request and a key; the same on the driver (checks) and in every task."""

    template: str
    system: str | None
    chat: bool
    params: dict[str, Any]
    target: str
    key_columns: tuple[str, ...] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        from odsc_magics.templating import variables

        names = list(variables(self.template)) + (list(variables(self.system)) if self.system else [])
        return tuple(dict.fromkeys(names))

    def key_params(self) -> dict[str, Any]:
        # The same parameters predict_frame hashes, so both name the same prompt's work alike.
        return {"chat": self.chat, "system": self.system, **self.params}

    def rows(self, df: pd.DataFrame) -> list[tuple[str, Any, str | None]]:
        """(row_key, request or None, error or None) for every row of ``df``."""
        from odsc_magics.batch.frame import is_missing
        from odsc_magics.templating import render

        names = self.names
        values = [df[name].tolist() for name in names]
        keys = [df[name].tolist() for name in self.key_columns] if self.key_columns else None
        params = self.key_params()
        out: list[tuple[str, Any, str | None]] = []
        for position in range(len(df)):
            row = {name: column[position] for name, column in zip(names, values, strict=True)}
            request: Any = None
            error = None
            empty = [name for name, value in row.items() if is_missing(value)]
            if empty:
                error = f"missing value in column {', '.join(map(repr, empty))} for this row"
            else:
                try:
                    prompt = render(self.template, row)
                    system_text = render(self.system, row) if self.system else None
                except errors.TemplateError as exc:
                    error = str(exc.message)
                else:
                    request = prompt
                    if self.chat:
                        request = ([{"role": "system", "content": system_text}] if system_text else []) + [
                            {"role": "user", "content": prompt}
                        ]
            if keys is not None:
                named: Any = {"key": [_plain(column[position]) for column in keys]}
            elif request is not None:
                named = request
            else:
                named = {"unrendered": [_plain(value) for value in row.values()]}
            out.append((row_key(named, params, self.target), request, error))
        return out


def _plain(value: Any) -> Any:
    """numpy scalars as Python values, so that a key does not depend on how a column was typed in memory."""
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError):
            pass
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


@dataclass(frozen=True)
class KeyRows:
    """mapInPandas function: the input with its row_key added (to find what a checkpoint holds already)."""

    prompts: Prompts

    def __call__(self, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for df in batches:
            out = df.copy(deep=False)
            out[KEY_COLUMN] = [key for key, _, _ in self.prompts.rows(df)]
            yield out


@dataclass(frozen=True)
class AnswerRows:
    """mapInPandas function: every row of the task's partition answered once, each finished row recorded."""

    prompts: Prompts
    spec: EndpointSpec
    budget: TaskBudget
    checkpoint: str
    run: str
    output_column: str
    max_retries: int
    on_error: str
    keyed: bool = False  # the input carries row_key already (a re-run: it went through KeyRows)
    record_failures: bool = True  # False on the driver's probe: a row it failed is a task's to send and record

    def __call__(self, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        frames = [frame for frame in batches if len(frame)]
        if not frames:
            return
        df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
        from pyspark import TaskContext

        context = TaskContext.get()
        partition = context.partitionId() if context is not None else 0
        attempt = context.taskAttemptId() if context is not None else 0
        results = self.answer(df, partition, attempt)
        if self.keyed:
            df = df.drop(columns=[KEY_COLUMN])
        for start in range(0, len(df), _YIELD_ROWS):
            yield _output(df.iloc[start : start + _YIELD_ROWS], results, start, self.output_column)

    def answer(self, df: pd.DataFrame, partition: int, attempt: int) -> list[dict[str, Any]]:
        """One record per row of ``df`` (row_key, status and the outcome fields), in order."""
        return self.send_rows(df, partition, attempt)[0]

    def send_rows(
        self, df: pd.DataFrame, partition: int, attempt: int, *, until: Callable[[Any, Any], bool] | None = None
    ) -> tuple[list[dict[str, Any]], Any]:
        """The records and the runner that sent them; ``until(tally, limiter)`` true stops sending (rows not
        sent then are not recorded: a later task sends them)."""
        from odsc_magics.batch.frame import request_sender
        from odsc_magics.batch.runner import BatchRunner, Job, Outcome, describe_error
        from odsc_magics.retry import classify_failure

        rows = self.prompts.rows(df)
        if self.keyed:
            rows = [(key, request, error) for key, (_, request, error) in zip(df[KEY_COLUMN], rows, strict=True)]
        ledger = Ledger(self.checkpoint, self.run)
        # What earlier attempts of this very task finished, and the rows the driver answered while it measured
        # the endpoint (odsc_magics.spark.calibration; at most a few hundred). Of the driver's, only answers
        # count: a row it failed (or cut short when it stopped measuring) is this task's to send.
        answered = {key: record for key, record in ledger.earlier(DRIVER_PARTITION).items()
                    if record["status"] == STATUS_OK}  # fmt: skip
        earlier = {**answered, **ledger.earlier(partition)}
        results: list[dict[str, Any] | None] = [None] * len(rows)
        jobs: list[Job] = []
        for position, (key, request, error) in enumerate(rows):
            found = earlier.get(key)
            if found is not None:
                results[position] = found
            else:
                jobs.append(Job(position, request, key=key, error=error))
        if not jobs:
            return results, None  # type: ignore[return-value]
        endpoint = self.spec.endpoint()
        send_one = request_sender(endpoint, chat=self.prompts.chat, params=self.prompts.params)
        retryable: dict[int, bool] = {}

        def send(job: Job) -> Any:
            try:
                return send_one(job)
            except Exception as exc:
                retryable[job.position] = classify_failure(exc).retried
                raise

        budget = self.budget.for_partition(partition)
        writer = ledger.writer(partition, attempt, flush_rows=flush_rows(budget))

        def deliver(job: Job, outcome: Outcome) -> None:
            status = STATUS_OK
            if outcome.error is not None:
                exhausted = retryable.get(job.position) and outcome.attempts > self.max_retries
                status = STATUS_EXHAUSTED if exhausted else STATUS_ERROR
            record = {"row_key": job.key, "status": status, **outcome.as_dict()}
            results[job.position] = record
            if status == STATUS_OK or self.record_failures:
                writer.add(record)

        runner = BatchRunner(
            send,
            deliver,
            concurrency=budget.concurrency,
            max_retries=self.max_retries,
            max_rps=budget.max_rps,
            stop_on_failure=self.on_error == "raise",
            max_concurrency=budget.max_concurrency,
        )
        if until is not None:

            def check(tally: Any, limiter: Any) -> None:
                if until(tally, limiter):
                    runner.stop.set()

            runner.on_progress = check
        try:
            runner.run(jobs)
        finally:
            writer.close()
        if runner.fatal is not None and not isinstance(runner.fatal, errors.OdscMagicsError):
            raise runner.fatal  # e.g. the checkpoint could not be written: Spark retries the task
        why = (
            f"not sent: {describe_error(runner.fatal)}"
            if runner.fatal is not None
            else "not sent: another row failed and on_error='raise' stops sending"
        )
        for job in jobs:
            if results[job.position] is None:
                results[job.position] = {"row_key": job.key, "status": STATUS_ERROR, "attempts": job.attempts,
                                         "error": why}  # fmt: skip
        return results, runner  # type: ignore[return-value]


def _output(df: pd.DataFrame, results: list[dict[str, Any]], start: int, output_column: str) -> pd.DataFrame:
    import pandas as pd

    chunk = results[start : start + len(df)]
    out = df.reset_index(drop=True).copy(deep=False)

    def column(name: str) -> list[Any]:
        return [record.get(name) for record in chunk]

    out[output_column] = pd.array(column("text"), dtype="object")
    out["finish_reason"] = pd.array(column("finish_reason"), dtype="object")
    out["prompt_tokens"] = pd.array(column("prompt_tokens"), dtype="Int64")
    out["completion_tokens"] = pd.array(column("completion_tokens"), dtype="Int64")
    out["latency_s"] = pd.array(column("latency_s"), dtype="Float64")
    out["attempts"] = pd.array([record.get("attempts") or 0 for record in chunk], dtype="Int64")
    out["status"] = pd.array(column("status"), dtype="object")
    out["error"] = pd.array(column("error"), dtype="object")
    out[KEY_COLUMN] = pd.array(column("row_key"), dtype="object")
    return out

