"""A real JupyterLab server on a local backend, and headless Debian Chromium driven by Playwright."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from odsc_magics.local.testing import start_backend

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".ci-artifacts" / "e2e"
CHROMIUM = os.environ.get("ODSC_MAGICS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAB_CONFIG = """
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
c.ServerApp.open_browser = False
c.ServerApp.allow_root = True
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _needs(condition: bool, reason: str) -> None:
    """Skip when a prerequisite is missing; in CI (ODSC_MAGICS_CI=1) fail instead, so nothing passes unseen."""
    if condition:
        return
    if os.environ.get("ODSC_MAGICS_CI"):
        pytest.fail(reason)
    pytest.skip(reason)


class Lab:
    """A running JupyterLab: its URL, token, notebook folder and backend."""

    def __init__(self, url: str, token: str, root: Path, backend, process: subprocess.Popen, log: Path) -> None:
        self.url = url
        self.token = token
        self.root = root
        self.backend = backend
        self.process = process
        self.log = log

    def api(self, path: str, method: str = "GET", body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")


@contextlib.contextmanager
def running_lab(base: Path, state_dir: Path, root: Path) -> Iterator[Lab]:
    """A JupyterLab server process on 127.0.0.1 with a token, serving ``root`` with ODSC_MAGICS_BACKEND=local on
    the backend in ``state_dir``; stopped on exit. Servers started on the same ``base`` share their Jupyter data
    directory (the notebook signing secret), as two runs of JupyterLab by one user do."""
    lab_dir = base / f"lab-{secrets.token_hex(4)}"
    config_dir = lab_dir / "config"
    config_dir.mkdir(parents=True)
    (config_dir / "jupyter_lab_config.py").write_text(LAB_CONFIG)
    # No "get notified about Jupyter news?" toast in the screenshots.
    notification = lab_dir / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    token = secrets.token_hex(16)
    port = _free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("ODSC_MAGICS_") and not key.startswith("JUPYTER_")
    }
    env.update(
        ODSC_MAGICS_BACKEND="local",
        ODSC_MAGICS_LOCAL_DIR=str(state_dir),
        JUPYTER_CONFIG_DIR=str(config_dir),
        JUPYTER_DATA_DIR=str(base / "jupyter-data"),
        JUPYTER_RUNTIME_DIR=str(lab_dir / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(lab_dir / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(lab_dir / "workspaces"),
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    log = lab_dir / "lab.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
        ],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    running = Lab(f"http://127.0.0.1:{port}", token, root, None, process, log)
    try:
        for _ in range(600):
            if process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited: {log.read_text()[-3000:]}")
            try:
                running.api("/api/status")
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"jupyter lab did not answer: {log.read_text()[-3000:]}")
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def needs_browser_and_extension() -> None:
    """Chromium and the installed labextension, or skip (fail in CI)."""
    _needs(shutil.which(CHROMIUM) is not None or Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}")
    labextensions = Path(sys.prefix, "share", "jupyter", "labextensions", "odsc-magics", "package.json")
    _needs(labextensions.exists(), f"the labextension is not installed ({labextensions}): run `make test`")


# Module scope: the server, the backend and Playwright (whose sync API keeps an event loop running in this
# thread) are gone before the rest of the suite runs.
@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    """JupyterLab on 127.0.0.1 with a token, ODSC_MAGICS_BACKEND=local and a deployment made by odsc_magics.deploy."""
    needs_browser_and_extension()

    from odsc_magics.config import LLMSettings
    from odsc_magics.control_plane import deploy

    base = tmp_path_factory.mktemp("e2e")
    state_dir = base / "backend"
    # Slow enough tokens that the answer visibly streams in (several display updates).
    backend = start_backend(state_dir, "--deploy-seconds", "0.2", "--ttft-ms", "0", "--tokens-per-s", "25")
    try:
        settings = LLMSettings(backend="local", local_dir=str(state_dir))
        backend.deployment = deploy(
            "Mistral-7B-Instruct-v0.3", "VM.GPU.A10.1", name="e2e-llm", progress=False, settings=settings
        )
        root = base / "notebooks"
        root.mkdir()
        with running_lab(base, state_dir, root) as running:
            running.backend = backend
            yield running
    finally:
        backend.stop()


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
