"""predict_spark on local Spark against the local backend over loopback: output, keys, checkpoint, re-runs."""

from __future__ import annotations

import os
from urllib.parse import urlparse

import pytest

from odsc_magics import errors
from odsc_magics.client import connect
from odsc_magics.config import LLMSettings
from odsc_magics.spark import predict_spark

OUTPUT_TAIL = ["completion", "finish_reason", "prompt_tokens", "completion_tokens", "latency_s", "attempts",
               "status", "error", "row_key"]  # fmt: skip


def endpoint_of(backend, deployment=None):
    settings = LLMSettings(backend="local", local_dir=str(backend.state_dir))
    return connect((deployment or backend.deployment)["url"], settings=settings)


def reviews(spark, rows: int, partitions: int = 4, start: int = 0):
    data = [(n, f"Review number {n} of a kettle") for n in range(start, start + rows)]
    return spark.createDataFrame(data, "review_id INT, text STRING").repartition(partitions)


def sent(backend) -> int:
    return backend.deployment_stats(backend.deployment["id"])["predict_requests"]


def test_answers_every_row_once_and_returns_what_it_wrote(spark, spark_backend, tmp_path):
    before = sent(spark_backend)
    out = predict_spark(reviews(spark, 120), "Classify: {{ text }}", deployment=endpoint_of(spark_backend),
                        output=str(tmp_path / "out"), max_tokens=6, progress=False)  # fmt: skip
    assert out.columns == ["review_id", "text", *OUTPUT_TAIL]
    rows = out.collect()
    assert sorted(row["review_id"] for row in rows) == list(range(120))
    assert all(row["text"] == f"Review number {row['review_id']} of a kettle" for row in rows)
    assert {row["status"] for row in rows} == {"ok"}
    assert all(row["error"] is None and row["completion"] and row["attempts"] >= 1 for row in rows)
    assert all(1 <= row["completion_tokens"] <= 6 for row in rows)
    assert len({row["row_key"] for row in rows}) == 120
    assert sent(spark_backend) - before == 120
    # The result reads the written output: more actions send nothing.
    assert all(urlparse(path).path.startswith(f"{tmp_path / 'out'}/") for path in out.inputFiles())
    assert out.count() == 120 and out.filter("status = 'ok'").count() == 120
    assert sent(spark_backend) - before == 120


def test_each_task_attempt_writes_its_own_files_once_and_a_rerun_sends_nothing(spark, spark_backend, tmp_path):
    frame = reviews(spark, 80)
    options = {"deployment": endpoint_of(spark_backend), "output": str(tmp_path / "out"), "max_tokens": 5,
               "progress": False}  # fmt: skip
    first = {row["review_id"]: row for row in predict_spark(frame, "Q: {{ text }}", **options).collect()}
    files = [os.path.join(d, n) for d, _, names in os.walk(tmp_path / "out_checkpoint") for n in names]
    assert files and all(name.endswith(".parquet") for name in files)
    stamps = {path: os.stat(path).st_mtime_ns for path in files}
    before = sent(spark_backend)
    again = predict_spark(frame, "Q: {{ text }}", **options).collect()
    assert sent(spark_backend) == before
    assert {row["review_id"]: row["completion"] for row in again} == {k: r["completion"] for k, r in first.items()}
    assert {row["review_id"]: row["row_key"] for row in again} == {k: r["row_key"] for k, r in first.items()}
    # Files are never rewritten: the second run only read the first's.
    assert all(os.stat(path).st_mtime_ns == stamp for path, stamp in stamps.items())


def test_a_rerun_with_new_rows_sends_only_those(spark, spark_backend, tmp_path):
    options = {"deployment": endpoint_of(spark_backend), "output": str(tmp_path / "out"), "max_tokens": 5,
               "progress": False}  # fmt: skip
    predict_spark(reviews(spark, 50), "Q: {{ text }}", **options)
    before = sent(spark_backend)
    out = predict_spark(reviews(spark, 70), "Q: {{ text }}", **options)
    assert sent(spark_backend) - before == 20
    rows = out.collect()
    assert sorted(row["review_id"] for row in rows) == list(range(70))
    assert {row["status"] for row in rows} == {"ok"}


