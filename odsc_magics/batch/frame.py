"""`predict_frame`: one prompt per DataFrame row, answered at the endpoint's capacity, nothing lost."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from odsc_magics import errors
from odsc_magics.batch.checkpoint import Checkpoint, row_key
from odsc_magics.batch.progress import Progress
from odsc_magics.batch.runner import BatchRunner, Job, Outcome, Tally, describe_error

if TYPE_CHECKING:
    import pandas as pd

OUTPUT_COLUMNS = ("finish_reason", "prompt_tokens", "completion_tokens", "latency_s", "attempts", "error")
_CHUNK = 512  # rows rendered and looked up in the checkpoint at a time (bounded memory)

_last_partial: pd.DataFrame | None = None


class BatchInterrupted(KeyboardInterrupt):
    """The batch was interrupted; ``partial`` is the frame with every row finished so far."""

    def __init__(self, partial: pd.DataFrame) -> None:
        super().__init__(
            "batch interrupted; the finished rows are in .partial and odsc_magics.last_partial()"
        )
        self.partial = partial


class BatchError(errors.OdscMagicsError):
    """Rows failed with ``on_error="raise"``, or the endpoint refused every request; see ``partial``."""

    def __init__(self, message: str, *, partial: pd.DataFrame | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.partial = partial


def last_partial() -> pd.DataFrame | None:
    """The frame handed back by the last interrupted or failed ``predict_frame`` call in this process."""
    return _last_partial


def predict_frame(
    df: pd.DataFrame,
    template: str | None = None,
    *,
    deployment: Any = None,
    chat: bool = False,
    system: str | None = None,
    concurrency: int | str = "auto",
    max_retries: int = 6,
    output_column: str = "completion",
    on_error: str = "record",
    checkpoint: str | None = None,
    progress: bool = True,
    max_rps: float | None = None,
    prompt_column: str | None = None,
    **params: Any,
) -> pd.DataFrame:
    """Answer one prompt per row of ``df`` and return a copy of it with the answers added.

    The prompt is ``template`` rendered with the row's columns (``{{ column }}``, the same Jinja2 sandbox as
    ``%%llm_predict``), or the ready text of ``prompt_column``. The copy keeps ``df``'s index and order
    and adds ``output_column``, ``finish_reason``, ``prompt_tokens``, ``completion_tokens``, ``latency_s``,
    ``attempts`` and ``error`` (missing where the row succeeded).

    ``deployment`` is anything ``connect()`` accepts, or a ``Deployment``/``Endpoint`` (default: the kernel's
    default target). ``concurrency="auto"`` grows while requests succeed and backs off on 429/503 (honouring
    Retry-After); an int fixes it; ``max_rps`` caps the request rate. Failed attempts are retried up to
    ``max_retries`` times (429, 408, 5xx, dropped or truncated answers); other 4xx are not. With
    ``on_error="record"`` a row's last error goes into its ``error`` column; with ``"raise"``, the rows in
    flight finish and then one ``BatchError`` summarises the failures.

    ``checkpoint=PATH`` commits each finished row to a SQLite file as it finishes, keyed by a hash of
    (rendered prompt, parameters, deployment): calling again with the same arguments sends only the rows
    not yet answered.

    Interrupting (kernel interrupt / Ctrl-C) raises ``BatchInterrupted``, a ``KeyboardInterrupt`` whose
    ``.partial`` is the frame with every row finished so far; ``odsc_magics.last_partial()`` returns the same
    frame afterwards. ``params`` are generation parameters (``max_tokens``, ``temperature``, ...).
    """
    global _last_partial
    _check_arguments(df, template, prompt_column, concurrency, on_error, output_column, max_retries)
    endpoint = _endpoint(deployment)
    target = getattr(endpoint, "deployment_id", None) or getattr(endpoint, "url", "")
    send = _sender(endpoint, chat=chat, system=system, params=params)
    columns = _Columns(len(df), output_column)
    store = Checkpoint(checkpoint) if checkpoint else None
    lock = threading.Lock()

    def deliver(job: Job, outcome: Outcome) -> None:
        columns.put(job.position, outcome)
        if store is not None and job.key is not None:
            with lock:
                store.record(job.key, outcome.as_dict())

    bar = Progress(total=len(df), enabled=progress)
    runner = BatchRunner(
        send,
        deliver,
        concurrency=concurrency,
        max_retries=max_retries,
        max_rps=max_rps,
        stop_on_failure=on_error == "raise",
        on_progress=bar.update,
    )
    runner.tally.total = len(df)
    jobs = _jobs(
        df,
        template,
        prompt_column,
        chat=chat,
        system=system,
        params=params,
        target=target,
        store=store,
        columns=columns,
        tally=runner.tally,
    )
    try:
        tally = runner.run(jobs)
    except KeyboardInterrupt:
        bar.close(runner.tally, runner.limiter, interrupted=True)
        _last_partial = columns.frame(df, note="not answered: interrupted")
        # The store stays open: a request still in flight records its row when it lands.
        raise BatchInterrupted(_last_partial) from None
    summary = bar.close(tally, runner.limiter)
    if store is not None:
        store.close()
    result = columns.frame(df, note="not answered: the batch stopped")
    result.attrs["odsc_magics"] = summary
    if runner.fatal is not None:
        _last_partial = result
        raise BatchError(
            f"the batch stopped: {describe_error(runner.fatal)}",
            hint=getattr(runner.fatal, "hint", "") or "",
            partial=result,
        ) from runner.fatal
    if on_error == "raise" and tally.failed:
        _last_partial = result
        kinds = ", ".join(f"{count} × {kind}" for kind, count in tally.failures.most_common())
        raise BatchError(
            f"{tally.failed} row(s) failed ({kinds}); first: {columns.first_error()}",
            hint="The finished rows are in the error's .partial (and odsc_magics.last_partial()); "
            'use on_error="record" to keep going past failures.',
            partial=result,
        )
    return result


def _check_arguments(
    df: Any,
    template: str | None,
    prompt_column: str | None,
    concurrency: Any,
    on_error: str,
    output_column: str,
    max_retries: int,
) -> None:
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise errors.ValidationError(
            f"predict_frame needs a pandas DataFrame, not {type(df).__name__}",
            hint="Use series.llm.predict() for a Series of ready prompts.",
        )
    if (template is None) == (prompt_column is None):
        raise errors.ValidationError(
            "give either a template or prompt_column",
            hint='e.g. predict_frame(df, "Summarise: {{ text }}")',
        )
    if prompt_column is not None and prompt_column not in df.columns:
        raise errors.ValidationError(f"no column {prompt_column!r} in the frame")
    if template is not None:
        from odsc_magics.templating import variables

        missing = [name for name in variables(template) if name not in df.columns]
        if missing:
            raise errors.ValidationError(
                f"the template reads {', '.join(map(repr, missing))}, which the frame has no column for",
                hint=f"Columns: {', '.join(map(str, df.columns[:20]))}",
            )
    if concurrency != "auto" and (not isinstance(concurrency, int) or concurrency < 1):
        raise errors.ValidationError(f'concurrency must be "auto" or a positive int, not {concurrency!r}')
    if on_error not in {"record", "raise"}:
        raise errors.ValidationError(f'on_error must be "record" or "raise", not {on_error!r}')
    if not isinstance(max_retries, int) or max_retries < 0:
        raise errors.ValidationError(f"max_retries must be a whole number >= 0, not {max_retries!r}")
    clash = [name for name in (output_column, *OUTPUT_COLUMNS) if name in df.columns]
    if clash:
        raise errors.ValidationError(
            f"the frame already has column(s) {', '.join(map(repr, clash))}",
            hint="Pass output_column= with another name, or drop those columns first.",
        )


def _endpoint(deployment: Any) -> Any:
    if deployment is not None and hasattr(deployment, "endpoint") and callable(deployment.endpoint):
        return deployment.endpoint()
    if deployment is not None and hasattr(deployment, "complete"):
        return deployment
    from odsc_magics.client import connect

    return connect(deployment)


def _sender(endpoint: Any, *, chat: bool, system: str | None, params: dict[str, Any]) -> Any:
    """One attempt per call: the runner decides retries and concurrency."""
    if chat:

        def send_chat(job: Job) -> Any:
            return endpoint.chat(job.request, max_retries=0, **params)

        return send_chat

    def send_completion(job: Job) -> Any:
        return endpoint.complete(job.request, max_retries=0, **params)

    return send_completion


def _jobs(
    df: pd.DataFrame,
    template: str | None,
    prompt_column: str | None,
    *,
    chat: bool,
    system: str | None,
    params: dict[str, Any],
    target: str,
    store: Checkpoint | None,
    columns: _Columns,
    tally: Tally,
) -> Iterator[Job]:
    """Render rows a chunk at a time; rows already answered in the checkpoint are filled, not sent."""
    from odsc_magics.templating import render, variables

    names = variables(template) if template is not None else (prompt_column,)
    values = [df[name] for name in names]
    key_params = {"chat": chat, "system": system, **params}
    for start in range(0, len(df), _CHUNK):
        stop = min(start + _CHUNK, len(df))
        chunk: list[Job] = []
        for position in range(start, stop):
            row = {name: column.iat[position] for name, column in zip(names, values, strict=True)}
            empty = [name for name, value in row.items() if _is_missing(value)]
            if empty:
                listed = ", ".join(map(repr, empty))
                chunk.append(Job(position, None, error=f"missing value in column {listed} for this row"))
                continue
            try:
                prompt = render(template, row) if template is not None else str(row[prompt_column])
            except errors.TemplateError as exc:
                chunk.append(Job(position, None, error=str(exc.message)))
                continue
            request: Any = prompt
            if chat:
                request = ([{"role": "system", "content": system}] if system else []) + [
                    {"role": "user", "content": prompt}
                ]
            key = row_key(request, key_params, target) if store is not None else None
            chunk.append(Job(position, request, key=key))
        done = store.done(job.key for job in chunk if job.key) if store is not None else {}
        for job in chunk:
            if job.key is not None and job.key in done:
                columns.put(job.position, Outcome(**done[job.key]))
                tally.resumed += 1
                tally.done += 1
                continue
            yield job


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        import pandas as pd

        return bool(pd.isna(value)) if not isinstance(value, str | bytes | list | dict | tuple) else False
    except (TypeError, ValueError):
        return False


class _Columns:
    """The output columns, filled in place as rows finish (no per-row objects kept)."""

    def __init__(self, size: int, output_column: str) -> None:
        self.output_column = output_column
        self.text: list[str | None] = [None] * size
        self.finish_reason: list[str | None] = [None] * size
        self.prompt_tokens: list[int | None] = [None] * size
        self.completion_tokens: list[int | None] = [None] * size
        self.latency_s: list[float | None] = [None] * size
        self.attempts: list[int] = [0] * size
        self.error: list[str | None] = [None] * size
        self.finished = bytearray(size)

    def put(self, position: int, outcome: Outcome) -> None:
        self.text[position] = outcome.text
        self.finish_reason[position] = outcome.finish_reason
        self.prompt_tokens[position] = outcome.prompt_tokens
        self.completion_tokens[position] = outcome.completion_tokens
        self.latency_s[position] = outcome.latency_s
        self.attempts[position] = outcome.attempts
        self.error[position] = outcome.error
        self.finished[position] = 1

    def first_error(self) -> str | None:
        return next((error for error in self.error if error), None)

    def frame(self, df: pd.DataFrame, *, note: str) -> pd.DataFrame:
        import pandas as pd

        errors_column = [
            error if finished else note for error, finished in zip(self.error, self.finished, strict=True)
        ]
        out = df.copy(deep=False)
        out[self.output_column] = pd.array(self.text, dtype="object")
        out["finish_reason"] = pd.array(self.finish_reason, dtype="object")
        out["prompt_tokens"] = pd.array(self.prompt_tokens, dtype="Int64")
        out["completion_tokens"] = pd.array(self.completion_tokens, dtype="Int64")
        out["latency_s"] = pd.array(self.latency_s, dtype="Float64")
        out["attempts"] = pd.array(self.attempts, dtype="Int64")
        out["error"] = pd.array(errors_column, dtype="object")
        return out


__all__ = ["BatchError", "BatchInterrupted", "last_partial", "predict_frame"]
