"""predict_frame's concurrency="auto" against the oracle (the best fixed concurrency of a sweep) per scenario.

Each scenario starts `odsc-magics local` with its own serving model, runs the same frame with `auto` and with
each fixed concurrency of the sweep (default 1, 2, 4, ... 512), and prints for every run rows/s, output tok/s,
p50/p99 latency, the share of requests throttled (429) and the number of 500 Service Timeouts; then `auto` as
a ratio to the oracle, and for the fixed-capacity and tenancy scenarios to the ideal (C / time per request,
or the tenancy's rate). Finally (with --memory-rows) the peak memory of 100,000 rows of ~1 KB prompts.

    python benchmarks/batch_throughput.py [--scenarios gpu-128,gpu-1000,gpu-128-faults,gpu-long,gpu-128-two,fixed,
        tenancy] [--time-scale 20]
        [--sweep 1,2,4,...,512] [--rows N] [--capacities 8,32,128] [--memory-rows 0]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field

os.environ.setdefault("OCI_SDK_DEFAULT_RETRY_ENABLED", "false")
os.environ.setdefault("OCI_SDK_DEFAULT_CIRCUITBREAKER_ENABLED", "false")

SWEEP = "1,2,4,8,16,32,64,128,256,512"


FIXED_RETRIES = 4


@dataclass
class Scenario:
    name: str
    flags: list[str]
    prompt_tokens: int
    max_tokens: int
    rows: int
    ideal: float | None = None  # rows/s the endpoint can give at best, where known in advance
    ideal_per_request: int | None = None  # the ideal is this capacity / the measured time per request
    deployment: dict = field(default_factory=dict)
    against: str | None = None  # also compare auto with this scenario's oracle (the same endpoint without faults)
    processes: int = 1  # batches run at once, each in its own process, on the one deployment
    key: str = ""
    time_scale: float = 1.0  # the platform's 60 s limit lasts 60 / time_scale real seconds, as does the client's


def scenarios(args) -> dict[str, Scenario]:
    scale = ["--time-scale", str(args.time_scale)]
    gpu = ["--serving", "gpu", *scale]
    ts = args.time_scale
    faults = ["--fault", "429:0.05", "--fault", "503:0.02"]
    found = {
        "gpu-128": Scenario("gpu 128/128", gpu, 128, 128, args.rows or 3000, time_scale=ts),
        "gpu-1000": Scenario("gpu 1000/20", gpu, 1000, 20, args.rows or 3000, deployment={"bandwidth_mbps": 1000},
                             time_scale=ts),
        "gpu-128-faults": Scenario("gpu 128/128 + faults", gpu + faults, 128, 128, args.rows or 3000, time_scale=ts,
                                   against="gpu-128"),
        "gpu-128-two": Scenario("gpu 128/128, two processes", gpu, 128, 128, args.rows or 3000, time_scale=ts,
                                processes=2),
        "gpu-long": Scenario("gpu 100/1000", gpu, 100, 1000, args.rows or 800, time_scale=ts),
        "tenancy": Scenario(
            "tenancy 150 rps, 0.2 s", ["--serving", "fixed", "--ttft-ms", "100", "--tokens-per-s", "100",
                                       "--tenancy-rps", "150"], 8, 11, args.rows or 1500, ideal=150.0,
            deployment={"bandwidth_mbps": 1000},
        ),
    }
    for capacity in [int(c) for c in args.capacities.split(",")]:
        for seconds, tokens in ((0.3, 21), (3.0, 21)):
            # ~25 round trips at the capacity: a shorter batch is mostly the climb to it
            rows = args.rows or max(600, int(capacity * 12 / seconds)) if seconds < 1 else max(300, capacity * 25)
            found[f"fixed-{capacity}-{seconds:g}"] = Scenario(
                f"fixed C={capacity}, {seconds:g} s",
                ["--serving", "fixed", "--capacity", str(capacity), "--ttft-ms", "100",
                 "--tokens-per-s", str(round((tokens - 1) / (seconds - 0.1), 3)), "--tenancy-rps", "100000"],
                8, tokens, rows, ideal_per_request=capacity, deployment={"bandwidth_mbps": 1000},
            )  # fmt: skip
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="gpu-128,gpu-1000,gpu-128-faults,gpu-long,gpu-128-two,fixed,tenancy")
    parser.add_argument("--time-scale", type=float, default=20.0)
    parser.add_argument("--sweep", default=SWEEP)
    parser.add_argument("--rows", type=int, default=None, help="rows per run (default per scenario)")
    parser.add_argument("--capacities", default="8,32,128")
    parser.add_argument("--memory-rows", type=int, default=0)
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--batch-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch_child:
        _batch_child(args.batch_child)
        return 0
    if args.memory_child:
        _memory_child(args.memory_child)
        return 0
    known = scenarios(args)
    chosen: list[str] = []
    for name in args.scenarios.split(","):
        chosen += [key for key in known if key.startswith(name + "-")] if name == "fixed" else [name]
    sweep = [int(level) for level in args.sweep.split(",") if level]
    print(f"time scale {args.time_scale}; sweep {sweep}", flush=True)
    table = []
    oracles: dict[str, float] = {}  # each scenario's oracle rows/s, by its key
    for key in chosen:
        known[key].key = key
        table.append(run_scenario(known[key], sweep, oracles))
        if known[key].against and known[key].against not in oracles:
            print(f"  (run {known[key].against} in the same run to compare with its oracle)")
    print("\nsummary: auto against the oracle (best fixed) and the ideal")
    for line in table:
        print(line)
    if args.memory_rows:
        _memory(args.memory_rows)
    return 0


def run_scenario(scenario: Scenario, sweep: list[int], oracles: dict[str, float]) -> str:
    import pandas as pd

    from odsc_magics.local.testing import start_backend

    print(f"\n== {scenario.name}: {scenario.rows} rows of {scenario.prompt_tokens} in / {scenario.max_tokens} out",
          flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as state:
        backend = start_backend(state, *scenario.flags, "--deploy-seconds", "0")
        try:
            _configure(backend)
            deployment = backend.create_deployment("bench", **scenario.deployment)
            endpoint = _connect(deployment["url"])
            filler = " ".join(["word"] * max(1, scenario.prompt_tokens - 4))
            frame = pd.DataFrame({"n": range(scenario.rows)})
            template = "Row {{ n }}: " + filler
            ideal = scenario.ideal
            if scenario.ideal_per_request:
                per_request = _time_per_request(endpoint, filler, scenario.max_tokens)
                ideal = scenario.ideal_per_request / per_request
                print(f"  time per request {per_request * 1000:.0f} ms, ideal {ideal:.1f} rows/s")
            results = {}
            # Against a capacity wall the best fixed level is the capacity itself: the sweep is that level.
            levels = [scenario.ideal_per_request] if scenario.ideal_per_request else sweep
            for label in ["auto", *levels]:
                figures = _measure(backend, deployment, frame, template, endpoint, label, scenario)
                results[label] = figures
                print(f"  {label!s:>5}: " + _format(figures), flush=True)
            if scenario.processes > 1:
                results["together"] = _together(backend, deployment, scenario)
                print(f"  auto in each of {scenario.processes} processes: "
                      + ", ".join(f"{rows_s:.1f}" for rows_s in results["together"]["each"])
                      + f" rows/s; together {results['together']['rows_s']:.1f} rows/s", flush=True)
        finally:
            backend.stop()
    if not levels:
        return f"{scenario.name:>24}: auto {_format(results['auto'])}"
    oracle_label = max(levels, key=lambda level: results[level]["rows_s"] if not results[level]["timeouts"] else 0)
    oracles[scenario.key] = results[oracle_label]["rows_s"]
    oracle, auto = results[oracle_label], results["auto"]
    line = (
        f"{scenario.name:>24}: auto {auto['rows_s']:.1f} rows/s = {auto['rows_s'] / oracle['rows_s']:.2f} of the "
        f"oracle (fixed {oracle_label}: {oracle['rows_s']:.1f}), tok/s {auto['tok_s'] / oracle['tok_s']:.2f}, "
        f"p50 {auto['p50']:.2f} s ({auto['p50'] / oracle['p50']:.2f}×), p99 {auto['p99']:.2f} s, "
        f"throttled {auto['throttled']:.1%}, timeouts {auto['timeouts']}"
    )
    if ideal:
        line += f"; {auto['rows_s'] / ideal:.2f} of the ideal {ideal:.1f}"
    if scenario.against in oracles:
        line += f"; {auto['rows_s'] / oracles[scenario.against]:.2f} of the oracle without faults"
    if "together" in results:
        shares = ", ".join(f"{rows_s / oracle['rows_s']:.2f}" for rows_s in results["together"]["each"])
        line += (f"; {scenario.processes} processes at once: each {shares} of the oracle, together "
                 f"{results['together']['rows_s'] / oracle['rows_s']:.2f}")  # fmt: skip
    return line


def _together(backend, deployment, scenario: Scenario) -> dict:
    """``scenario.processes`` batches of ``scenario.rows`` rows each, each in its own process, started at once."""
    import json
    import subprocess

    job = json.dumps({"state": str(backend.state_dir), "url": deployment["url"], "rows": scenario.rows,
                      "prompt_tokens": scenario.prompt_tokens, "max_tokens": scenario.max_tokens,
                      "time_scale": scenario.time_scale})  # fmt: skip
    children = [subprocess.Popen([sys.executable, __file__, "--batch-child", job], stdout=subprocess.PIPE, text=True)
                for _ in range(scenario.processes)]  # fmt: skip
    runs = []
    for child in children:
        out, _ = child.communicate()
        if child.returncode != 0:
            raise SystemExit("a batch process failed")
        runs.append(json.loads(out.strip().splitlines()[-1]))
    # From the first batch's start to the last one's end (each process's start-up, imports, is not the batch's)
    elapsed = max(run["ended"] for run in runs) - min(run["started"] for run in runs)
    return {"each": [run["rows_s"] for run in runs], "rows_s": scenario.processes * scenario.rows / elapsed}


def _batch_child(job_json: str) -> None:
    import json

    import pandas as pd

    from odsc_magics.batch import predict_frame
    from odsc_magics.predict_limits import TIMEOUT_S

    job = json.loads(job_json)
    os.environ["ODSC_MAGICS_BACKEND"] = "local"
    os.environ["ODSC_MAGICS_LOCAL_DIR"] = job["state"]
    endpoint = _connect(job["url"])
    filler = " ".join(["word"] * max(1, job["prompt_tokens"] - 4))
    frame = pd.DataFrame({"n": range(job["rows"])})
    started = time.time()
    out = predict_frame(frame, "Row {{ n }}: " + filler, deployment=endpoint, progress=False,
                        max_tokens=job["max_tokens"], ignore_eos=True, max_retries=20,
                        timeout=TIMEOUT_S / job["time_scale"])  # fmt: skip
    ended = time.time()
    print(json.dumps({"rows_s": len(out) / (ended - started), "started": started, "ended": ended,
                      "failed": int(out["error"].notna().sum())}))  # fmt: skip


def _format(figures: dict) -> str:
    return (f"{figures['rows_s']:8.1f} rows/s {figures['tok_s']:9.0f} tok/s  p50 {figures['p50']:6.2f} s  "
            f"p99 {figures['p99']:6.2f} s  {figures['throttled']:6.1%} throttled  {figures['timeouts']:4d} timeouts  "
            f"{figures['failed']} failed")  # fmt: skip


def _measure(backend, deployment, frame, template, endpoint, concurrency, scenario: Scenario) -> dict:
    from odsc_magics.batch import predict_frame
    from odsc_magics.predict_limits import TIMEOUT_S

    before = backend.stats()["deployments"].get(deployment["id"], {})
    start = time.perf_counter()
    # A fixed level far past what the endpoint answers inside the time limit times out again and again (each
    # retry waits in the same line): a few retries bound its run, and its timeouts rule it out as the oracle.
    retries = 20 if concurrency == "auto" else FIXED_RETRIES
    out = predict_frame(frame, template, deployment=endpoint, concurrency=concurrency, progress=False,
                        max_tokens=scenario.max_tokens, ignore_eos=True, max_retries=retries,
                        timeout=TIMEOUT_S / scenario.time_scale)  # fmt: skip
    elapsed = time.perf_counter() - start
    after = backend.stats()["deployments"][deployment["id"]]
    requests = after.get("predict_requests", 0) - before.get("predict_requests", 0)
    throttled = after.get("by_status", {}).get("429", 0) - before.get("by_status", {}).get("429", 0)
    latencies = sorted(out["latency_s"].dropna())
    return {
        "rows_s": len(out) / elapsed,
        "tok_s": float(out["completion_tokens"].fillna(0).sum()) / elapsed,
        "p50": _quantile(latencies, 0.5),
        "p99": _quantile(latencies, 0.99),
        "throttled": throttled / requests if requests else 0.0,
        "timeouts": after.get("timeouts", 0) - before.get("timeouts", 0),
        "failed": int(out["error"].notna().sum()),
    }


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def _configure(backend) -> None:
    os.environ["ODSC_MAGICS_BACKEND"] = "local"
    os.environ["ODSC_MAGICS_LOCAL_DIR"] = str(backend.state_dir)


def _connect(url: str):
    from odsc_magics.client import connect

    return connect(url)


def _time_per_request(endpoint, filler: str, max_tokens: int) -> float:
    samples = []
    for n in range(5):
        start = time.perf_counter()
        endpoint.complete(f"Row {n}: {filler}", max_tokens=max_tokens, ignore_eos=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples[1:])


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
