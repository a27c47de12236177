"""`embed_frame`: a DataFrame column of texts into a column of float32 vectors, many texts per request.

Texts are packed into requests within the serving container's limits (texts per request, tokens per request,
bytes per body; odsc_magics.embedding_models and predict_limits say which and why) and sent through the same
BatchRunner as ``predict_frame``: one job per request, the same adaptive concurrency, retries, checkpoint and
progress. The vectors land in one float32 matrix allocated once; the result column holds views of its rows,
so the memory of a run stays near the size of the result.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from odsc_magics import errors
from odsc_magics.batch.checkpoint import Checkpoint, row_key
from odsc_magics.batch.progress import Progress
from odsc_magics.batch.runner import BatchRunner, Job, Outcome, Tally, describe_error
from odsc_magics.embedding_models import (
    MAX_BATCH_TOKENS,
    MAX_CLIENT_BATCH_SIZE,
    SPECIAL_TOKENS,
    TEI_CONTAINER,
    TEI_PAYLOAD_LIMIT,
    find,
)
from odsc_magics.predict_limits import PAYLOAD_LIMIT_BYTES, TENANCY_RPS

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["EmbeddingLimits", "embed_frame"]

OUTPUT_COLUMNS = ("attempts", "error")
_CHUNK = 4096  # rows read, counted and looked up in the checkpoint at a time
_BODY_OVERHEAD = 200  # bytes of a request body besides its texts ({"model", "encoding_format", ...})
_ITEM_OVERHEAD = 3  # the comma and quotes json adds around each text (json.dumps counts the escapes)
_DEFAULT_MAX_INPUT = 512


@dataclass(frozen=True)
class EmbeddingLimits:
    """What one request may carry, and where each limit comes from."""

    texts: int  # texts per request
    tokens: int  # estimated tokens per request
    body_bytes: int  # bytes of the request body
    input_tokens: int  # tokens of one text (the server refuses more)
    dimension: int | None  # numbers per vector, when the model is known
    why: str  # one line: the choice and its sources

    def describe(self) -> str:
        return self.why


def limits_for(model_name: str | None, image: str | None, batch_size: Any) -> EmbeddingLimits:
    """The limits of a deployment of ``model_name`` on ``image`` (either may be unknown) and the batch size asked."""
    model = find(model_name)
    tei = image is None or f"{TEI_CONTAINER}:" in image or image.endswith(TEI_CONTAINER)
    body = min(PAYLOAD_LIMIT_BYTES, TEI_PAYLOAD_LIMIT) if tei else PAYLOAD_LIMIT_BYTES
    input_tokens = model.max_input_tokens if model else _DEFAULT_MAX_INPUT
    body_source = "TEI's payload_limit" if tei else "the platform's 10 MB payload limit"
    if batch_size == "auto":
        texts = MAX_CLIENT_BATCH_SIZE
        why = (
            f"batch_size='auto': up to {texts} texts per request (TEI's max_client_batch_size), "
            f"{MAX_BATCH_TOKENS} tokens (TEI's max_batch_tokens) and {body:,} bytes "
            f"({body_source})"
        )
    else:
        texts = int(batch_size)
        why = f"batch_size={texts}: up to {texts} texts, {MAX_BATCH_TOKENS} tokens and {body:,} bytes per request"
    return EmbeddingLimits(
        texts=texts,
        tokens=MAX_BATCH_TOKENS,
        body_bytes=body,
        input_tokens=input_tokens,
        dimension=model.dimension if model else None,
        why=why + (f"; {model.name}: {model.dimension} dimensions" if model else ""),
    )


@dataclass
class _Batch:
    """The rows of one request and, once answered, their vectors and errors (bisection may split them)."""

    positions: list[int]
    texts: list[str]
    keys: list[str | None]
    tokens: int = 0
    vectors: dict[int, Any] = field(default_factory=dict)  # index in the batch -> vector
    errors: dict[int, str] = field(default_factory=dict)
    requests: int = 0


class _Reply:
    """What the runner reads from a finished request (it takes usage and latency; vectors stay in the batch)."""

    text = None
    finish_reason = None

    def __init__(self, usage: dict, latency_s: float) -> None:
        self.usage = usage
        self.latency_s = latency_s


def embed_frame(
    df: pd.DataFrame,
    column: Any,
    *,
    deployment: Any = None,
    output_column: str = "embedding",
    batch_size: int | str = "auto",
    concurrency: int | str = "auto",
    max_retries: int | None = None,
    on_error: str = "record",
    checkpoint: str | None = None,
    progress: bool = True,
    max_rps: float | None = TENANCY_RPS,
    dry_run: bool = False,
    **params: Any,
) -> Any:
    """The vector of each row's text in ``column``: a copy of ``df`` with ``output_column``, ``attempts``, ``error``.

    ``output_column`` holds float32 numpy arrays (views of one matrix), None where the row failed; ``error``
    says why (a missing or empty text is not sent; a text the server refuses, e.g. too long, gets the server's
    message — the other texts of its request are sent again without it). ``batch_size="auto"`` packs as many
    texts per request as the serving container takes (TEI: 32 texts, 16,384 tokens, 2,000,000 bytes; the
    platform: 10 MB), and says so in the summary; an int caps the texts per request. ``deployment``,
    ``concurrency``, ``max_retries``, ``on_error``, ``checkpoint`` and ``progress`` work as for
    ``predict_frame``. ``max_rps`` defaults to the platform's 150 requests/s per tenancy: embedding requests are
    short, so the tenancy's rate, not the model server, is the limit a batch meets first (None: no cap).
    ``params`` are further request fields (e.g. ``dimensions``). ``dry_run=True`` sends
    nothing and returns the plan: rows, requests, the limits and the first request as it would be sent.
    """
    from odsc_magics.batch import frame as frames

    _check(df, column, output_column, batch_size, dry_run)
    frames.check_options(concurrency, max_retries, on_error, "completion", max_rps, df.iloc[:0, :0])
    _check_output(df, output_column)
    endpoint = frames.resolve_endpoint(deployment)
    limits = limits_for(*_served_model(deployment, endpoint), batch_size)
    if dry_run:
        return _plan(df, column, endpoint, limits, params)
    if max_retries is None:
        max_retries = frames.max_retries_setting(endpoint)
    target = getattr(endpoint, "deployment_id", None) or getattr(endpoint, "url", "")
    store = frames.open_checkpoint(checkpoint)
    result = _Vectors(len(df), limits.dimension)
    rows = Tally(total=len(df))
    requests = [0]
    lock = threading.Lock()

    def deliver(job: Job, outcome: Outcome) -> None:
        batch: _Batch = job.request
        finished = []
        with lock:
            requests[0] += batch.requests
            for index, position in enumerate(batch.positions):
                error = outcome.error or batch.errors.get(index)
                vector = None if error else batch.vectors.get(index)
                if error is None and vector is None:
                    error = "no vector came back for this text"
                if vector is not None:
                    error = result.put(position, vector)
                    vector = None if error else vector
                result.done(position, error, outcome.attempts)
                if error:
                    rows.failed += 1
                    rows.failures[_failure_kind(outcome, error)] += 1
                else:
                    rows.done += 1
                finished.append((batch.keys[index], vector, error))
            rows.tokens += (outcome.prompt_tokens or 0) if outcome.error is None else 0
        if store is not None and outcome.attempts:
            store.record_many(
                (key, _stored(vector, error, outcome)) for key, vector, error in finished if key is not None
            )

    runner = BatchRunner(
        _sender(endpoint, params),
        deliver,
        concurrency=concurrency,
        max_retries=max_retries,
        max_rps=max_rps,
        stop_on_failure=on_error == "raise",
    )
    bar = Progress(total=len(df), enabled=progress)
    runner.on_progress = lambda _tally, limiter: bar.update(rows, limiter)
    jobs = _jobs(df, column, limits, params, target, store, result, rows, lock)

    def close(interrupted: bool = False) -> dict[str, Any]:
        rows.requests, rows.throttled = requests[0], runner.tally.throttled
        rows.busy_seconds, rows.retrying = runner.tally.busy_seconds, runner.tally.retrying
        summary = bar.close(rows, runner.limiter, interrupted=interrupted)
        summary.update(_extra_summary(limits, result))
        return summary

    try:
        runner.run(jobs)
    except KeyboardInterrupt:
        close(interrupted=True)
        frames._last_partial = result.frame(df, output_column, note="not embedded: interrupted")
        raise frames.BatchInterrupted(frames._last_partial) from None
    except BaseException:
        close()
        if store is not None:
            store.close()
        raise
    summary = close()
    if store is not None:
        store.close()
    out = result.frame(df, output_column, note="not embedded: the batch stopped")
    out.attrs["odsc_magics"] = summary
    _raise_for(runner, rows, on_error, out, result)
    return out


def _raise_for(runner: BatchRunner, rows: Tally, on_error: str, out: pd.DataFrame, result: _Vectors) -> None:
    from odsc_magics.batch import frame as frames

    failure = None
    if runner.fatal is not None:
        failure = frames.BatchError(
            f"the batch stopped: {describe_error(runner.fatal)}",
            hint=getattr(runner.fatal, "hint", "") or "",
            partial=out,
        )
    elif on_error == "raise" and runner.unreachable is not None:
        failure = frames.BatchError(
            f"the batch stopped: {runner.unreachable}",
            hint="The rows embedded before are in the error's .partial (and odsc_magics.last_partial()).",
            partial=out,
        )
    elif on_error == "raise" and rows.failed:
        kinds = ", ".join(f"{count} × {kind}" for kind, count in rows.failures.most_common())
        failure = frames.BatchError(
            f"{rows.failed} row(s) failed ({kinds}); first: {result.first_error()}",
            hint="The finished rows are in the error's .partial (and odsc_magics.last_partial()); "
            'use on_error="record" to keep going past failures.',
            partial=out,
        )
    if failure is not None:
        frames._last_partial = out
        raise failure from runner.fatal


def _failure_kind(outcome: Outcome, error: str) -> str:
    if outcome.error is None:
        return "refused text"
    return error.split(":", 1)[0] if error.startswith("HTTP ") else "error"


def _stored(vector: Any, error: str | None, outcome: Outcome) -> dict[str, Any]:
    """A row as the checkpoint keeps it: the vector as base64 float32 in ``text``."""
    packed = base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii") if vector is not None else None
    return {"text": packed, "latency_s": outcome.latency_s, "attempts": outcome.attempts, "error": error}


def _extra_summary(limits: EmbeddingLimits, result: _Vectors) -> dict[str, Any]:
    return {
        "batch_size": limits.texts,
        "batching": limits.why,
        "dimension": result.dimension,
        "result_bytes": result.nbytes,
    }


# ------------------------------------------------------------------------------------------- arguments


def _check(df: Any, column: Any, output_column: Any, batch_size: Any, dry_run: Any) -> None:
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise errors.ValidationError(
            f"embed_frame needs a pandas DataFrame, not {type(df).__name__}",
            hint="Use series.llm.embed() for a Series of texts.",
        )
    try:
        present = column in df.columns
    except TypeError:
        present = False
    if not present:
        raise errors.ValidationError(
            f"column must name a column of the frame; there is no column {column!r}",
            hint=f"Columns: {', '.join(map(str, df.columns[:20]))}",
        )
    if int((df.columns == column).sum()) > 1:
        raise errors.ValidationError(
            f"the frame has more than one column named {column!r}, so the texts cannot be told apart",
            hint="Rename or drop the duplicates, e.g. df.loc[:, ~df.columns.duplicated()].",
        )
    if not isinstance(output_column, str) or not output_column:
        raise errors.ValidationError(
            f"output_column must be a non-empty str, not {output_column!r}", hint='The default is "embedding".'
        )
    auto = isinstance(batch_size, str) and batch_size == "auto"
    whole = isinstance(batch_size, int) and not isinstance(batch_size, bool)
    if not auto and not (whole and batch_size >= 1):
        raise errors.ValidationError(
            f'batch_size must be "auto" or a whole number >= 1, not {batch_size!r}',
            hint=f'"auto" sends up to {MAX_CLIENT_BATCH_SIZE} texts per request (the TEI container\'s limit).',
        )
    if not isinstance(dry_run, bool):
        raise errors.ValidationError(f"dry_run must be True or False, not {dry_run!r}")


def _check_output(df: pd.DataFrame, output_column: str) -> None:
    from odsc_magics.batch.frame import check_output_columns

    check_output_columns(df, output_column, OUTPUT_COLUMNS, adder="embed_frame", example="vector")


def _served_model(deployment: Any, endpoint: Any) -> tuple[str | None, str | None]:
    """(model name, container image) of the target, read from the control plane when the target names one."""
    raw = getattr(deployment, "raw", None)
    deployment_id = getattr(endpoint, "deployment_id", None)
    context = getattr(endpoint, "context", None)
    if raw is None and deployment_id and context is not None:
        try:
            raw = context.call(
                "Reading the model deployment", context.data_science().get_model_deployment, deployment_id
            ).data
        except errors.OdscMagicsError:
            raw = None
    if raw is None:
        return None, None
    config = getattr(raw, "model_deployment_configuration_details", None)
    image = getattr(getattr(config, "environment_configuration_details", None), "image", None)
    return (raw.freeform_tags or {}).get("aqua_model_name"), image


# ------------------------------------------------------------------------------------------- sending


def _sender(endpoint: Any, params: dict[str, Any]) -> Callable[[Job], Any]:
    """One attempt per job: its texts in one request; a text the server refuses is found by halving."""
    import time

    from odsc_magics.embedding_wire import build_embedding_request, decode_vectors, embed_once, resolve_setting
    from odsc_magics.retry import Retry, classify_failure

    read_timeout = float(resolve_setting(endpoint, "timeout", params.get("timeout")))
    body_params = {k: v for k, v in params.items() if k not in ("timeout", "max_retries")}

    def request(batch: _Batch, indices: list[int]) -> dict:
        batch.requests += 1
        texts = [batch.texts[i] for i in indices]
        sent = build_embedding_request(endpoint, texts, **body_params)
        try:
            _, payload = embed_once(endpoint, sent, read_timeout=read_timeout)
        except Retry as signal:  # the single call's retry signal: here the runner retries (and throttles)
            raise signal.error from None
        vectors = decode_vectors(payload, len(indices), endpoint.label)
        for index, vector in zip(indices, vectors, strict=True):
            batch.vectors[index] = vector
        return payload.get("usage") or {}

    def into(batch: _Batch, indices: list[int]) -> int:
        try:
            return int(request(batch, indices).get("prompt_tokens") or 0)
        except Exception as exc:
            if classify_failure(exc).action != "final":
                raise  # retried, throttled or fatal: the runner decides for the whole job
            if len(indices) == 1:
                batch.errors[indices[0]] = describe_error(exc)
                return 0
            half = len(indices) // 2
            return into(batch, indices[:half]) + into(batch, indices[half:])

    def send(job: Job) -> _Reply:
        batch: _Batch = job.request
        batch.vectors.clear()
        batch.errors.clear()
        started = time.perf_counter()
        tokens = into(batch, list(range(len(batch.texts))))
        return _Reply({"prompt_tokens": tokens}, time.perf_counter() - started)

    return send


# ------------------------------------------------------------------------------------------- jobs


def _texts(df: pd.DataFrame, column: Any, start: int, stop: int) -> Iterator[tuple[int, str | None, str | None]]:
    """(position, text, error) of each row: a missing or empty text is an error of its own."""
    from odsc_magics.batch.frame import is_missing

    values = df[column]
    for position in range(start, stop):
        value = values.iat[position]
        if is_missing(value):
            yield position, None, f"missing value in column {column!r} for this row"
            continue
        text = value if isinstance(value, str) else str(value)
        if not text:
            yield position, None, "empty text: there is nothing to embed"
            continue
        yield position, text, None


def _cost(text: str) -> tuple[int, int]:
    """(estimated tokens, bytes in the body) of one text: the builtin tokenizer's count plus the special tokens."""
    from odsc_magics.local.tokens import count_tokens

    return count_tokens(text) + SPECIAL_TOKENS, len(json.dumps(text)) + _ITEM_OVERHEAD


