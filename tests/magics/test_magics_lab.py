"""`odsc-magics lab`: the JupyterLab command line it builds (loopback only) and its help."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from odsc_magics.lab import lab_command, main


def test_lab_binds_loopback_and_passes_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    command = lab_command(["--no-browser"])
    assert command[:3] == [sys.executable, "-m", "jupyterlab"]
    assert "--ServerApp.ip=127.0.0.1" in command
    assert command[-1] == "--no-browser"
    assert ("--allow-root" in command) == (os.geteuid() == 0)


def test_lab_opens_the_notebooks_folder_when_there_is_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path)
    assert f"--ServerApp.root_dir={tmp_path / 'notebooks'}" in lab_command([])
    assert not any(a.startswith("--ServerApp.root_dir") for a in lab_command(["--notebook-dir=/x"]))


def test_lab_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "ODSC_MAGICS_BACKEND=local" in capsys.readouterr().out
