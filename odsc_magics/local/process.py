"""Start, find and stop a detached local backend process by its state directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from odsc_magics.errors import EndpointUnreachableError


def server_command(state_dir: Path, flags: Sequence[str] = ()) -> list[str]:
    """The command line of a local backend on a free loopback port with its state in ``state_dir``."""
    return [sys.executable, "-m", "odsc_magics", "local", "--state-dir", str(state_dir), "--port", "0", *flags]


def default_state_dir() -> Path:
    """``$ODSC_MAGICS_LOCAL_DIR`` or ``~/.odsc_magics/local``."""
    configured = os.environ.get("ODSC_MAGICS_LOCAL_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".odsc_magics" / "local"


def child_env() -> dict[str, str]:
    """The environment for a backend subprocess: ours, with this package importable even if not installed."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        env["PYTHONPATH"] = os.pathsep.join([root, *parts])
    return env


def _read_start(state_dir: Path) -> dict | None:
    try:
        return json.loads((state_dir / "start.json").read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours still "exists"; reap it if so
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == 0


def _answers(endpoint: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/_emulator/stats", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def running(state_dir: str | Path | None = None) -> dict | None:
    """start.json of the backend of that state dir if it is alive and answering, else None."""
    directory = Path(state_dir).expanduser() if state_dir else default_state_dir()
    info = _read_start(directory)
    if info and _alive(int(info.get("pid", 0))) and _answers(info["endpoint"]):
        return info
    return None


def ensure_running(
    state_dir: str | Path | None = None, *, extra_args: Sequence[str] = (), timeout: float = 30.0
) -> dict:
    """Reuse the running backend of ``state_dir`` or start one detached; returns its start.json."""
    directory = (Path(state_dir).expanduser() if state_dir else default_state_dir()).resolve()
    info = running(directory)
    if info:
        return info
    directory.mkdir(parents=True, exist_ok=True)
    start_file = directory / "start.json"
    stale = _read_start(directory)
    if stale and not _alive(int(stale.get("pid", 0))):
        start_file.unlink(missing_ok=True)
    log_path = directory / "server.log"
    command = server_command(directory, extra_args)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
            env=child_env(),
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = _read_start(directory)
        if info and info.get("pid") == process.pid and _answers(info["endpoint"]):
            return info
        code = process.poll()
        if code is not None:
            raise EndpointUnreachableError(
                f"the local backend exited with code {code} while starting",
                hint=f"See {log_path} for its output.",
            )
        time.sleep(0.05)
    raise EndpointUnreachableError(
        f"the local backend did not start within {timeout:g} s", hint=f"See {log_path} for its output."
    )


def stop(state_dir: str | Path | None = None) -> bool:
    """Stop the backend of ``state_dir`` (SIGTERM, then SIGKILL after 10 s); True if one was running."""
    directory = Path(state_dir).expanduser() if state_dir else default_state_dir()
    info = _read_start(directory)
    if not info:
        return False
    pid = int(info.get("pid", 0))
    if pid <= 0 or not _alive(pid):
        (directory / "start.json").unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        if not _alive(pid):
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
    (directory / "start.json").unlink(missing_ok=True)
    return True