def _pack(items: list[tuple[int, str, str | None]], limits: EmbeddingLimits) -> Iterator[_Batch]:
    """Requests within the limits, rows in order; a text over the limits alone goes in a request of its own."""
    batch = _Batch([], [], [])
    size = _BODY_OVERHEAD
    for position, text, key in items:
        tokens, nbytes = _cost(text)
        alone = tokens > limits.input_tokens or tokens > limits.tokens or nbytes + _BODY_OVERHEAD > limits.body_bytes
        full = batch.positions and (
            len(batch.positions) >= limits.texts
            or batch.tokens + tokens > limits.tokens
            or size + nbytes > limits.body_bytes
            or alone
        )
        if full:
            yield batch
            batch, size = _Batch([], [], []), _BODY_OVERHEAD
        batch.positions.append(position)
        batch.texts.append(text)
        batch.keys.append(key)
        batch.tokens += tokens
        size += nbytes
        if alone:
            yield batch
            batch, size = _Batch([], [], []), _BODY_OVERHEAD
    if batch.positions:
        yield batch


def _jobs(
    df: pd.DataFrame,
    column: Any,
    limits: EmbeddingLimits,
    params: dict[str, Any],
    target: str,
    store: Checkpoint | None,
    result: _Vectors,
    rows: Tally,
    lock: threading.Lock,
) -> Iterator[Job]:
    """Jobs a chunk of rows at a time; rows refused before sending and rows found in the checkpoint are filled."""
    number = 0
    key_params = {"embedding": True, **{k: v for k, v in params.items() if k not in ("timeout", "max_retries")}}
    for start in range(0, len(df), _CHUNK):
        chunk: list[tuple[int, str, str | None]] = []
        for position, text, error in _texts(df, column, start, min(start + _CHUNK, len(df))):
            if error is not None:
                with lock:
                    result.done(position, error, 0)
                    rows.failed += 1
                    rows.failures["refused text"] += 1
                continue
            key = row_key(text, key_params, target) if store is not None else None
            chunk.append((position, text, key))
        if store is not None:
            found = store.done(key for _, _, key in chunk if key)
            remaining = []
            for position, text, key in chunk:
                row = found.get(key) if key else None
                if row is None or not row.get("text"):
                    remaining.append((position, text, key))
                    continue
                vector = _unpacked(row["text"])
                with lock:
                    error = result.put(position, vector)
                    result.done(position, error, int(row.get("attempts") or 0))
                    rows.resumed += 1
                    rows.done += 1
            chunk = remaining
        for batch in _pack(chunk, limits):
            yield Job(number, batch)
            number += 1


