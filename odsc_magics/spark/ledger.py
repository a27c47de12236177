"""predict_spark's checkpoint: small write-once Parquet files of finished rows, one series per task attempt.

Layout: ``CHECKPOINT/<run>/<partition>/<task attempt>-<seq>.parquet``. Nothing is ever renamed or rewritten
(object stores have no rename): a task attempt only creates new files, and a retry of the same task reads
what its earlier attempts created under the same partition. A file cut short by a killed worker on a local
disk cannot be read and is ignored (its rows count as not finished); an object store's PUT is all or nothing.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from odsc_magics.spark.storage import Storage

if TYPE_CHECKING:
    import pandas as pd

STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_EXHAUSTED = "retries_exhausted"
STATUSES = (STATUS_OK, STATUS_ERROR, STATUS_EXHAUSTED)

# Record fields beside row_key and status, as batch.runner.Outcome names them.
OUTCOME_FIELDS = ("text", "finish_reason", "prompt_tokens", "completion_tokens", "latency_s", "attempts", "error")
FLUSH_SECONDS = 0.5  # the longest a finished row waits before it is in a file


def record_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("row_key", pa.string()),
            ("status", pa.string()),
            ("text", pa.string()),
            ("finish_reason", pa.string()),
            ("prompt_tokens", pa.int64()),
            ("completion_tokens", pa.int64()),
            ("latency_s", pa.float64()),
            ("attempts", pa.int64()),
            ("error", pa.string()),
            ("finished_at", pa.float64()),
        ]
    )


def spark_record_schema() -> str:
    """The same record schema as a Spark DDL string (the schema of the checkpoint's records read back on a re-run)."""
    return (
        "row_key STRING, status STRING, text STRING, finish_reason STRING, prompt_tokens BIGINT, "
        "completion_tokens BIGINT, latency_s DOUBLE, attempts BIGINT, error STRING, finished_at DOUBLE"
    )


class Ledger:
    """The checkpoint directory of one predict_spark run (``run``) and what earlier runs left in it."""

    def __init__(self, checkpoint: str, run: str) -> None:
        self.storage = Storage(checkpoint)
        self.run = run

    def partition_dir(self, partition: int) -> str:
        return self.storage.join(self.run, f"{partition:05d}")

    def run_dir(self) -> str:
        return self.storage.join(self.run)

    def earlier(self, partition: int, *also: int) -> dict[str, dict[str, Any]]:
        """Rows that earlier attempts of this task (and of the ``also`` partitions) finished in this run, by key
        (an ``ok`` record wins)."""
        paths = [path for number in (partition, *also) for path in self.storage.list(self.partition_dir(number))]
        return latest(read_records(self.storage, paths))

    def writer(self, partition: int, task_attempt: int, *, flush_rows: int) -> LedgerWriter:
        prefix = f"{task_attempt:010d}"
        return LedgerWriter(self.storage, self.partition_dir(partition), prefix, flush_rows=flush_rows)


def read_records(storage: Storage, paths: Iterable[str]) -> list[dict[str, Any]]:
    """The records of readable files; a file a killed writer left cut short is skipped."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    records: list[dict[str, Any]] = []
    for path in paths:
        try:
            table = pq.read_table(io.BytesIO(storage.read(path)))
        except (pa.ArrowInvalid, OSError):
            continue
        records.extend(table.to_pylist())
    return records


def answered_frame(spark: Any, checkpoint: str, paths: list[str], partitions: int) -> Any:
    """The ``ok`` records of the checkpoint files ``paths`` as a Spark DataFrame, one per row_key.

    The Python workers read them, through the same file system that wrote them: the JVM needs no connector of
    its own for the checkpoint's store (s3a:// without hadoop-aws, say), and one set of credentials serves both.
    """
    files = spark.createDataFrame([(path,) for path in paths], "path STRING")
    files = files.repartition(max(1, min(partitions, len(paths))))
    return files.mapInPandas(ReadAnswered(checkpoint), spark_record_schema()).dropDuplicates(["row_key"])


@dataclass(frozen=True)
class ReadAnswered:
    """mapInPandas function: the ``ok`` records of the checkpoint files its input's ``path`` column names."""

    checkpoint: str

    def __call__(self, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd
        import pyarrow as pa

        storage = Storage(self.checkpoint)
        nullable = {pa.int64(): pd.Int64Dtype(), pa.float64(): pd.Float64Dtype()}
        for frame in batches:
            records = [r for r in read_records(storage, frame["path"].tolist()) if r["status"] == STATUS_OK]
            if records:
                table = pa.Table.from_pylist(records, schema=record_schema())
                yield table.to_pandas(types_mapper=nullable.get)


def latest(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One record per key: an ``ok`` one if there is any, else the last finished."""
    chosen: dict[str, dict[str, Any]] = {}
    for record in records:
        key = record["row_key"]
        held = chosen.get(key)
        later = held is not None and (record.get("finished_at") or 0) >= (held.get("finished_at") or 0)
        if held is None or (held["status"] != STATUS_OK and (record["status"] == STATUS_OK or later)):
            chosen[key] = record
    return chosen


class LedgerWriter:
    """Buffers finished rows and writes them as a new file when ``flush_rows`` are waiting (at once, by the
    thread that adds the last) or the oldest has waited FLUSH_SECONDS (by a background thread). A killed attempt
    loses at most the rows in flight and the rows waiting here."""

    def __init__(self, storage: Storage, directory: str, prefix: str, *, flush_rows: int) -> None:
        self.storage = storage
        self.directory = directory
        self.prefix = prefix
        self.flush_rows = max(1, flush_rows)
        self.files = 0
        self.rows = 0
        self._buffer: list[dict[str, Any]] = []
        self._oldest = 0.0
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._closed = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="odsc-ledger", daemon=True)
        self._thread.start()

    def add(self, record: dict[str, Any]) -> None:
        """Queue one finished row; raises if an earlier write failed (the task must not go on unrecorded)."""
        if self.error is not None:
            raise self.error
        with self._cond:
            if not self._buffer:
                self._oldest = time.monotonic()
            self._buffer.append({**record, "finished_at": time.time()})
            full = len(self._buffer) >= self.flush_rows
        if full:  # written by the delivering thread itself: finished rows never pile up behind a slow store
            self._flush()
            if self.error is not None:
                raise self.error

    def _take(self) -> list[dict[str, Any]]:
        with self._cond:
            rows, self._buffer = self._buffer, []
        return rows

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if self._buffer and time.monotonic() - self._oldest >= FLUSH_SECONDS:
                        break
                    self._cond.wait(timeout=0.05)
                if self._closed:
                    return
            self._flush()

    def _flush(self) -> None:
        with self._write_lock:
            rows = self._take()
            if not rows:
                return
            try:
                self._write(rows)
            except BaseException as exc:
                self.error = self.error or exc

    def _write(self, rows: list[dict[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = record_schema()
        table = pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows], schema=schema)
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="snappy")
        path = f"{self.directory}/{self.prefix}-{self.files:06d}.parquet"
        self.storage.write_once(path, sink.getvalue())
        self.files += 1
        self.rows += len(rows)

    def close(self) -> None:
        """Write what is left and stop; raises the first write error."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        self._flush()
        if self.error is not None:
            raise self.error
