"""``python -m odsc_magics.demo`` (``make demo``): run the quickstart notebook on the local backend.

Starts (or reuses) the local backend in ``$ODSC_MAGICS_LOCAL_DIR`` (default ``~/.odsc_magics/local``),
executes ``notebooks/01_quickstart.ipynb`` headlessly in a fresh kernel, prints the streamed answers
and where the executed notebook was written. Exit code 0 only if every cell ran and answers came back.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "01_quickstart.ipynb"
EXECUTED = ROOT / "notebooks" / "executed" / "01_quickstart.ipynb"


def llm_answers(nb: Any) -> list[tuple[str, str]]:
    """(first line of the cell, answer Markdown) for every odsc-magics answer in an executed notebook."""
    answers = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if "odsc_magics" in output.get("metadata", {}) and "text/markdown" in output.get("data", {}):
                answers.append((cell.source.splitlines()[0], output["data"]["text/markdown"]))
    return answers


def kernel_env(state_dir: Path) -> dict[str, str]:
    """The kernel's environment: the local backend's state dir and this package importable."""
    env = dict(os.environ)
    env["ODSC_MAGICS_LOCAL_DIR"] = str(state_dir)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def run_notebook(
    source: Path, target: Path, env: dict[str, str], *, timeout: int = 300
) -> tuple[Any, str | None]:
    """Execute ``source`` with the venv's python3 kernel and write it to ``target``; (nb, error or None)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(source, as_version=4)
    client = NotebookClient(
        nb, kernel_name="python3", timeout=timeout, resources={"metadata": {"path": str(source.parent)}}
    )
    error = None
    try:
        client.execute(env=env)
    except CellExecutionError as exc:
        error = str(exc)
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    return nb, error


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m odsc_magics.demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--notebook", type=Path, default=NOTEBOOK, help="notebook to run (default: quickstart)"
    )
    parser.add_argument("--output", type=Path, default=EXECUTED, help="where to write the executed notebook")
    args = parser.parse_args(argv)

    from odsc_magics.local.process import default_state_dir, ensure_running

    state_dir = default_state_dir()
    print(f"odsc-magics demo: local backend in {state_dir}", flush=True)
    info = ensure_running(state_dir)
    print(f"  backend listening at {info['endpoint']} (region {info['region']})", flush=True)
    print(f"  running {args.notebook} in a fresh kernel…", flush=True)
    started = time.perf_counter()
    nb, error = run_notebook(args.notebook, args.output, kernel_env(state_dir))
    elapsed = time.perf_counter() - started
    answers = llm_answers(nb)
    for line, markdown in answers:
        print(f"\n── {line}\n{markdown.strip()}")
    print(f"\nExecuted notebook written to {args.output} ({elapsed:.1f} s).")
    if error is not None:
        print(f"\nA cell failed:\n{error}", file=sys.stderr)
        return 1
    if not answers:
        print("\nNo answer was produced: the notebook ran but showed no odsc-magics output.", file=sys.stderr)
        return 1
    print(f"OK: {len(answers)} answers streamed from the local deployment.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