def test_key_columns_name_the_work_instead_of_the_prompt(spark, spark_backend, tmp_path):
    base = {"deployment": endpoint_of(spark_backend), "max_tokens": 5, "progress": False}
    edited = spark.createDataFrame([(n, f"Edited review {n}") for n in range(30)], "review_id INT, text STRING")
    by_key = {**base, "output": str(tmp_path / "keyed"), "key": "review_id"}
    predict_spark(reviews(spark, 30), "Q: {{ text }}", **by_key)
    before = sent(spark_backend)
    predict_spark(edited, "Q: {{ text }}", **by_key)
    assert sent(spark_backend) == before  # same keys: already done
    by_prompt = {**base, "output": str(tmp_path / "prompted")}
    predict_spark(reviews(spark, 30), "Q: {{ text }}", **by_prompt)
    before = sent(spark_backend)
    predict_spark(edited, "Q: {{ text }}", **by_prompt)
    assert sent(spark_backend) - before == 30  # new prompts: new work


def test_a_missing_template_value_fails_its_row_only(spark, spark_backend, tmp_path):
    frame = spark.createDataFrame([(1, "a kettle"), (2, None), (3, "a toaster")], "review_id INT, text STRING")
    out = predict_spark(frame, "Q: {{ text }}", deployment=endpoint_of(spark_backend), output=str(tmp_path / "o"),
                        max_tokens=4, progress=False)  # fmt: skip
    rows = {row["review_id"]: row for row in out.collect()}
    assert rows[2]["status"] == "error" and "missing value in column 'text'" in rows[2]["error"]
    assert rows[2]["attempts"] == 0 and rows[2]["completion"] is None
    assert rows[1]["status"] == rows[3]["status"] == "ok"


def test_chat_with_a_system_text(spark, spark_backend, tmp_path):
    chat = spark_backend.create_deployment("spark-chat", chat=True)
    frame = spark.createDataFrame([(1, "French"), (2, "German")], "id INT, language STRING")
    out = predict_spark(frame, "Say hello.", system="Answer in {{ language }}.",
                        deployment=endpoint_of(spark_backend, chat), output=str(tmp_path / "o"), max_tokens=6,
                        progress=False)  # fmt: skip
    rows = out.collect()
    assert {row["status"] for row in rows} == {"ok"}
    assert spark_backend.deployment_stats(chat["id"])["succeeded"] == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"template": 3}, "template must be a str"),
        ({"template": "{{ nope }}"}, "reads 'nope'"),
        ({"output": ""}, "output must be a path"),
        ({"checkpoint": "SAME"}, "must be different paths"),
        ({"key": "nope"}, "key names 'nope'"),
        ({"on_error": "ignore"}, 'on_error must be "record" or "raise"'),
        ({"max_concurrency": 0}, "max_concurrency must be a whole number"),
        ({"output_column": "status"}, "'status' are taken"),
        ({"concurrency": 0}, "concurrency must be"),
    ],
)
def test_bad_arguments_are_named_before_anything_runs(spark, spark_backend, tmp_path, change, message):
    options = {"template": "Q: {{ text }}", "deployment": endpoint_of(spark_backend), "output": str(tmp_path / "o"),
               "progress": False, **change}  # fmt: skip
    if options.get("checkpoint") == "SAME":
        options["checkpoint"] = options["output"]
    before = sent(spark_backend)
    with pytest.raises(errors.ValidationError, match=message):
        predict_spark(reviews(spark, 3, partitions=1), **options)
    assert sent(spark_backend) == before
    assert not (tmp_path / "o").exists()


def test_a_pandas_frame_is_refused_with_the_way_to_go(spark_backend, tmp_path):
    import pandas as pd

    with pytest.raises(errors.ValidationError, match=r"needs a pyspark\.sql\.DataFrame"):
        predict_spark(pd.DataFrame({"text": ["a"]}), "{{ text }}", deployment=endpoint_of(spark_backend),
                      output=str(tmp_path / "o"))  # fmt: skip
