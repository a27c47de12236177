"""`odsc-magics dataflow-archive`: Data Flow's archive layout, and a fresh Python that uses only what it holds."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest

from odsc_magics.cli import main as cli_main

SITE = "python/lib/python3.11/site-packages"

# Runs in a Python started with -I -S: no environment variables, no site (so no virtualenv or system
# packages); only the standard library and the archive's site-packages are on the path.
CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import odsc_magics.spark, odsc_magics.spark.job, odsc_magics.spark.partition
from odsc_magics.client import connect
from odsc_magics.config import LLMSettings
settings = LLMSettings(backend="local", local_dir=sys.argv[2])
result = connect(sys.argv[3], settings=settings).complete("Hello from Data Flow", max_tokens=4, max_retries=0)
import cryptography, oci, pyarrow
print(json.dumps({"text": result.text, "paths": sys.path, "modules": {
    name: sys.modules[name].__file__ for name in ("odsc_magics", "oci", "cryptography", "pyarrow")}}))
"""


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("archive") / "archive.zip"
    assert cli_main(["dataflow-archive", "--python", "3.11", str(out)]) == 0
    return out


def test_the_archive_has_data_flows_layout_with_linux_wheels_and_no_pyspark(archive):
    with zipfile.ZipFile(archive) as zipped:
        names = zipped.namelist()
        version = zipped.read("version.txt").decode()
    assert all(name == "version.txt" or name.startswith(f"{SITE}/") for name in names)
    assert f"{SITE}/odsc_magics/spark/job.py" in names
    ours = [name for name in names if name.startswith(f"{SITE}/odsc_magics/")]
    assert not any("/labextension/" in name or name.endswith(".pyc") for name in ours)
    assert not any(name.startswith(f"{SITE}/pyspark/") for name in names)  # the run's Spark brings its own
    native = [name for name in names if name.startswith(f"{SITE}/cryptography/") and name.endswith(".so")]
    assert native and all("x86_64" in name or "abi3" in name for name in native)
    assert any(name.startswith(f"{SITE}/ocifs/") for name in names)
    assert "python 3.11" in version


def test_a_fresh_python_with_only_the_archive_imports_predict_spark_and_signs_a_request(
    archive, spark_backend, tmp_path
):
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(tmp_path)
    site = tmp_path / SITE
    before = spark_backend.deployment_stats(spark_backend.deployment["id"])["succeeded"]
    command = [sys._base_executable, "-I", "-S", "-c", CHILD, str(site), str(spark_backend.state_dir),
               spark_backend.deployment["url"]]  # fmt: skip
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env={"HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["text"]
    assert all(path.startswith(str(site)) for path in report["modules"].values()), report["modules"]
    assert not [path for path in report["paths"] if "site-packages" in path and not path.startswith(str(site))]
    # The backend verified the request's OCI signature before answering it.
    assert spark_backend.deployment_stats(spark_backend.deployment["id"])["succeeded"] == before + 1


def test_a_bad_python_version_is_refused(tmp_path, capsys):
    assert cli_main(["dataflow-archive", "--python", "eleven", str(tmp_path / "a.zip")]) == 2
    assert "--python 'eleven' must look like 3.11" in capsys.readouterr().err
    assert not (tmp_path / "a.zip").exists()
