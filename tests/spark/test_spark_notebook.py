"""notebooks/04_spark.ipynb runs top to bottom in a real kernel, with local Spark and a fault-injecting backend.

The notebook classifies 20,000 rows; here it reads ODSC_MAGICS_SPARK_DEMO_ROWS=2000 so that the test stays short.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from odsc_magics.demo import ROOT, run_notebook

pytestmark = pytest.mark.slow
ROWS = 2000


def test_spark_notebook_survives_a_killed_worker_and_reruns_sending_nothing(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update(HOME=str(tmp_path), ODSC_MAGICS_SPARK_DEMO_ROWS=str(ROWS),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))  # fmt: skip
    try:
        nb, error = run_notebook(ROOT / "notebooks" / "04_spark.ipynb", tmp_path / "04.ipynb", env, timeout=600)
    finally:
        from odsc_magics.local.process import stop

        stop(tmp_path / ".odsc_magics" / "spark-demo")
    assert error is None, error
    text = "\n".join(str(cell.get("outputs", "")) for cell in nb.cells if cell.cell_type == "code")
    assert "killed Python worker: 1 (pid " in text
    assert f"{ROWS} rows, each once, all ok" in text
    assert f"re-run sent 0 requests; {ROWS} rows in the output" in text
