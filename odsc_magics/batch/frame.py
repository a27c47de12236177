"""`predict_frame`: one prompt per DataFrame row, answered at the endpoint's capacity, nothing lost."""

from __future__ import annotations

import math
import numbers
import os
import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from odsc_magics import errors
from odsc_magics.batch.checkpoint import Checkpoint, row_key
from odsc_magics.batch.progress import Progress
from odsc_magics.batch.runner import BatchRunner, Job, Outcome, describe_error
from odsc_magics.batch.typed_answers import TypedAnswers, typed_answers

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
    max_retries: int | None = None,
    output_column: str = "completion",
    on_error: str = "record",
    checkpoint: str | None = None,
    progress: bool = True,
    max_rps: float | None = None,
    prompt_column: str | None = None,
    schema: Any = None,
    choices: Sequence[str] | None = None,
    regex: str | None = None,
    **params: Any,
) -> pd.DataFrame:
    """Answer one prompt per row of ``df`` and return a copy of it with the answers added.

    The prompt is ``template`` rendered with the row's columns (``{{ column }}``, the same Jinja2 sandbox as
    ``%%llm_predict``), or the ready text of ``prompt_column``. ``system`` (which implies ``chat=True``, as
    ``--system`` does for the magics) is rendered with the row's columns the same way. The copy keeps
    ``df``'s index and order and adds ``output_column``, ``finish_reason``, ``prompt_tokens``,
    ``completion_tokens``, ``latency_s``, ``attempts`` and ``error`` (missing where the row succeeded).

    ``deployment`` is anything ``connect()`` accepts, or a ``Deployment``/``Endpoint`` (default: the kernel's
    default target). ``concurrency="auto"`` grows while requests succeed and backs off on 429/503 (honouring
    Retry-After); an int fixes it; ``max_rps`` caps the request rate. Failed attempts are retried up to
    ``max_retries`` times (default: the ``max_retries`` setting, `%config LLMMagics.max_retries`), as
    odsc_magics.retry classifies them (429, 408, 5xx but 501, dropped or truncated answers); other 4xx are not. With
    ``on_error="record"`` a row's last error goes into its ``error`` column; with ``"raise"``, the rows in
    flight finish and then one ``BatchError`` summarises the failures. When the endpoint refuses a few
    connections in a row (nothing listening), the batch stops sending: every row not answered gets that
    error, and ``on_error`` decides between returning the frame and raising ``BatchError``.

    ``checkpoint=PATH`` commits each finished row to a SQLite file as it finishes, keyed by a hash of
    (rendered prompt, parameters, deployment): calling again with the same arguments sends only the rows
    not yet answered.

    Interrupting (kernel interrupt / Ctrl-C) raises ``BatchInterrupted``, a ``KeyboardInterrupt`` whose
    ``.partial`` is the frame with every row finished so far; ``odsc_magics.last_partial()`` returns the same
    frame afterwards. ``params`` are generation parameters (``max_tokens``, ``temperature``, ...).

    Typed answers (vLLM's guided decoding): ``schema`` (a JSON-schema dict or a pydantic model class) puts each
    top-level field of an object in its own column (pandas nullable dtypes: string, Int64, Float64, boolean,
    categorical for a string enum; nested objects as dicts, arrays as lists); ``choices=[...]`` makes
    ``output_column`` categorical with exactly those categories; ``regex`` makes it a string column. An answer
    that does not fit is asked for once more, then its row fails with the text kept in a ``raw`` column.
    """
    global _last_partial
    check_arguments(df, template, prompt_column, system, params)
    check_options(concurrency, max_retries, on_error, output_column, max_rps, df)
    typed = typed_answers(schema, choices, regex, size=len(df), output_column=output_column, df=df,
                          reserved=OUTPUT_COLUMNS)  # fmt: skip
    if typed is not None:
        params = {**params, **typed.fmt.request_fields()}
    chat = bool(chat) or system is not None
    endpoint = resolve_endpoint(deployment)
    if max_retries is None:
        max_retries = max_retries_setting(endpoint)
    target = getattr(endpoint, "deployment_id", None) or getattr(endpoint, "url", "")
    store = open_checkpoint(checkpoint)
    send = request_sender(endpoint, chat=chat, params=params)
    if typed is not None:
        send = typed.sender(send)
    columns = OutputColumns(len(df), output_column, typed)
    lock = threading.Lock()

    def deliver(job: Job, outcome: Outcome) -> None:
        columns.put(job.position, outcome)
        if store is not None and job.key is not None and outcome.attempts:
            with lock:
                store.record(job.key, outcome.as_dict())

    runner = BatchRunner(
        send,
        deliver,
        concurrency=concurrency,
        max_retries=max_retries,
        max_rps=max_rps,
        stop_on_failure=on_error == "raise",
        latency_limit=_timeout_setting(endpoint, params),
    )
    runner.tally.total = len(df)
    jobs = row_jobs(
        df,
        template,
        prompt_column,
        chat=chat,
        system=system,
        params=params,
        target=target,
        store=store,
        columns=columns,
        resumed=runner.note_resumed,
    )
    bar = Progress(total=len(df), enabled=progress)
    runner.on_progress = bar.update
    try:
        tally = runner.run(jobs)
    except KeyboardInterrupt:
        bar.close(runner.tally, runner.limiter, interrupted=True)
        _last_partial = columns.frame(df, note="not answered: interrupted")
        # The store stays open: a request still in flight records its row when it lands.
        raise BatchInterrupted(_last_partial) from None
    except BaseException:
        bar.close(runner.tally, runner.limiter)
        if store is not None:
            store.close()
        raise
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
    if on_error == "raise" and runner.unreachable is not None:
        _last_partial = result
        raise BatchError(
            f"the batch stopped: {runner.unreachable}",
            hint="The rows answered before are in the error's .partial (and odsc_magics.last_partial()).",
            partial=result,
        )
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