def _unpacked(packed: str) -> np.ndarray:
    import numpy as np

    return np.frombuffer(base64.b64decode(packed), dtype="<f4")


def _plan(df: pd.DataFrame, column: Any, endpoint: Any, limits: EmbeddingLimits, params: dict) -> dict[str, Any]:
    """What embed_frame would send (nothing is sent): rows, requests, rows refused up front, the first request."""
    requests, first, refused, tokens = 0, None, 0, 0
    for start in range(0, len(df), _CHUNK):
        chunk = []
        for position, text, error in _texts(df, column, start, min(start + _CHUNK, len(df))):
            if error is not None:
                refused += 1
            else:
                chunk.append((position, text, None))
        for batch in _pack(chunk, limits):
            requests += 1
            tokens += batch.tokens
            if first is None:
                first = endpoint.build_embedding_request(batch.texts, **params)
    return {
        "rows": len(df),
        "refused_before_sending": refused,
        "requests": requests,
        "estimated_tokens": tokens,
        "batch_size": limits.texts,
        "batching": limits.why,
        "dimension": limits.dimension,
        "result_bytes": len(df) * limits.dimension * 4 if limits.dimension else None,
        "first_request": first,
    }


# ------------------------------------------------------------------------------------------- the result


class _Vectors:
    """One float32 matrix for every row (allocated at the first vector), with attempts and errors per row."""

    def __init__(self, size: int, dimension: int | None) -> None:
        self.size = size
        self.dimension = dimension
        self.matrix: np.ndarray | None = None
        self.ok = bytearray(size)
        self.finished = bytearray(size)
        self.attempts = [0] * size
        self.errors: list[str | None] = [None] * size

    @property
    def nbytes(self) -> int:
        return 0 if self.matrix is None else int(self.matrix.nbytes)

    def put(self, position: int, vector: np.ndarray) -> str | None:
        """Store a row's vector; the error when its length differs from the others'."""
        import numpy as np

        if self.matrix is None:
            self.dimension = int(vector.shape[0])
            self.matrix = np.zeros((self.size, self.dimension), dtype=np.float32)  # pages come as rows land
        if vector.shape != (self.dimension,):
            return f"the server sent {vector.shape[0]} numbers for this text, {self.dimension} for others"
        self.matrix[position] = vector
        self.ok[position] = 1
        return None

    def done(self, position: int, error: str | None, attempts: int) -> None:
        if error is not None:
            self.ok[position] = 0
        self.errors[position] = error
        self.attempts[position] = attempts
        self.finished[position] = 1

    def first_error(self) -> str | None:
        return next((error for error in self.errors if error), None)

    def frame(self, df: pd.DataFrame, output_column: str, *, note: str) -> pd.DataFrame:
        import numpy as np
        import pandas as pd

        column = np.empty(self.size, dtype=object)
        if self.matrix is not None:
            rows = list(self.matrix)  # views of the matrix's rows: no copy of the numbers
            for position in range(self.size):
                if self.ok[position]:
                    column[position] = rows[position]
        errors_column = [
            error if finished else note for error, finished in zip(self.errors, self.finished, strict=True)
        ]
        out = df.copy(deep=False)
        out[output_column] = pd.Series(column, index=df.index, dtype=object)
        out["attempts"] = pd.array(self.attempts, dtype="Int64")
        out["error"] = pd.array(errors_column, dtype="object")
        return out
