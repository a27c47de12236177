"""A 2,000-row frame against a fault-injecting local backend: nothing lost, nothing repeated, resumable.

    python benchmarks/batch_faults.py [--rows 2000] [--capacity 16]

Starts `odsc-magics local --capacity 16 --fault 429:0.1 --fault 500:0.05 --fault reset:0.02 --fault cut:0.02`,
runs predict_frame over the frame and prints what the backend counted (requests, faults, complete answers,
answers to a request body that had already been answered). Then it runs the same frame with a checkpoint,
interrupts it at half way, re-runs it and prints how many rows the re-run sent and whether its result
equals the uninterrupted run's. Last, it stops the backend a tenth of the way through a third run and prints
how many requests went unanswered, how long the call took to give up and how many answered rows it kept.
"""

from __future__ import annotations

import _thread
import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OCI_SDK_DEFAULT_RETRY_ENABLED", "false")
os.environ.setdefault("OCI_SDK_DEFAULT_CIRCUITBREAKER_ENABLED", "false")

FAULTS = ("--fault", "429:0.1", "--fault", "500:0.05", "--fault", "reset:0.02", "--fault", "cut:0.02")
COMPARED = ["completion", "finish_reason", "prompt_tokens", "completion_tokens", "error"]


class AfterAnswers:
    """An endpoint that calls ``action`` (interrupt the kernel, stop the backend) once it has answered ``count``."""

    def __init__(self, endpoint: Any, count: int, action: Callable[[], Any]) -> None:
        self.endpoint = endpoint
        self.count = count
        self.action = action
        self.lock = threading.Lock()
        self.answered = 0
        self.acted = False
        self.unanswered_after = 0  # requests begun once the action had started that got no answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.endpoint, name)

    def complete(self, prompt: str, **params: Any) -> Any:
        after = self.acted
        try:
            result = self.endpoint.complete(prompt, **params)
        except Exception:
            with self.lock:
                self.unanswered_after += after
            raise
        with self.lock:
            self.answered += 1
            now = self.answered == self.count
        if now:
            self.acted = True
            self.action()
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--capacity", type=int, default=16)
    parser.add_argument("--ttft-ms", type=float, default=20.0)
    args = parser.parse_args(argv)

    import pandas as pd

    from odsc_magics.batch import BatchInterrupted, predict_frame
    from odsc_magics.client import connect
    from odsc_magics.local.testing import start_backend

    with tempfile.TemporaryDirectory() as state:
        flags = ("--capacity", str(args.capacity), "--ttft-ms", str(args.ttft_ms), "--deploy-seconds", "0", *FAULTS)
        backend = start_backend(state, *flags)
        try:
            os.environ["ODSC_MAGICS_BACKEND"] = "local"
            os.environ["ODSC_MAGICS_LOCAL_DIR"] = state
            print(f"backend: odsc-magics local {' '.join(flags)}")
            rows = args.rows
            index = pd.Index([f"row-{n:05d}" for n in reversed(range(rows))], name="id")
            frame = pd.DataFrame({"text": [f"Item {n}: is this review positive?" for n in range(rows)]}, index=index)
            template = "Classify: {{ text }}"

            plain = backend.create_deployment("faults-plain")
            endpoint = connect(plain["url"])
            start = time.perf_counter()
            out = predict_frame(frame, template, deployment=endpoint, progress=False, max_tokens=6)
            elapsed = time.perf_counter() - start
            stats = backend.deployment_stats(plain["id"])
            print(f"\n{rows} rows in {elapsed:.1f} s: answered {int(out['error'].isna().sum())}, "
                  f"failed {int(out['error'].notna().sum())}, index and order kept: {list(out.index) == list(index)}")
            print(f"  backend: {stats['predict_requests']} requests, by status {stats['by_status']}, "
                  f"faults {stats['faults']}")
            print(f"  complete answers {stats['succeeded']} (rows {rows}); "
                  f"answers to an already-answered body: {stats['duplicate_successes']}")
            print(f"  attempts per row: {out['attempts'].value_counts().sort_index().to_dict()}")

            resumable = backend.create_deployment("faults-resume")
            endpoint = connect(resumable["url"])
            checkpoint = Path(state) / "resume.sqlite"
            half = rows // 2

            try:
                interrupting = AfterAnswers(endpoint, half, _thread.interrupt_main)
                predict_frame(frame, template, deployment=interrupting, checkpoint=checkpoint, progress=False,
                              max_tokens=6)  # fmt: skip
                raise SystemExit("the run finished before it could be interrupted")
            except BatchInterrupted as stopped:
                kept = int(stopped.partial["completion"].notna().sum())
            before = backend.deployment_stats(resumable["id"])["succeeded"]
            again = predict_frame(frame, template, deployment=endpoint, checkpoint=checkpoint, progress=False,
                                  max_tokens=6)  # fmt: skip
            sent = backend.deployment_stats(resumable["id"])["succeeded"] - before
            summary = again.attrs["odsc_magics"]
            equal = again[COMPARED].equals(out[COMPARED])
            print(f"\ninterrupted at {before} complete answers: {kept} rows finished in the partial frame")
            print(f"  re-run: {summary['resumed_from_checkpoint']} rows from the checkpoint, {sent} rows sent "
                  f"(rows - checkpointed = {rows - summary['resumed_from_checkpoint']}); "
                  f"result equals the uninterrupted run's: {equal}")

            dying = backend.create_deployment("faults-backend-stops")
            stopping = AfterAnswers(connect(dying["url"]), rows // 10, backend.stop)
            start = time.perf_counter()
            out = predict_frame(frame, template, deployment=stopping, progress=False, max_tokens=6)
            elapsed = time.perf_counter() - start
            kept = int(out["completion"].notna().sum())
            not_sent = int((out["attempts"] == 0).sum())
            print(f"\nbackend stopped after {rows // 10} answers: the call returned in {elapsed:.1f} s; "
                  f"{stopping.unanswered_after} unanswered requests sent after it was told to stop "
                  f"(concurrency then {out.attrs['odsc_magics']['final_concurrency']}); {kept} answered rows kept "
                  f"(the endpoint answered {stopping.answered}); {not_sent} rows not sent")
            print(f"  error of the last row: {out['error'].iat[-1]}")
        finally:
            backend.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