def check_arguments(
    df: Any, template: Any, prompt_column: Any, system: Any, params: dict[str, Any]
) -> None:
    """What the prompts are made of: the frame, the template or prompt column, the system text, the params."""
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise errors.ValidationError(
            f"predict_frame needs a pandas DataFrame, not {type(df).__name__}",
            hint="Use series.llm.predict() for a Series of ready prompts.",
        )
    if template is not None and not isinstance(template, str):
        raise errors.ValidationError(
            f"template must be a str, not {type(template).__name__}",
            hint='e.g. predict_frame(df, "Summarise: {{ text }}")',
        )
    if system is not None and not isinstance(system, str):
        raise errors.ValidationError(
            f"system must be a str, not {type(system).__name__}",
            hint='e.g. system="Answer in {{ language }}." (rendered with each row, like the template)',
        )
    if (template is None) == (prompt_column is None):
        raise errors.ValidationError(
            "give either a template or prompt_column (one of them, not both)",
            hint='e.g. predict_frame(df, "Summarise: {{ text }}")',
        )
    named = prompt_column is None or (isinstance(prompt_column, Hashable) and prompt_column in df.columns)
    if not named:
        raise errors.ValidationError(
            f"prompt_column must name a column of the frame; there is no column {prompt_column!r}",
            hint=f"Columns: {_listed(df.columns)}",
        )
    for argument, text in (("template", template), ("system", system)):
        if not text:
            continue
        missing = [name for name in _variables(text) if name not in df.columns]
        if missing:
            raise errors.ValidationError(
                f"the {argument} reads {', '.join(map(repr, missing))}, which the frame has no column for",
                hint=f"Columns: {_listed(df.columns)}",
            )
    read = _names_read(template, prompt_column, system)
    duplicated = [name for name in read if int((df.columns == name).sum()) > 1]
    if duplicated:
        raise errors.ValidationError(
            f"the frame has more than one column named {', '.join(map(repr, duplicated))}, so the prompt "
            "cannot tell which to read",
            hint="Rename or drop the duplicates, e.g. df.loc[:, ~df.columns.duplicated()].",
        )
    if "stream" in params:
        raise errors.ValidationError(
            "stream is not a predict_frame option: each row's answer arrives whole",
            hint="Drop stream=...; use %%llm_predict --stream or Endpoint.stream_complete() to stream one prompt.",
        )
    timeout = params.get("timeout")
    if timeout is not None and not _positive_number(timeout):
        raise errors.ValidationError(f"timeout must be a number of seconds > 0, not {timeout!r}")


