"""Shared fixtures: a local backend over loopback, clean environment, no SDK retries, a private HOME."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# The package is importable from the checkout even when it is not installed into the environment.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

# Before anything imports oci: raw errors in tests, no circuit breaker carrying state between tests.
os.environ["OCI_SDK_DEFAULT_RETRY_ENABLED"] = "false"
os.environ["OCI_SDK_DEFAULT_CIRCUITBREAKER_ENABLED"] = "false"
# Tests never read or write the real ~/.oci or ~/.odsc_magics.
os.environ["HOME"] = tempfile.mkdtemp(prefix="odsc-magics-home-")

import pytest  # noqa: E402

from odsc_magics.local.testing import RunningBackend, start_backend  # noqa: E402

FAST_FLAGS = ("--deploy-seconds", "0.2", "--ttft-ms", "0", "--tokens-per-s", "0")
_USER_ENV = (
    "OCI_CONFIG_FILE",
    "OCI_CLI_PROFILE",
    "OCI_RESOURCE_PRINCIPAL_VERSION",
    "NB_SESSION_OCID",
    "PROJECT_OCID",
    "PROJECT_COMPARTMENT_OCID",
)


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ODSC_MAGICS_* or OCI profile settings leak in from the environment running the tests."""
    for name in list(os.environ):
        if name.startswith("ODSC_MAGICS_") or name in _USER_ENV:
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def backend(tmp_path_factory: pytest.TempPathFactory):
    """One local backend for the session, with an ACTIVE completion deployment and a chat one."""
    running = start_backend(tmp_path_factory.mktemp("backend"), *FAST_FLAGS)
    try:
        running.deployment = running.create_deployment("test-llm")
        running.chat_deployment = running.create_deployment("test-chat", chat=True)
        yield running
    finally:
        running.stop()


@pytest.fixture
def backend_factory(tmp_path_factory: pytest.TempPathFactory):
    """``factory(*flags) -> RunningBackend`` (fast flags first, yours override); all stopped at teardown."""
    started: list[RunningBackend] = []

    def factory(*flags: str) -> RunningBackend:
        running = start_backend(tmp_path_factory.mktemp("backend"), *FAST_FLAGS, *flags)
        started.append(running)
        return running

    yield factory
    for running in started:
        running.stop()
