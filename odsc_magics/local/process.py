"""Start, find and stop a detached local backend process by its state directory.

``start.json`` (written by the backend once it listens) is read here only, by :func:`read_start`. A
PermissionError has one meaning throughout, whether reading ``start.json`` or signalling the pid it names:
the file or the process belongs to another user, so it is not a backend of ours to reuse or stop.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from odsc_magics.errors import EndpointUnreachableError

log = logging.getLogger(__name__)

START_FILE = "start.json"
LOCK_FILE = "lock"
_LOOPBACK_PREFIX = "http://127.0.0.1:"
_children: dict[int, subprocess.Popen] = {}  # backends this process started, so their exit is noticed


def server_command(state_dir: Path, flags: Sequence[str] = ()) -> list[str]:
    """The command line of a local backend on a free loopback port with its state in ``state_dir``."""
    return [sys.executable, "-m", "odsc_magics", "local", "--state-dir", str(state_dir), "--port", "0", *flags]


def default_state_dir() -> Path:
    """The ``local_dir`` setting (``%config``, env ODSC_MAGICS_LOCAL_DIR, default ``~/.odsc_magics/local``)."""
    from odsc_magics.config import resolve

    return Path(resolve("local_dir")[0]).expanduser()


def child_env() -> dict[str, str]:
    """The environment for a backend subprocess: ours, with this package importable even if not installed."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        env["PYTHONPATH"] = os.pathsep.join([root, *parts])
    return env


def read_start(state_dir: str | Path) -> dict | None:
    """The ``start.json`` of ``state_dir``; None when it is missing, half-written or another user's."""
    try:
        info = json.loads((Path(state_dir) / START_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def process_alive(pid: object) -> bool:
    """True while process ``pid`` runs and is ours to signal: False once it exited, even as a zombie."""
    try:
        pid = int(pid)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            # poll() also says None while another thread holds the child's wait lock: a zombie is not alive
            return not _zombie(pid)
        _children.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except OSError:  # ProcessLookupError: gone; PermissionError: another user's process
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)  # reaps a child of ours that exited
    except ChildProcessError:
        done = 0  # not our child
    return done == 0 and not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _stats(endpoint: str, timeout: float) -> dict | None:
    if not endpoint.startswith(_LOOPBACK_PREFIX):
        return None  # the backend listens on loopback only; anything else is not one of ours
    try:
        with urllib.request.urlopen(f"{endpoint}/_emulator/stats", timeout=timeout) as response:
            body = json.loads(response.read()) if response.status == 200 else None
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def answers_as_started(info: dict, timeout: float = 2.0) -> bool:
    """True when the backend ``info`` (a start.json) describes answers on its endpoint with its instance token."""
    token = info.get("instance")
    endpoint = info.get("endpoint")
    if not token or not isinstance(endpoint, str):
        return False
    body = _stats(endpoint, timeout)
    return body is not None and body.get("instance") == token and body.get("pid") == info.get("pid")


def _holds_lock(pid: int, state_dir: Path) -> bool:
    """True when ``pid`` has the state dir's lock file open and that lock is held (Linux /proc)."""
    lock_path = state_dir / LOCK_FILE
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            pass  # held exclusively: by a backend; which one is answered below
        else:
            return False  # nobody holds it: no backend runs on this state dir
    finally:
        os.close(fd)
    target = os.path.realpath(lock_path)
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for name in descriptors:
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}") == target:
                return True
        except OSError:
            continue
    return False


def is_ours(info: dict, state_dir: str | Path) -> bool:
    """True when the process ``info`` (start.json) names is proven to be the backend of ``state_dir``.

    Proof is either answer: its loopback ``/_emulator/stats`` reports start.json's instance token and pid,
    or the process holds the state dir's lock. A live pid alone proves nothing: pids are recycled.
    """
    if not process_alive(info.get("pid")):
        return False
    return answers_as_started(info) or _holds_lock(int(info["pid"]), Path(state_dir).expanduser().resolve())


def _state_dir(state_dir: str | Path | None) -> Path:
    return (Path(state_dir).expanduser() if state_dir else default_state_dir()).resolve()


def running(state_dir: str | Path | None = None) -> dict | None:
    """start.json of the backend of that state dir if it is alive, ours and answering, else None."""
    info = read_start(_state_dir(state_dir))
    if info and process_alive(info.get("pid")) and answers_as_started(info):
        return info
    return None


def _remove_stale(directory: Path, info: dict) -> None:
    """Remove a start.json whose process is gone or is not this state dir's backend (unless replaced since)."""
    if read_start(directory) == info:
        (directory / START_FILE).unlink(missing_ok=True)


def ensure_running(
    state_dir: str | Path | None = None, *, extra_args: Sequence[str] = (), timeout: float = 30.0
) -> dict:
    """Reuse the running backend of ``state_dir`` or start one detached; returns its start.json."""
    directory = _state_dir(state_dir)
    info = running(directory)
    if info:
        return info
    directory.mkdir(parents=True, exist_ok=True)
    stale = read_start(directory)
    if stale and not is_ours(stale, directory):
        _remove_stale(directory, stale)
    log_path = directory / "server.log"
    command = server_command(directory, extra_args)
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
            close_fds=True,
            env=child_env(),
        )
    _children[process.pid] = process
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = read_start(directory)
        if info and info.get("pid") == process.pid and answers_as_started(info):
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
    """Stop the backend of ``state_dir`` (SIGTERM, then SIGKILL after 10 s); True if one was running.

    Only a process proven to be that backend (see :func:`is_ours`) is signalled. A start.json naming any
    other process (a crashed backend's pid, since reused) is removed, with a warning, and nothing is signalled.
    """
    directory = _state_dir(state_dir)
    info = read_start(directory)
    if not info:
        return False
    if not is_ours(info, directory):
        if process_alive(info.get("pid")):
            log.warning(
                "%s names pid %s, which is not the local backend of %s; removed it without signalling the process",
                directory / START_FILE,
                info.get("pid"),
                directory,
            )
        _remove_stale(directory, info)
        return False
    pid = int(info["pid"])
    os.kill(pid, signal.SIGTERM)
    if not _exited(pid, 10.0) and (_holds_lock(pid, directory) or answers_as_started(info)):
        os.kill(pid, signal.SIGKILL)
        _exited(pid, 5.0)
    _remove_stale(directory, info)
    return True


def _exited(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
