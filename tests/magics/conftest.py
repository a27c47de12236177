"""Fixtures for the kernel tests of the magics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from kernel_helpers import RecordingClient, kernel_env


@pytest.fixture
def run_cells(tmp_path: Path):
    """``run_cells(backend, cells, allow_errors=True, on_comm=None) -> (nb, client)`` in one fresh kernel."""

    def run(backend: Any, cells: list[str], *, allow_errors: bool = True, on_comm=None, timeout: int = 120):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        client = RecordingClient(
            nb,
            on_comm=on_comm,
            kernel_name="python3",
            timeout=timeout,
            allow_errors=allow_errors,
            resources={"metadata": {"path": str(tmp_path)}},
        )
        client.execute(env=kernel_env(backend, home))
        return nb, client

    return run


