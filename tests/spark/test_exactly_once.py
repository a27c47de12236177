"""Exactly once per row under faults, a Python worker killed mid-task, and a driver interrupted half way."""

from __future__ import annotations

import os
import signal
import threading
import time

import pyarrow.parquet as pq
import pytest
from conftest import SPARK_FLAGS

from odsc_magics.batch.frame import BatchError
from odsc_magics.client import connect
from odsc_magics.config import LLMSettings
from odsc_magics.spark import predict_spark
from odsc_magics.spark.budget import split
from odsc_magics.spark.partition import flush_rows

FAULTS = ("--fault", "429:0.05", "--fault", "500:0.03", "--fault", "reset:0.02", "--fault", "cut:0.02",
          "--seed", "5")  # fmt: skip
# About one request in seven fails: with more retries than the default six, a row whose every try fails
# (a one-in-a-thousand run at this rate) does not stand in for a lost row.
RETRIES = 10
SLOW = ("--ttft-ms", "30")  # each answer takes a while, so that a task is still running when it is killed


def endpoint_of(backend, deployment=None):
    deployment = deployment or backend.deployment
    return connect(deployment["url"], settings=LLMSettings(backend="local", local_dir=str(backend.state_dir)))


def reviews(spark, rows: int, partitions: int = 4):
    data = [(n, f"Review number {n} of a kettle") for n in range(rows)]
    return spark.createDataFrame(data, "review_id INT, text STRING").repartition(partitions)


def checkpoint_records(directory) -> list[dict]:
    records = []
    for folder, _, names in os.walk(directory):
        for name in names:
            try:
                records.extend(pq.read_table(os.path.join(folder, name)).to_pylist())
            except Exception:  # a file being written, or cut short by a killed worker
                continue
    return records


def _process_table() -> dict[int, tuple[int, bytes]]:
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                command = fh.read().replace(b"\0", b" ")
            with open(f"/proc/{entry}/stat") as fh:
                parent = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        table[int(entry)] = (parent, command)
    return table


def busy_python_workers(port: int) -> list[int]:
    """This session's PySpark worker processes (forked by its pyspark.daemon) with a connection to ``port``."""
    table = _process_table()

    def ours(pid: int) -> bool:
        while pid > 1 and pid in table:
            if pid == os.getpid():
                return True
            pid = table[pid][0]
        return False

    daemons = {pid for pid, (_, command) in table.items() if b"pyspark.daemon" in command and ours(pid)}
    workers = [pid for pid in daemons if table[pid][0] in daemons]
    sockets = set()
    with open("/proc/net/tcp") as fh:
        for line in fh.readlines()[1:]:
            fields = line.split()
            if int(fields[2].split(":")[1], 16) == port:
                sockets.add(fields[9])
    busy = []
    for pid in workers:
        try:
            links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        except OSError:
            continue
        if any(link.startswith("socket:[") and link[8:-1] in sockets for link in links):
            busy.append(pid)
    return sorted(busy)


def port_of(backend) -> int:
    return int(backend.endpoint.rsplit(":", 1)[1])


def run_in_thread(call):
    outcome: dict = {}

    def target():
        try:
            outcome["result"] = call()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def test_faults_and_a_killed_python_worker_leave_one_ok_result_per_row(spark, backend_factory, tmp_path):
    faulty = backend_factory(*SPARK_FLAGS, *SLOW, *FAULTS)
    deployment = faulty.create_deployment("spark-faults")
    rows, max_concurrency = 1200, 16
    budget = split(4, concurrency="auto", max_concurrency=max_concurrency, max_rps=None)
    thread, outcome = run_in_thread(lambda: predict_spark(
        reviews(spark, rows), "Classify: {{ text }}", deployment=endpoint_of(faulty, deployment),
        output=str(tmp_path / "out"), max_concurrency=max_concurrency, max_rps=10_000, max_tokens=6,
        max_retries=RETRIES, progress=False))  # fmt: skip
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and thread.is_alive() and time.monotonic() < deadline:
        if len(checkpoint_records(tmp_path / "out_checkpoint")) >= 100:
            workers = busy_python_workers(port_of(faulty))
            if workers:
                killed = workers[0]
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    thread.join(timeout=300)
    assert killed is not None, "no Python worker was running a task to kill"
    assert "error" not in outcome, outcome.get("error")
    out = outcome["result"].collect()
    assert len(out) == rows
    assert sorted(row["review_id"] for row in out) == list(range(rows))
    assert all(row["text"] == f"Review number {row['review_id']} of a kettle" for row in out)
    failed = [(row["status"], row["attempts"], row["error"]) for row in out if row["status"] != "ok"]
    assert not failed, failed[:5]
    assert len({row["row_key"] for row in out}) == rows
    stats = faulty.deployment_stats(deployment["id"])
    assert sum(stats["faults"].values()) > 0 and max(row["attempts"] for row in out) > 1
    # The killed attempt's retry re-sent at most what that attempt had in flight (its share of the concurrency)
    # and its rows finished but not yet in a file (at most flush_rows).
    window = budget.max_concurrency + flush_rows(budget)
    print(f"re-sent after a success: {stats['duplicate_successes']} (window {window}); faults {stats['faults']}")
    assert stats["duplicate_successes"] <= window, stats
    assert stats["succeeded"] == rows + stats["duplicate_successes"]
    # The retry of the killed task read its earlier attempt's files: one partition has two attempts' files.
    attempts_per_partition = [
        {name.split("-")[0] for name in names} for folder, _, names in os.walk(tmp_path / "out_checkpoint") if names
    ]
    assert any(len(attempts) >= 2 for attempts in attempts_per_partition), attempts_per_partition


