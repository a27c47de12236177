"""Rows/s of predict_frame against the local backend, as a share of the ideal C / (time per request).

For each capacity C it starts `odsc-magics local --capacity C --ttft-ms T --tokens-per-s R`, measures the time
one request takes, then runs the same frame with concurrency="auto", fixed C/2, C and 2C, and a plain
one-row-at-a-time loop, printing rows/s, the ratio to the ideal and the share of requests throttled (429s
counted by the backend). Finally it measures the peak memory of 100,000 rows of ~1 KB prompts.

    python benchmarks/batch_throughput.py [--capacities 8,32,128] [--rows N] [--ttft-ms 800]
        [--tokens-per-s 100] [--max-tokens 10] [--memory-rows 100000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("OCI_SDK_DEFAULT_RETRY_ENABLED", "false")
os.environ.setdefault("OCI_SDK_DEFAULT_CIRCUITBREAKER_ENABLED", "false")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacities", default="8,32,128")
    parser.add_argument("--rows", type=int, default=None, help="rows per run (default max(1000, 25 C))")
    parser.add_argument("--ttft-ms", type=float, default=800.0)
    parser.add_argument("--tokens-per-s", type=float, default=100.0)
    parser.add_argument("--max-tokens", type=int, default=10)
    parser.add_argument("--memory-rows", type=int, default=100_000)
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--loop-rows", type=int, default=20, help="rows for the one-at-a-time baseline")
    args = parser.parse_args(argv)
    if args.memory_child:
        _memory_child(args.memory_child)
        return 0

    import pandas as pd

    from odsc_magics.local.testing import start_backend

    print(f"ttft_ms={args.ttft_ms} tokens_per_s={args.tokens_per_s} max_tokens={args.max_tokens}")
    for capacity in [int(c) for c in args.capacities.split(",")]:
        with tempfile.TemporaryDirectory() as state:
            backend = start_backend(
                state,
                "--capacity", str(capacity),
                "--ttft-ms", str(args.ttft_ms),
                "--tokens-per-s", str(args.tokens_per_s),
                "--deploy-seconds", "0",
            )  # fmt: skip
            try:
                _configure(backend)
                deployment = backend.create_deployment("bench")
                endpoint = _connect(deployment["url"])
                per_request = _time_per_request(endpoint, args.max_tokens)
                ideal = capacity / per_request
                print(f"\nC={capacity}: time per request {per_request * 1000:.0f} ms, ideal {ideal:.1f} rows/s")
                rows = args.rows or max(1000, 25 * capacity)
                frame = pd.DataFrame({"n": range(rows)})
                print(f"  {rows} rows per run")
                runs = [("auto", "auto"), ("fixed C/2", max(1, capacity // 2)), ("fixed C", capacity),
                        ("fixed 2C", capacity * 2)]  # fmt: skip
                for label, concurrency in runs:
                    rate, throttled = _measure(backend, deployment, _frame_run(frame, endpoint, concurrency, args))
                    _report(label, rate, ideal, throttled)
                loop = _row_loop(frame.head(args.loop_rows), endpoint, args)
                rate, throttled = _measure(backend, deployment, loop, rows=min(args.loop_rows, rows))
                _report("row loop", rate, ideal, throttled)
            finally:
                backend.stop()
    if args.memory_rows:
        _memory(args.memory_rows)
    return 0


def _report(label: str, rate: float, ideal: float, throttled: float) -> None:
    print(f"  {label:>10}: {rate:8.1f} rows/s  {rate / ideal:5.2f} of ideal  {throttled:6.1%} throttled", flush=True)


def _frame_run(frame, endpoint, concurrency, args):
    from odsc_magics.batch import predict_frame

    def work():
        return predict_frame(frame, "Question {{ n }}: say something", deployment=endpoint, concurrency=concurrency,
                             progress=False, max_tokens=args.max_tokens, max_retries=20)  # fmt: skip

    return work


def _row_loop(frame, endpoint, args):
    def work():
        return [endpoint.complete(f"Question {n}: say something", max_tokens=args.max_tokens) for n in frame["n"]]

    return work


def _configure(backend) -> None:
    os.environ["ODSC_MAGICS_BACKEND"] = "local"
    os.environ["ODSC_MAGICS_LOCAL_DIR"] = str(backend.state_dir)


def _connect(url: str):
    from odsc_magics.client import connect

    return connect(url)


def _time_per_request(endpoint, max_tokens: int) -> float:
    samples = []
    for n in range(5):
        start = time.perf_counter()
        endpoint.complete(f"Warm-up {n}: say something", max_tokens=max_tokens)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples[1:])


def _measure(backend, deployment, work, rows: int | None = None) -> tuple[float, float]:
    before = backend.stats()["deployments"].get(deployment["id"], {})
    start = time.perf_counter()
    result = work()
    elapsed = time.perf_counter() - start
    after = backend.stats()["deployments"][deployment["id"]]
    requests = after.get("predict_requests", 0) - before.get("predict_requests", 0)
    throttled = after.get("by_status", {}).get("429", 0) - before.get("by_status", {}).get("429", 0)
    count = rows if rows is not None else len(result)
    return count / elapsed, (throttled / requests if requests else 0.0)


def _memory(rows: int) -> None:
    """Peak RSS of predict_frame over `rows` ~1 KB prompts, in a fresh process, against the frame and results."""
    import json
    import subprocess

    done = subprocess.run([sys.executable, __file__, "--memory-child", str(rows)], capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout + done.stderr)
        raise SystemExit("memory run failed")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    mb = 1e6
    elapsed = figures["elapsed"]
    print(f"\nmemory: {rows} rows of ~1 KB prompts in {elapsed:.1f} s ({rows / elapsed:.0f} rows/s)")
    print(f"  frame {figures['frame'] / mb:.1f} MB, results {figures['results'] / mb:.1f} MB; "
          f"RSS before the call {figures['rss_before'] / mb:.1f} MB, peak during it {figures['rss_peak'] / mb:.1f} MB: "
          f"+{(figures['rss_peak'] - figures['rss_before']) / mb:.1f} MB, of which "
          f"{(figures['rss_peak'] - figures['rss_before'] - figures['results']) / mb:.1f} MB beyond the results "
          f"({(figures['rss_peak'] - figures['rss_before'] - figures['results']) / figures['frame']:.2f} × the frame)")


def _memory_child(rows: int) -> None:
    import json
    import resource

    import pandas as pd

    from odsc_magics.batch import predict_frame
    from odsc_magics.local.testing import start_backend

    with tempfile.TemporaryDirectory() as state:
        backend = start_backend(state, "--capacity", "64", "--ttft-ms", "0", "--tokens-per-s", "0",
                                "--deploy-seconds", "0")  # fmt: skip
        try:
            _configure(backend)
            deployment = backend.create_deployment("bench-memory")
            endpoint = _connect(deployment["url"])
            endpoint.complete("warm up", max_tokens=1)
            filler = "lorem ipsum dolor sit amet " * 37  # ~1 KB
            frame = pd.DataFrame({"id": range(rows), "text": [f"{i} {filler}" for i in range(rows)]})
            frame_bytes = int(frame.memory_usage(deep=True).sum())
            rss_before = _rss()
            start = time.perf_counter()
            out = predict_frame(frame, "Summarise: {{ text }}", deployment=endpoint, progress=False, max_tokens=4)
            elapsed = time.perf_counter() - start
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            results = int(out.memory_usage(deep=True).sum()) - frame_bytes
            print(json.dumps({"frame": frame_bytes, "results": results, "rss_before": rss_before,
                              "rss_peak": peak, "elapsed": elapsed}))  # fmt: skip
        finally:
            backend.stop()


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


if __name__ == "__main__":
    sys.exit(main())
