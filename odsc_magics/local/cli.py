"""``odsc-magics local``: run the local OCI Data Science model-deployment backend on 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from odsc_magics.local.faults import FAULT_KINDS, parse_fault
from odsc_magics.local.frontend import TENANCY_RPS

SERVING_MODES = ("gpu", "fixed")

HOST = "127.0.0.1"


def build_parser() -> argparse.ArgumentParser:
    from odsc_magics.local.process import default_state_dir

    parser = argparse.ArgumentParser(
        prog="odsc-magics local",
        description="A local emulator of OCI Data Science model deployments (control plane /20190101 and "
        "the predict data plane) on 127.0.0.1. Requests must be signed with the OCI config profile it writes "
        "to its state directory.",
        epilog="On start it prints one JSON line (endpoint, config_file, profile, compartment_id, project_id, "
        "pid, region, instance) and writes it to <state-dir>/start.json; GET /_emulator/stats reports the same "
        "pid and instance token. GET /_emulator/stats and /_emulator/access_logs answer loopback clients without "
        "a signature. Deployments fail as real ones do: a model that does not fit "
        "the shape's GPU memory (weights, or the KV cache of its --max-model-len) ends FAILED with vLLM's error in "
        "its predict log, and --no-capacity shapes end FAILED with the platform's capacity error. A deployment "
        "whose container environment sets EMULATOR_FAIL=<reason> ends FAILED with that reason. Logging "
        "(/20200531) has one log group, odsc-magics-local, with the logs 'access' and 'predict'; a deployment "
        "whose categoryLogDetails names them can be searched through Logging Search (/20190909/search). "
        "With --serving gpu each deployment instance is a simulated vLLM engine on the shape's GPUs (a FIFO queue "
        "under --max-num-seqs and the KV cache, chunked prefill, preemption; PARAMS flags honoured), instances "
        "behind a round-robin balancer; the builtin engine's text arrives at that engine's pace. The platform's "
        "front end answers 500 'Service Timeout' when a /predict answer, or a stream's first byte, takes more than "
        "60 s (simulated; the request is aborted in the engine), and 429 beyond the deployment's bandwidthMbps "
        "(default 10) or the tenancy's --tenancy-rps.",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0 = a free port)")
    parser.add_argument("--state-dir", type=Path, default=None, help=f"state directory (default {default_state_dir()})")
    parser.add_argument(
        "--engine", default="builtin", help="model server: 'builtin' (no weights) or 'openai:URL' (forward)"
    )
    parser.add_argument(
        "--serving",
        choices=SERVING_MODES,
        default=None,
        help="builtin engine timing: 'gpu' simulates vLLM on the deployment's shape (continuous batching, KV cache, "
        "step times of its GPUs; several instances round-robin), 'fixed' answers at --ttft-ms/--tokens-per-s "
        "however many requests run (default: gpu, or fixed when --ttft-ms or --tokens-per-s is given)",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        metavar="X",
        help="the simulated clock runs X times faster than real time; every limit in simulated time (the 60 s "
        "predict timeout, the bandwidth and request-rate limits) passes X times faster; stats report simulated "
        "time (default 1)",
    )
    parser.add_argument(
        "--tenancy-rps",
        type=float,
        default=TENANCY_RPS,
        metavar="N",
        help=f"predict requests per second the tenancy allows across all deployments; more are answered 429 "
        f"(default {TENANCY_RPS}, as the platform's)",
    )
    parser.add_argument(
        "--capacity",
        type=int,
        default=None,
        help="an extra wall: at most N concurrent predict requests per deployment, more are answered 429 at once "
        "(default none)",
    )
    parser.add_argument("--ttft-ms", type=float, default=None, help="--serving fixed: time to first token (default 50)")
    parser.add_argument(
        "--tokens-per-s", type=float, default=None, help="--serving fixed: tokens per second (default 100)"
    )
    parser.add_argument(
        "--deploy-seconds",
        type=float,
        default=2.0,
        help="how long CREATING and activation last (deactivate/update/delete take a third of it)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND:RATE",
        help=f"inject faults into predict requests; KIND is one of {', '.join(FAULT_KINDS)} (repeatable)",
    )
    parser.add_argument(
        "--no-capacity",
        action="append",
        default=[],
        metavar="SHAPE",
        help="the region has no capacity for SHAPE: deployments on it end FAILED (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault draws (default random)")
    parser.add_argument(
        "--retry-after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="add a retry-after header to 429 and 503 answers",
    )
    parser.add_argument("--log-level", default="WARNING", help="log level of the server's stderr log")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the backend until SIGINT/SIGTERM; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        faults = [parse_fault(text) for text in args.fault]
        if sum(rate for _, rate in faults) > 1.0 + 1e-9:
            raise ValueError("the --fault rates add up to more than 1")
        if args.capacity is not None and args.capacity < 1:
            raise ValueError("--capacity must be at least 1")
        if not args.time_scale > 0:
            raise ValueError("--time-scale must be greater than 0")
        if not args.tenancy_rps > 0:
            raise ValueError("--tenancy-rps must be greater than 0")
        if not 0 <= args.port <= 65535:
            raise ValueError("--port must be between 0 and 65535")
        from odsc_magics.local.catalog import SHAPE_NAMES

        unknown = [shape for shape in args.no_capacity if shape not in SHAPE_NAMES]
        if unknown:
            raise ValueError(f"--no-capacity: unknown shape {unknown[0]} (one of {', '.join(sorted(SHAPE_NAMES))})")
        from odsc_magics.local.engine import make_engine

        make_engine(args.engine)  # validates the spec before anything starts
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    from odsc_magics.local.process import default_state_dir
    from odsc_magics.local.runtime import Options

    state_dir = (args.state_dir or default_state_dir()).expanduser().resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock(state_dir)
    if lock is None:
        print(
            f"odsc-magics local: another backend is already running with state dir {state_dir}",
            file=sys.stderr,
        )
        return 1
    options = Options(
        state_dir=state_dir,
        port=args.port,
        engine=args.engine,
        serving=_serving(args),
        time_scale=args.time_scale,
        tenancy_rps=args.tenancy_rps,
        capacity=args.capacity,
        ttft_ms=50.0 if args.ttft_ms is None else args.ttft_ms,
        tokens_per_s=100.0 if args.tokens_per_s is None else args.tokens_per_s,
        deploy_seconds=args.deploy_seconds,
        faults=faults,
        no_capacity=list(args.no_capacity),
        seed=args.seed,
        retry_after=args.retry_after,
    )
    try:
        asyncio.run(serve(options))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"odsc-magics local: cannot listen on {HOST}:{options.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        lock.close()
    return 0


def _serving(args: argparse.Namespace) -> str:
    """--serving as given; else the timing flags of the fixed model select it, and gpu is the default."""
    if args.serving:
        return args.serving
    return "fixed" if args.ttft_ms is not None or args.tokens_per_s is not None else "gpu"


def _lock(state_dir: Path):
    from odsc_magics.local.process import LOCK_FILE

    handle = open(state_dir / LOCK_FILE, "a+")  # noqa: SIM115 - held for the process lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


async def serve(options) -> None:
    """Start the server, announce it (stdout line + start.json), serve until told to stop."""
    from aiohttp import web

    from odsc_magics.local import identity, logsearch, resources, server
    from odsc_magics.local.process import START_FILE, read_start
    from odsc_magics.local.runtime import Runtime
    from odsc_magics.local.signing import Verifier
    from odsc_magics.local.state import Store

    ident = identity.load_or_create(options.state_dir)
    store = Store(options.state_dir)
    verifier = Verifier(identity.load_public_key(options.state_dir), ident.key_id)
    runtime = Runtime(options, ident, store, verifier)
    resources.seed(runtime)
    logsearch.seed(runtime)
    app = server.create_app(runtime)
    # handler_cancellation: a client that goes away cancels its request, which aborts it in the engine.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, HOST, options.port, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]
    runtime.endpoint = f"http://{HOST}:{port}"
    info = {
        "endpoint": runtime.endpoint,
        "config_file": ident.config_file,
        "profile": ident.profile,
        "compartment_id": ident.compartment_id,
        "project_id": ident.project_id,
        "pid": os.getpid(),
        "region": ident.region,
        "instance": runtime.instance,
    }
    start_file = options.state_dir / START_FILE
    tmp = start_file.with_name(f".{START_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, start_file)
    print(json.dumps(info), flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        if (read_start(options.state_dir) or {}).get("pid") == os.getpid():
            with contextlib.suppress(OSError):
                start_file.unlink()