def test_an_interrupted_driver_runs_again_sending_only_the_rest(spark, backend_factory, tmp_path):
    slow = backend_factory(*SPARK_FLAGS, *SLOW)
    deployment = slow.create_deployment("spark-interrupted")
    rows = 800
    options = {"deployment": endpoint_of(slow, deployment), "output": str(tmp_path / "out"), "max_tokens": 6,
               "max_concurrency": 4, "max_rps": 10_000, "progress": False}  # fmt: skip
    frame = reviews(spark, rows)
    thread, outcome = run_in_thread(lambda: predict_spark(frame, "Classify: {{ text }}", **options))
    deadline = time.monotonic() + 120
    while len(checkpoint_records(tmp_path / "out_checkpoint")) < rows // 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    spark.sparkContext.cancelAllJobs()  # what PySpark does on a kernel interrupt (SIGINT), before KeyboardInterrupt
    thread.join(timeout=120)
    assert isinstance(outcome.get("error"), BatchError), outcome
    assert "checkpoint" in outcome["error"].hint
    # Wait for the cancelled tasks' workers to stop: the checkpoint and the backend's count stop growing.
    settled, last = time.monotonic(), None
    while time.monotonic() - settled < 3:
        now = (len(checkpoint_records(tmp_path / "out_checkpoint")),
               slow.deployment_stats(deployment["id"])["predict_requests"])  # fmt: skip
        if now != last:
            settled, last = time.monotonic(), now
        time.sleep(0.2)
    finished = {r["row_key"] for r in checkpoint_records(tmp_path / "out_checkpoint") if r["status"] == "ok"}
    # Cancelled tasks' Python workers are stopped after spark.python.task.killTimeout (2 s): some rows remain.
    assert rows // 4 <= len(finished) < rows
    before = slow.deployment_stats(deployment["id"])["predict_requests"]
    started = time.monotonic()
    out = predict_spark(frame, "Classify: {{ text }}", **options).collect()
    print(f"interrupted with {len(finished)} of {rows} rows done; the re-run took {time.monotonic() - started:.1f} s")
    assert slow.deployment_stats(deployment["id"])["predict_requests"] - before == rows - len(finished)
    assert sorted(row["review_id"] for row in out) == list(range(rows))
    assert {row["status"] for row in out} == {"ok"} and len({row["row_key"] for row in out}) == rows
    before = slow.deployment_stats(deployment["id"])["predict_requests"]
    predict_spark(frame, "Classify: {{ text }}", **options)
    assert slow.deployment_stats(deployment["id"])["predict_requests"] == before  # a third run sends nothing


def too_long(spark):
    data = [(1, "a kettle"), (2, "word " * 5000), (3, "a toaster")]
    return spark.createDataFrame(data, "review_id INT, text STRING")


def test_a_prompt_too_long_for_the_model_is_recorded_with_the_servers_message(spark, spark_backend, tmp_path):
    out = predict_spark(too_long(spark), "Q: {{ text }}", deployment=endpoint_of(spark_backend),
                        output=str(tmp_path / "o"), max_tokens=4, progress=False)  # fmt: skip
    rows = {row["review_id"]: row for row in out.collect()}
    assert rows[2]["status"] == "error" and rows[2]["attempts"] == 1
    assert "maximum context length is 4096 tokens" in rows[2]["error"] and "HTTP 400" in rows[2]["error"]
    assert rows[1]["status"] == rows[3]["status"] == "ok"


def test_on_error_raise_fails_with_one_error_naming_the_count_and_a_sample(spark, spark_backend, tmp_path):
    with pytest.raises(BatchError) as caught:
        predict_spark(too_long(spark), "Q: {{ text }}", deployment=endpoint_of(spark_backend),
                      output=str(tmp_path / "o"), max_tokens=4, progress=False, on_error="raise")  # fmt: skip
    message = str(caught.value)
    assert message.startswith("1 row(s) failed (1 × error); first: HTTP 400")
    assert "maximum context length" in message
    assert caught.value.partial.count() == 3


def test_rows_whose_retries_run_out_say_so(spark, backend_factory, tmp_path):
    failing = backend_factory(*SPARK_FLAGS, "--fault", "500:1.0")
    deployment = failing.create_deployment("spark-failing")
    out = predict_spark(too_long(spark).limit(2), "Q: {{ text }}", deployment=endpoint_of(failing, deployment),
                        output=str(tmp_path / "o"), max_tokens=4, max_retries=1, progress=False)  # fmt: skip
    rows = out.collect()
    assert {row["status"] for row in rows} == {"retries_exhausted"}
    assert {row["attempts"] for row in rows} == {2}
    assert all("HTTP 500" in row["error"] for row in rows)
