"""The shipped notebooks run top to bottom in a real kernel against the local backend; so does `make demo`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from odsc_magics.demo import NOTEBOOK, ROOT, kernel_env, llm_answers, run_notebook

pytestmark = pytest.mark.slow


def test_quickstart_runs_and_streams_answers(backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    target = tmp_path / "executed.ipynb"
    nb, error = run_notebook(NOTEBOOK, target, kernel_env(backend.state_dir))
    assert error is None, error
    assert target.exists()
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code")

    answers = llm_answers(nb)
    commands = [line for line, _ in answers]
    assert sum(line.startswith("%%llm_predict") for line in commands) == 2
    assert sum(line.startswith("%%llm_chat") for line in commands) == 2
    assert all(markdown.strip() for _, markdown in answers)

    shown = {c.source.splitlines()[0]: c for c in nb.cells if c.cell_type == "code"}
    deploy = next(c for line, c in shown.items() if line.startswith("%llm_deploy create"))
    assert "ACTIVE" in str(deploy.outputs)
    assert "characters kept in `answer`" in str(shown['print(len(answer), "characters kept in `answer`")'].outputs)
    assert "5 messages" in str(shown["%llm_chat --history"].outputs)
    assert "nothing was sent" in str(next(c for line, c in shown.items() if "--dry-run" in line).outputs)
    widgets = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert any(w["model_name"] == "HTMLModel" for w in widgets.values())


def test_make_demo_works_with_an_empty_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ODSC_MAGICS_", "OCI_CONFIG"))}
    env["HOME"] = str(home)
    output = tmp_path / "executed.ipynb"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "odsc_magics.demo", "--output", str(output)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        from odsc_magics.local.process import stop

        stop(home / ".odsc_magics" / "local")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "── %%llm_predict" in done.stdout
    assert f"Executed notebook written to {output}" in done.stdout
    assert output.exists()
    assert (home / ".odsc_magics" / "local").is_dir()  # the state is where the README says


def test_deploy_notebook_runs_the_whole_lifecycle(backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    source = ROOT / "notebooks" / "02_deploy.ipynb"
    nb, error = run_notebook(source, tmp_path / "02_deploy.ipynb", kernel_env(backend.state_dir))
    assert error is None, error
    shown = {c.source.splitlines()[0]: str(c.outputs) for c in nb.cells if c.cell_type == "code"}
    assert "Mistral-7B-Instruct-v0.3" in shown["%llm_deploy models --search instruct"]
    assert "✓ fits" in shown["%llm_deploy shapes --model Meta-Llama-3.1-8B-Instruct"]
    assert "does not fit VM.GPU.A10.1" in shown["from odsc_magics import deploy"]
    create = next(text for line, text in shown.items() if line.startswith("%llm_deploy create"))
    assert "ACTIVE" in create
    assert len(llm_answers(nb)) == 1
    logs = shown["%llm_deploy logs deploy-demo --tail 10"]
    assert "access" in logs and "predict" in logs
    assert "INACTIVE" in shown["%llm_deploy deactivate deploy-demo"]
    assert "DELETED" in shown["%llm_deploy delete deploy-demo"]
