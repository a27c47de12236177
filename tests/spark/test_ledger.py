"""The checkpoint's write-once Parquet files: what a task attempt writes, and what a later attempt reads."""

from __future__ import annotations

import os
import time

import pytest

from odsc_magics.spark import ledger as ledger_module
from odsc_magics.spark.ledger import Ledger, latest
from odsc_magics.spark.storage import Storage


def record(key: str, status: str = "ok", finished_at: float = 0.0, **fields) -> dict:
    return {"row_key": key, "status": status, "text": f"answer {key}", "attempts": 1, "finished_at": finished_at,
            **fields}  # fmt: skip


def test_an_attempt_writes_new_files_and_a_later_attempt_of_the_task_reads_them(tmp_path):
    ledger = Ledger(str(tmp_path / "ck"), "run1")
    writer = ledger.writer(3, task_attempt=17, flush_rows=2)
    for key in "abcde":
        writer.add(record(key))
    writer.close()
    files = sorted(os.listdir(tmp_path / "ck" / "run1" / "00003"))
    assert files == [f"0000000017-{n:06d}.parquet" for n in range(len(files))] and len(files) >= 3
    assert set(ledger.earlier(3)) == set("abcde")
    assert ledger.earlier(3)["c"]["text"] == "answer c"
    assert ledger.earlier(2) == {}  # another task's rows are not this task's
    assert Ledger(str(tmp_path / "ck"), "run2").earlier(3) == {}  # nor another run's


def test_rows_wait_at_most_the_flush_interval_before_they_are_in_a_file(tmp_path):
    ledger = Ledger(str(tmp_path / "ck"), "run")
    writer = ledger.writer(0, task_attempt=1, flush_rows=1000)
    writer.add(record("a"))
    deadline = time.monotonic() + ledger_module.FLUSH_SECONDS + 2.0
    while not ledger.earlier(0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(ledger.earlier(0)) == {"a"}
    writer.close()


def test_files_are_never_overwritten(tmp_path):
    storage = Storage(str(tmp_path))
    storage.write_once(str(tmp_path / "x" / "f.parquet"), b"first")
    with pytest.raises(FileExistsError):
        storage.write_once(str(tmp_path / "x" / "f.parquet"), b"second")
    assert storage.read(str(tmp_path / "x" / "f.parquet")) == b"first"


def test_a_file_cut_short_by_a_killed_worker_counts_as_not_written(tmp_path):
    ledger = Ledger(str(tmp_path / "ck"), "run")
    writer = ledger.writer(0, task_attempt=1, flush_rows=1)
    writer.add(record("a"))
    writer.close()
    (good,) = os.listdir(tmp_path / "ck" / "run" / "00000")
    data = (tmp_path / "ck" / "run" / "00000" / good).read_bytes()
    (tmp_path / "ck" / "run" / "00000" / "0000000002-000000.parquet").write_bytes(data[: len(data) // 2])
    assert set(ledger.earlier(0)) == {"a"}


def test_a_write_that_fails_fails_the_task(tmp_path):
    (tmp_path / "ck").write_text("a file where the checkpoint directory should be")
    writer = Ledger(str(tmp_path / "ck"), "run").writer(0, task_attempt=1, flush_rows=1)
    with pytest.raises(OSError):  # NotADirectoryError, from the add that fills the buffer
        writer.add(record("a"))
    with pytest.raises(OSError):
        writer.close()


def test_an_ok_record_wins_over_failures_and_the_last_failure_over_earlier_ones():
    chosen = latest([record("k", "error", 1.0, error="first"), record("k", "ok", 2.0),
                     record("k", "retries_exhausted", 3.0), record("j", "error", 1.0, error="old"),
                     record("j", "retries_exhausted", 2.0, error="new")])  # fmt: skip
    assert chosen["k"]["status"] == "ok"
    assert chosen["j"]["error"] == "new"
