"""predict_spark with its checkpoint in an object store: an S3-compatible server (moto's) on 127.0.0.1, s3a:// URLs.

The Python workers reach the store the way executors of a cluster would: the endpoint and credentials come from
the environment (AWS_ENDPOINT_URL, honoured by botocore and so by s3fs), given to the executors through the
SparkContext's executor environment (``spark.executorEnv.*`` on a cluster). The values are fake.
"""

from __future__ import annotations

import io
import socket
import threading

import pyarrow.parquet as pq
import pytest
from conftest import SPARK_FLAGS

from odsc_magics import errors
from odsc_magics.client import connect
from odsc_magics.config import LLMSettings
from odsc_magics.spark import predict_spark
from odsc_magics.spark.storage import Storage

BUCKET = "answers-checkpoint"
ROWS = 300


class RequestLog:
    """WSGI middleware: the method, path and copy source (x-amz-copy-source) of every request the server answers."""

    def __init__(self, app) -> None:
        self.app = app
        self.entries: list[dict] = []
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        entry = {
            "method": environ["REQUEST_METHOD"],
            "path": environ.get("PATH_INFO", ""),
            "copy_source": environ.get("HTTP_X_AMZ_COPY_SOURCE"),
        }
        with self._lock:
            self.entries.append(entry)
        return self.app(environ, start_response)

    def object_writes(self) -> list[str]:
        """The paths of the objects PUT whole (not buckets nor their settings, which have no key)."""
        return [e["path"] for e in self.entries if e["method"] == "PUT" and e["path"].strip("/").count("/") >= 1]


