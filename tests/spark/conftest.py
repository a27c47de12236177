"""One local SparkSession for the Spark tests, and a local backend built for Spark's request rates.

The tests here need PySpark, which the main environment does not have: there they are not collected at all.
That hides nothing: `make test` runs this directory in its own environments, one per PySpark line (3.5, Data
Flow's, and the newest 4.x), each with PySpark installed (see the Makefile's spark-test target).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("pyspark") is None:
    collect_ignore_glob = ["*.py"]

ROOT = Path(__file__).resolve().parents[2]
# The emulated tenancy's request rate is raised: these tests measure exactly-once, not the platform's limit.
SPARK_FLAGS = ("--deploy-seconds", "0.2", "--ttft-ms", "0", "--tokens-per-s", "0", "--tenancy-rps", "100000")
# local[4,3]: four task slots, and a failed task is tried again up to three times (local[N] never retries).
MASTER = "local[4,3]"


@pytest.fixture(scope="session")
def spark():
    """One SparkSession for the whole session (starting a JVM costs seconds): local[4,3], speculation off."""
    from pyspark.sql import SparkSession

    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"  # the driver's and block manager's ports on loopback only
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    # Python workers import this checkout's odsc_magics (Spark puts the launching environment's PYTHONPATH
    # behind its own).
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    session = (
        SparkSession.builder.master(MASTER)
        .appName("odsc-magics-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.speculation", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.default.parallelism", "4")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.python.worker.reuse", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def spark_backend(tmp_path_factory: pytest.TempPathFactory):
    """A local backend with a completion deployment (max_model_len 4096), for the session."""
    from odsc_magics.local.testing import start_backend

    running = start_backend(tmp_path_factory.mktemp("spark-backend"), *SPARK_FLAGS)
    try:
        running.deployment = running.create_deployment("spark-llm")
        yield running
    finally:
        running.stop()
