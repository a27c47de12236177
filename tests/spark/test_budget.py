"""The endpoint's budget split over the tasks that run at once, and the speculation check."""

from __future__ import annotations

import pytest

from odsc_magics.predict_limits import TENANCY_RPS
from odsc_magics.spark.budget import DEFAULT_RPS_SHARE, split, task_slots
from odsc_magics.spark.job import SpeculationWarning, warn_if_speculative


class Conf(dict):
    def get(self, name, default=None):  # SparkConf.get
        return super().get(name, default)


class Session:
    """What task_slots and warn_if_speculative read of a SparkSession."""

    def __init__(self, conf: dict, parallelism: int) -> None:
        self.sparkContext = type("SC", (), {"getConf": lambda _: Conf(conf), "defaultParallelism": parallelism})()


def test_the_budget_is_divided_by_the_tasks_that_run_at_once():
    share = split(4, concurrency="auto", max_concurrency=64, max_rps=100.0)
    assert (share.concurrency, share.max_concurrency, share.max_rps) == ("auto", 16, 25.0)
    fixed = split(4, concurrency=10, max_concurrency=None, max_rps=None)
    assert (fixed.concurrency, fixed.max_concurrency) == (2, 2)
    assert fixed.max_rps == pytest.approx(DEFAULT_RPS_SHARE * TENANCY_RPS / 4)
    assert split(64, concurrency="auto", max_concurrency=16, max_rps=8.0).max_concurrency == 1  # never 0


def test_the_remainder_goes_to_some_tasks_so_that_tasks_side_by_side_hold_the_whole_budget():
    budget = split(4, concurrency="auto", max_concurrency=30, max_rps=None)
    shares = [budget.for_partition(partition).max_concurrency for partition in range(8)]
    assert shares == [8, 8, 7, 7, 8, 8, 7, 7]
    assert sum(shares[:4]) == sum(shares[2:6]) == 30
    fixed = split(4, concurrency=10, max_concurrency=None, max_rps=None)
    assert [fixed.for_partition(p).concurrency for p in range(4)] == [3, 3, 2, 2]


def test_slots_come_from_the_cluster_and_the_number_of_partitions(spark):
    assert task_slots(spark) == 4  # local[4,3]
    assert task_slots(spark, partitions=2) == 2
    assert task_slots(Session({"spark.task.cpus": "2"}, 8)) == 4
    dynamic = {"spark.dynamicAllocation.enabled": "true", "spark.dynamicAllocation.maxExecutors": "10",
               "spark.executor.cores": "4"}  # fmt: skip
    assert task_slots(Session(dynamic, 4)) == 40  # what the job can grow to, not what it has now


def test_speculation_is_checked_and_warned_about(spark):
    assert warn_if_speculative(spark) is False
    with pytest.warns(SpeculationWarning, match="spark.speculation=false"):
        assert warn_if_speculative(Session({"spark.speculation": "true"}, 4)) is True


def test_tasks_running_at_once_stay_within_the_endpoints_budget_together(spark, backend_factory, tmp_path):
    """Four tasks under max_concurrency=8 and max_rps=30 against an endpoint that holds exactly 8 at once and
    a tenancy of 40 requests/s: no request is throttled (each task alone could open 8 and send 30/s)."""
    from conftest import SPARK_FLAGS

    from odsc_magics.client import connect
    from odsc_magics.config import LLMSettings
    from odsc_magics.spark import predict_spark

    walled = backend_factory(*SPARK_FLAGS, "--ttft-ms", "40", "--capacity", "8", "--tenancy-rps", "40")
    deployment = walled.create_deployment("spark-budget")
    endpoint = connect(deployment["url"], settings=LLMSettings(backend="local", local_dir=str(walled.state_dir)))
    frame = spark.createDataFrame([(n, f"Review {n}") for n in range(120)], "id INT, text STRING").repartition(4)
    out = predict_spark(frame, "Q: {{ text }}", deployment=endpoint, output=str(tmp_path / "o"), max_tokens=4,
                        max_concurrency=8, max_rps=30, progress=False)  # fmt: skip
    assert {row["status"] for row in out.collect()} == {"ok"}
    stats = walled.deployment_stats(deployment["id"])
    assert stats["predict_requests"] == 120, stats
    assert "429" not in stats["by_status"] and not stats["throttles"], stats


def test_without_max_concurrency_the_driver_finds_what_the_endpoint_holds_first(spark, backend_factory, tmp_path):
    """Tasks that each probed for capacity alone would overshoot together (a 429 for most rows); the driver's
    probe answers a few hundred rows itself, then the tasks share what it found. No row is sent twice."""
    import os

    from conftest import SPARK_FLAGS

    from odsc_magics.client import connect
    from odsc_magics.config import LLMSettings
    from odsc_magics.spark import predict_spark
    from odsc_magics.spark.partition import DRIVER_PARTITION

    walled = backend_factory(*SPARK_FLAGS, "--ttft-ms", "40", "--capacity", "8")
    deployment = walled.create_deployment("spark-probe")
    endpoint = connect(deployment["url"], settings=LLMSettings(backend="local", local_dir=str(walled.state_dir)))
    rows = 600
    frame = spark.createDataFrame([(n, f"Review {n}") for n in range(rows)], "id INT, text STRING").repartition(4)
    out = predict_spark(frame, "Q: {{ text }}", deployment=endpoint, output=str(tmp_path / "o"), max_tokens=4,
                        max_rps=10_000, progress=False)  # fmt: skip
    assert out.filter("status = 'ok'").count() == rows
    stats = walled.deployment_stats(deployment["id"])
    assert stats["succeeded"] == rows and stats["duplicate_successes"] == 0, stats
    assert stats["by_status"].get("429", 0) <= rows // 10, stats
    probed = [names for folder, _, names in os.walk(tmp_path / "o_checkpoint")
              if os.path.basename(folder) == f"{DRIVER_PARTITION:05d}"]  # fmt: skip
    assert probed and probed[0], "the driver answered no rows while it measured the endpoint"
