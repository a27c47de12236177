"""notebooks/03_batch.ipynb runs top to bottom in a real kernel against a fault-injecting local backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from odsc_magics.demo import ROOT, kernel_env, run_notebook

pytestmark = pytest.mark.slow


def test_batch_notebook_classifies_interrupts_and_resumes(backend, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    env = kernel_env(backend.state_dir)
    env["HOME"] = str(tmp_path)
    try:
        nb, error = run_notebook(ROOT / "notebooks" / "03_batch.ipynb", tmp_path / "03.ipynb", env)
    finally:
        from odsc_magics.local.process import stop

        stop(tmp_path / ".odsc_magics" / "batch-demo")
    assert error is None, error
    text = "\n".join(str(cell.get("outputs", "")) for cell in nb.cells if cell.cell_type == "code")
    assert "50 rows answered" in text
    assert "interrupted:" in text
    assert "rows came from the checkpoint" in text