def check_options(
    concurrency: Any, max_retries: Any, on_error: Any, output_column: Any, max_rps: Any, df: pd.DataFrame
) -> None:
    """How the batch runs and where its answers go."""
    auto = isinstance(concurrency, str) and concurrency == "auto"
    if not auto and (not _whole(concurrency) or concurrency < 1):
        raise errors.ValidationError(f'concurrency must be "auto" or a whole number >= 1, not {concurrency!r}')
    if max_retries is not None and (not _whole(max_retries) or max_retries < 0):
        raise errors.ValidationError(f"max_retries must be a whole number >= 0, not {max_retries!r}")
    if not isinstance(on_error, str) or on_error not in ("record", "raise"):
        raise errors.ValidationError(f'on_error must be "record" or "raise", not {on_error!r}')
    if max_rps is not None and not _positive_number(max_rps):
        raise errors.ValidationError(f"max_rps must be > 0, or None for no cap (got {max_rps!r})")
    if not isinstance(output_column, str) or not output_column:
        raise errors.ValidationError(
            f"output_column must be a non-empty str, not {output_column!r}", hint='The default is "completion".'
        )
    check_output_columns(df, output_column, OUTPUT_COLUMNS, adder="predict_frame", example="answer")


def check_output_columns(
    df: pd.DataFrame, output_column: str, added: tuple[str, ...], *, adder: str, example: str
) -> None:
    """Refuse an output column that is one of the ``added`` ones, or any of them already in ``df``."""
    if output_column in added:
        raise errors.ValidationError(
            f"output_column {output_column!r} is one of the columns {adder} adds ({', '.join(added)})",
            hint=f'Pick another name, e.g. output_column="{example}".',
        )
    clash = [name for name in (output_column, *added) if name in df.columns]
    if clash:
        raise errors.ValidationError(
            f"the frame already has column(s) {', '.join(map(repr, clash))}",
            hint="Pass output_column= with another name, or drop those columns first.",
        )


def _timeout_setting(endpoint: Any, params: dict[str, Any]) -> float | None:
    """The read timeout the endpoint's client uses for these requests: answers must come well within it."""
    from odsc_magics.config import resolve

    value = resolve("timeout", params.get("timeout"), getattr(endpoint, "settings", None))[0]
    return float(value) if value else None


def max_retries_setting(endpoint: Any) -> int:
    """The ``max_retries`` setting as the endpoint's client reads it (argument > %config > env > default)."""
    from odsc_magics.config import resolve

    return int(resolve("max_retries", None, getattr(endpoint, "settings", None))[0])


