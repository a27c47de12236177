"""The driver-side progress bar: rows done and failed from the checkpoint's growth, tasks from Spark's tracker."""

from __future__ import annotations

import re

from odsc_magics.client import connect
from odsc_magics.config import LLMSettings
from odsc_magics.spark import predict_spark


def test_the_bar_counts_rows_done_failed_and_tasks_and_a_summary_follows(spark, spark_backend, tmp_path, capsys):
    data = [(n, "word " * 5000 if n == 7 else f"Review {n}") for n in range(40)]
    frame = spark.createDataFrame(data, "id INT, text STRING").repartition(4)
    endpoint = connect(spark_backend.deployment["url"],
                       settings=LLMSettings(backend="local", local_dir=str(spark_backend.state_dir)))  # fmt: skip
    predict_spark(frame, "Q: {{ text }}", deployment=endpoint, output=str(tmp_path / "o"), max_tokens=4)
    captured = capsys.readouterr()
    drawn = [line for line in re.split(r"[\r\n]", captured.err) if line.startswith("predict_spark:")]
    assert drawn, captured.err[-2000:]
    bar = drawn[-1]
    assert re.search(r"\b40/40 \[", bar), bar
    assert "failed=1" in bar and re.search(r"tasks=(\d+)/\1 \(0 running\)", bar), bar
    assert re.search(r"\d+(\.\d+)?row/s", bar) and "task_failures=0" in bar, bar
    summary = captured.out.strip().splitlines()[-1]
    assert re.fullmatch(rf"predict_spark: 39 ok, 1 failed of 40 rows \(40 sent this run\) in \d+\.\d s; "
                        rf"output {re.escape(str(tmp_path / 'o'))}", summary), summary  # fmt: skip