@pytest.fixture(scope="module")
def object_store():
    """moto's S3 server on 127.0.0.1 (a free port), every request logged."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    log = RequestLog(server._server.app)
    server._server.app = log  # the werkzeug server calls .app for each request
    host, port = server.get_host_and_port()
    server.url, server.log = f"http://{host}:{port}", log
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(spark, object_store, monkeypatch):
    """Fake credentials and the server's URL in the driver's environment and in every Python worker's."""
    env = {"AWS_ACCESS_KEY_ID": "fake-access-key", "AWS_SECRET_ACCESS_KEY": "fake-secret-key",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": object_store.url}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    executors = spark.sparkContext.environment  # what spark.executorEnv.* fills; read when a task is planned
    saved = {name: executors.get(name) for name in env}
    executors.update(env)
    import boto3

    client = boto3.client("s3")
    # botocore (and so s3fs) takes the endpoint from AWS_ENDPOINT_URL: nothing goes to a real AWS endpoint.
    assert client.meta.endpoint_url == object_store.url
    try:
        yield client
    finally:
        for name, value in saved.items():
            if value is None:
                executors.pop(name, None)
            else:
                executors[name] = value


def endpoint_of(backend, deployment):
    return connect(deployment["url"], settings=LLMSettings(backend="local", local_dir=str(backend.state_dir)))


def reviews(spark, rows: int, partitions: int = 4):
    data = [(n, f"Review number {n} of a kettle") for n in range(rows)]
    return spark.createDataFrame(data, "review_id INT, text STRING").repartition(partitions)


def keys_in(client, bucket: str, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def test_a_checkpoint_in_an_object_store_answers_each_row_once_and_a_rerun_sends_nothing(
    spark, backend_factory, object_store, s3_env, tmp_path
):
    backend = backend_factory(*SPARK_FLAGS)
    deployment = backend.create_deployment("spark-s3")
    s3_env.create_bucket(Bucket=BUCKET)
    s3_env.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    checkpoint = f"s3a://{BUCKET}/runs/reviews"
    options = {"deployment": endpoint_of(backend, deployment), "output": str(tmp_path / "out"),
               "checkpoint": checkpoint, "max_tokens": 5, "max_concurrency": 8, "progress": False}  # fmt: skip
    frame = reviews(spark, ROWS)
    first = {row["review_id"]: row for row in predict_spark(frame, "Q: {{ text }}", **options).collect()}
    stats = backend.deployment_stats(deployment["id"])
    assert sorted(first) == list(range(ROWS))
    assert {row["status"] for row in first.values()} == {"ok"}
    assert stats["predict_requests"] == stats["succeeded"] == ROWS
    assert len({row["row_key"] for row in first.values()}) == ROWS

    # The checkpoint is in the bucket: Parquet files under the prefix, holding every row's answer.
    stored = keys_in(s3_env, BUCKET, "runs/reviews/")
    assert stored and all(key.endswith(".parquet") for key in stored)
    assert {key.split("/")[3] for key in stored} == {"00000", "00001", "00002", "00003"}  # one folder per task
    assert not (tmp_path / "out_checkpoint").exists()
    records = [
        record
        for key in stored
        for record in pq.read_table(io.BytesIO(s3_env.get_object(Bucket=BUCKET, Key=key)["Body"].read())).to_pylist()
    ]
    assert {record["row_key"] for record in records if record["status"] == "ok"} == {
        row["row_key"] for row in first.values()
    }

    again = predict_spark(frame, "Q: {{ text }}", **options).collect()
    assert backend.deployment_stats(deployment["id"])["predict_requests"] == ROWS  # nothing sent again
    assert {row["review_id"]: row["completion"] for row in again} == {k: r["completion"] for k, r in first.items()}
    assert {row["status"] for row in again} == {"ok"}
    assert keys_in(s3_env, BUCKET, "runs/reviews/") == stored  # nothing sent, nothing written

    # Write-once: no object was copied (a rename is a copy and a delete), deleted or written twice.
    log = object_store.log
    assert not [e for e in log.entries if e["copy_source"] or e["method"] == "DELETE"]
    written = log.object_writes()
    assert sorted(written) == sorted(f"/{BUCKET}/{key}" for key in stored)  # each object PUT once, where it stays
    versions = s3_env.list_object_versions(Bucket=BUCKET, Prefix="runs/reviews/")
    assert not versions.get("DeleteMarkers")
    assert sorted(v["Key"] for v in versions["Versions"]) == stored  # one version per key: none overwritten


def test_an_unknown_bucket_is_a_clear_error_before_anything_is_sent(
    spark, backend_factory, object_store, s3_env, tmp_path
):
    backend = backend_factory(*SPARK_FLAGS)
    deployment = backend.create_deployment("spark-s3-missing")
    with pytest.raises(errors.ValidationError) as caught:
        predict_spark(reviews(spark, 20), "Q: {{ text }}", deployment=endpoint_of(backend, deployment),
                      output=str(tmp_path / "out"), checkpoint="s3a://no-such-bucket/ckpt", max_tokens=5,
                      progress=False)  # fmt: skip
    error = caught.value
    assert str(error).startswith("checkpoint s3a://no-such-bucket/ckpt: the bucket 'no-such-bucket' does not exist")
    assert "create the bucket" in error.hint and "credentials" in error.hint
    assert backend.deployment_stats(deployment["id"])["predict_requests"] == 0  # nothing sent
    assert not (tmp_path / "out").exists()


def test_an_object_store_that_does_not_answer_is_a_clear_error(monkeypatch):
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name, value in {"AWS_ACCESS_KEY_ID": "fake-access-key", "AWS_SECRET_ACCESS_KEY": "fake-secret-key",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                        "AWS_MAX_ATTEMPTS": "1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    storage = Storage("s3a://some-bucket/ckpt", options={"skip_instance_cache": True})
    with pytest.raises(errors.ConfigurationError) as caught:
        storage.list_all()
    assert str(caught.value).startswith("checkpoint s3a://some-bucket/ckpt could not be listed: ")
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "AWS_ENDPOINT_URL" in caught.value.hint
    assert "fake-secret-key" not in str(caught.value)