def _whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _positive_number(value: Any) -> bool:
    return (
        isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


def _listed(columns: Any) -> str:
    return ", ".join(map(str, columns[:20])) + (" ..." if len(columns) > 20 else "")


def _variables(text: str) -> tuple[str, ...]:
    from odsc_magics.templating import variables

    return variables(text)


def _names_read(template: str | None, prompt_column: Any, system: str | None) -> tuple[Any, ...]:
    """The columns each row's prompt and system text are made of, each once, in order of appearance."""
    names: list[Any] = list(_variables(template)) if template is not None else [prompt_column]
    names += _variables(system) if system else ()
    return tuple(dict.fromkeys(names))


def resolve_endpoint(deployment: Any) -> Any:
    """The Endpoint a batch sends to: ``deployment`` as given (OCID, URL, name, Deployment, Endpoint) or the
    default deployment when None."""
    if deployment is not None and hasattr(deployment, "endpoint") and callable(deployment.endpoint):
        return deployment.endpoint()
    if deployment is not None and hasattr(deployment, "complete"):
        return deployment
    if deployment is not None and not isinstance(deployment, str):
        raise errors.ValidationError(
            f"deployment must be an OCID, URL or display name (str), a Deployment or an Endpoint, "
            f"not {type(deployment).__name__}",
            hint="Leave it out to use the default deployment (`%llm_deploy use NAME` sets it).",
        )
    from odsc_magics.client import connect

    return connect(deployment)


def open_checkpoint(path: Any) -> Checkpoint | None:
    """The batch's checkpoint at ``path`` (None: none), opened, or a clear error naming what is wrong with it."""
    if path is None or path == "":
        return None
    if not isinstance(path, str | os.PathLike):
        raise errors.ValidationError(
            f"checkpoint must be a file path (str or Path), not {type(path).__name__}",
            hint='e.g. checkpoint="runs/reviews.sqlite"',
        )
    return Checkpoint(path)


def request_sender(endpoint: Any, *, chat: bool, params: dict[str, Any]) -> Any:
    """One attempt per call: the runner decides retries and concurrency."""
    if chat:

        def send_chat(job: Job) -> Any:
            return endpoint.chat(job.request, max_retries=0, **params)

        return send_chat

    def send_completion(job: Job) -> Any:
        return endpoint.complete(job.request, max_retries=0, **params)

    return send_completion


def row_jobs(
    df: pd.DataFrame,
    template: str | None,
    prompt_column: Any,
    *,
    chat: bool,
    system: str | None,
    params: dict[str, Any],
    target: str,
    store: Checkpoint | None,
    columns: OutputColumns,
    resumed: Callable[[], None],
) -> Iterator[Job]:
    """Render rows a chunk at a time; rows already answered in the checkpoint are filled, not sent.

    The system text is a template too, rendered with the same row (as `%%llm_predict --system` is rendered
    with the notebook's names); text without ``{{ }}`` is sent as it is.
    """
    from odsc_magics.templating import render

    names = _names_read(template, prompt_column, system)
    values = [df[name] for name in names]
    key_params = {"chat": chat, "system": system, **params}
    for start in range(0, len(df), _CHUNK):
        stop = min(start + _CHUNK, len(df))
        chunk: list[Job] = []
        for position in range(start, stop):
            row = {name: column.iat[position] for name, column in zip(names, values, strict=True)}
            empty = [name for name, value in row.items() if is_missing(value)]
            if empty:
                listed = ", ".join(map(repr, empty))
                chunk.append(Job(position, None, error=f"missing value in column {listed} for this row"))
                continue
            try:
                prompt = render(template, row) if template is not None else str(row[prompt_column])
                system_text = render(system, row) if system else None
            except errors.TemplateError as exc:
                chunk.append(Job(position, None, error=str(exc.message)))
                continue
            request: Any = prompt
            if chat:
                request = ([{"role": "system", "content": system_text}] if system_text else []) + [
                    {"role": "user", "content": prompt}
                ]
            key = row_key(request, key_params, target) if store is not None else None
            chunk.append(Job(position, request, key=key))
        done = store.done(job.key for job in chunk if job.key) if store is not None else {}
        for job in chunk:
            if job.key is not None and job.key in done:
                columns.put(job.position, Outcome(**done[job.key]))
                resumed()
                continue
            yield job


def is_missing(value: Any) -> bool:
    """Whether a cell holds no value (None, NaN, pandas' NA/NaT): such a row is not sent."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        import pandas as pd

        return bool(pd.isna(value)) if not isinstance(value, str | bytes | list | dict | tuple) else False
    except (TypeError, ValueError):
        return False


class OutputColumns:
    """The output columns, filled in place as rows finish (no per-row objects kept)."""

    def __init__(self, size: int, output_column: str, typed: TypedAnswers | None = None) -> None:
        self.output_column = output_column
        self.typed = typed
        self.text: list[str | None] = [None] * size
        self.finish_reason: list[str | None] = [None] * size
        self.prompt_tokens: list[int | None] = [None] * size
        self.completion_tokens: list[int | None] = [None] * size
        self.latency_s: list[float | None] = [None] * size
        self.attempts: list[int] = [0] * size
        self.error: list[str | None] = [None] * size
        self.finished = bytearray(size)

    def put(self, position: int, outcome: Outcome) -> None:
        if self.typed is not None:
            self.typed.put(position, outcome)
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
        if self.typed is not None:
            self.typed.add_to(out, self.finished)
        else:
            out[self.output_column] = pd.array(self.text, dtype="object")
        out["finish_reason"] = pd.array(self.finish_reason, dtype="object")
        out["prompt_tokens"] = pd.array(self.prompt_tokens, dtype="Int64")
        out["completion_tokens"] = pd.array(self.completion_tokens, dtype="Int64")
        out["latency_s"] = pd.array(self.latency_s, dtype="Float64")
        out["attempts"] = pd.array(self.attempts, dtype="Int64")
        out["error"] = pd.array(errors_column, dtype="object")
        if self.typed is not None:
            self.typed.add_raw(out)
        return out


__all__ = ["BatchError", "BatchInterrupted", "last_partial", "predict_frame"]
