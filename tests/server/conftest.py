"""Jupyter server fixtures (pytest-jupyter) with the odsc_magics server extension and a local backend."""

from __future__ import annotations

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (fixtures and the async-test hooks, scoped to this folder)

from odsc_magics.context import clear_contexts


@pytest.fixture
def jp_server_config():
    """The extension enabled; unauthenticated requests refused."""
    return {
        "ServerApp": {
            "jpserver_extensions": {"odsc_magics": True, "jupyter_server_terminals": False},
            "allow_unauthenticated_access": False,
        }
    }


@pytest.fixture
def use_backend(monkeypatch: pytest.MonkeyPatch):
    """``use_backend(running)``: the server's deployment API talks to that local backend, as the magics would."""

    def use(running) -> None:
        monkeypatch.setenv("ODSC_MAGICS_BACKEND", "local")
        monkeypatch.setenv("ODSC_MAGICS_LOCAL_DIR", str(running.state_dir))
        clear_contexts()

    yield use
    clear_contexts()
