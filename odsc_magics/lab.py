"""``odsc-magics lab`` (``make lab``): JupyterLab with every kernel on the local backend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

USAGE = """usage: odsc-magics lab [JUPYTER-LAB OPTIONS]

Starts (or reuses) the local backend in $ODSC_MAGICS_LOCAL_DIR (default ~/.odsc_magics/local), then
JupyterLab on 127.0.0.1 with ODSC_MAGICS_BACKEND=local, so `%load_ext odsc_magics` in any notebook
talks to the local backend. Options are passed to `jupyter lab` unchanged."""


def lab_command(args: list[str]) -> list[str]:
    """The `jupyter lab` command line: loopback only, root allowed when running as root."""
    command = [sys.executable, "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1"]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in args:
        command.append("--allow-root")
    notebooks = Path.cwd() / "notebooks"
    if notebooks.is_dir() and not any(a.startswith(("--notebook-dir", "--ServerApp.root_dir")) for a in args):
        command.append(f"--ServerApp.root_dir={notebooks}")
    return command + args


def main(argv: list[str] | None = None) -> int:
    """Run JupyterLab on the local backend until it exits; returns its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in {"-h", "--help"}:
        print(USAGE)
        return 0
    from odsc_magics.local.process import default_state_dir, ensure_running

    state_dir = default_state_dir()
    info = ensure_running(state_dir)
    print(f"odsc-magics: local backend at {info['endpoint']} (state in {state_dir})", flush=True)
    env = dict(os.environ, ODSC_MAGICS_BACKEND="local", ODSC_MAGICS_LOCAL_DIR=str(state_dir))
    command = lab_command(args)
    if os.name == "posix":  # become JupyterLab, so signals (Ctrl-C, kill) reach it directly
        sys.stdout.flush()
        os.execve(command[0], command, env)
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
