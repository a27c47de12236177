"""embed_frame over many short texts against the local backend: rows/s, requests sent, peak memory vs the result.

Starts `odsc-magics local`, deploys all-MiniLM-L6-v2 (384 dimensions, the TEI container) and embeds N short texts
(default 100,000) twice: once timed (rows/s, requests the client sent and the backend counted, bytes per row on
the wire), once under tracemalloc (the peak of Python's allocations during the call). It prints the peak RSS
growth of this process as well (ru_maxrss), each against the size of the result (N × 384 float32).

The deployment's load-balancer bandwidth is lifted (--bandwidth-mbps, default 100000) so the figure is the
client's and the server's speed; the platform's default of 10 Mbps caps a run at about 1.25 MB/s of request and
response bytes, which the printed bytes per row turn into rows/s.

    python benchmarks/embed_throughput.py [--rows 100000] [--bandwidth-mbps 100000] [--no-tracemalloc]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("OCI_SDK_DEFAULT_RETRY_ENABLED", "false")
os.environ.setdefault("OCI_SDK_DEFAULT_CIRCUITBREAKER_ENABLED", "false")

MODEL, DIMENSION = "all-MiniLM-L6-v2", 384
WORDS = [
    *("price", "quality", "delivery", "support", "battery", "screen"),
    *("camera", "sound", "size", "colour", "weight", "value"),
]


def texts(n: int) -> list[str]:
    """Short reviews (7-9 words), all different."""
    return [
        f"review {i}: the {WORDS[i % 12]} and {WORDS[(i // 12) % 12]} were {'good' if i % 3 else 'poor'}"
        for i in range(n)
    ]


def rss_now() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def wire_bytes_per_row(backend, deployment, sample: list[str]) -> float:
    """Request and reply bytes per text of one full request, as the front end's bandwidth counts them."""
    import json

    request = deployment.endpoint().build_embedding_request(sample)
    body = json.dumps(request["body"], separators=(",", ":")).encode()
    reply = backend.session().post(request["url"], data=body, headers=request["headers"])
    reply.raise_for_status()
    return (len(body) + len(reply.content)) / len(sample)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--bandwidth-mbps", type=int, default=100_000)
    parser.add_argument("--no-tracemalloc", action="store_true")
    args = parser.parse_args()

    import pandas as pd

    from odsc_magics import control_plane, embed_frame
    from odsc_magics.config import LLMSettings
    from odsc_magics.local.testing import start_backend

    state = Path(tempfile.mkdtemp(prefix="embed-bench-"))
    backend = start_backend(state, "--deploy-seconds", "0.2")
    try:
        settings = LLMSettings(backend="local", local_dir=str(backend.state_dir))
        deployment = control_plane.deploy(
            MODEL, "VM.GPU.A10.1", name="bench", bandwidth_mbps=args.bandwidth_mbps, progress=False, settings=settings
        )
        frame = pd.DataFrame({"text": texts(args.rows)})
        result_bytes = args.rows * DIMENSION * 4
        print(f"{args.rows:,} texts, {MODEL} ({DIMENSION} dimensions), result {result_bytes / 2**20:.1f} MiB")

        sent_before = backend.deployment_stats(deployment.id)["predict_requests"]
        rss_before = rss_now()
        started = time.perf_counter()
        out = embed_frame(frame, "text", deployment=deployment, progress=False)
        elapsed = time.perf_counter() - started
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        stats = backend.deployment_stats(deployment.id)
        summary = out.attrs["odsc_magics"]
        failed = int(out["error"].notna().sum())
        wire = wire_bytes_per_row(backend, deployment, frame["text"].tolist()[:32])
        print(f"batching: {summary['batching']}")
        print(
            f"rows/s {args.rows / elapsed:,.0f} ({elapsed:.1f} s), failed rows {failed}, requests sent "
            f"{summary['requests']:,} (the backend counted {stats['predict_requests'] - sent_before:,}), "
            f"throttled {summary['throttled']}, peak concurrency {summary['peak_concurrency']}"
        )
        print(
            f"bytes through the load balancer per row: {wire:,.0f} (request + base64 reply); at the platform's "
            f"default 10 Mbps that caps a deployment at {10e6 / 8 / wire:,.0f} rows/s"
        )
        print(
            f"peak RSS growth {max(0, peak_rss - rss_before) / 2**20:,.1f} MiB "
            f"= {max(0, peak_rss - rss_before) / result_bytes:.2f} × the result (ru_maxrss; includes the "
            "allocator's retained pages)"
        )
        del out

        if not args.no_tracemalloc:
            tracemalloc.start()
            out = embed_frame(frame, "text", deployment=deployment, progress=False)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            held = out["embedding"].iloc[0].base.nbytes
            print(
                f"tracemalloc peak during embed_frame {peak / 2**20:,.1f} MiB = {peak / result_bytes:.2f} × the "
                f"result ({held / 2**20:.1f} MiB matrix)"
            )
    finally:
        backend.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
