"""Predict requests per second the local backend sustains, and its memory (RSS) after 10,000 requests.

How it measures: the backend runs as its own process (builtin engine, ``--ttft-ms 0 --tokens-per-s 0``).
One predict request is signed once with the local profile (a signature stays valid for the 5-minute date
window) and its raw bytes are replayed by a load generator in a separate process: plain asyncio sockets with
HTTP/1.1 keep-alive, ``--connections`` requests in flight, no per-request signing or HTTP library, so the
client is not the bottleneck (its CPU time is printed next to the server's). The server still verifies the
RSA signature and body hash of every request. Phase 1 sends 10,000 requests and reads the server's VmRSS;
phase 2 runs for ``--seconds`` and reports the rate. Last, for comparison, a realistic client (requests +
the oci Signer, each request signed anew, 4 threads) runs against the same deployment for 5 s.

    .venv/bin/python benchmarks/emulator_throughput.py [--connections 32] [--seconds 10] [--stream]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BODY = {"model": "odsc-llm", "prompt": "What are activation functions?", "max_tokens": 16}


# --- load generator (runs in its own process) -------------------------------------------------------


async def _worker(host: str, port: int, payload: bytes, state: dict) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    latencies, statuses = state["latencies"], state["statuses"]
    try:
        while state["remaining"] > 0 and time.perf_counter() < state["deadline"]:
            state["remaining"] -= 1
            started = time.perf_counter()
            writer.write(payload)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            lower = head.lower()
            at = lower.find(b"content-length:")
            if at >= 0:
                end = lower.find(b"\r\n", at)
                await reader.readexactly(int(lower[at + 15 : end]))
            else:  # chunked (a stream): read chunks up to the terminating zero-size chunk
                while True:
                    size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def _load(host: str, port: int, payload: bytes, connections: int, count: int, seconds: float) -> dict:
    state = {
        "remaining": count,
        "deadline": time.perf_counter() + seconds,
        "latencies": [],
        "statuses": {},
    }
    cpu0, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(_worker(host, port, payload, state) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies = sorted(state["latencies"])
    done = len(latencies)
    return {
        "requests": done,
        "seconds": elapsed,
        "rate": done / elapsed if elapsed else 0.0,
        "statuses": {str(k): v for k, v in state["statuses"].items()},
        "p50_ms": latencies[done // 2] * 1000 if done else None,
        "p99_ms": latencies[int(done * 0.99)] * 1000 if done else None,
        "client_cpu_s": time.process_time() - cpu0,
    }


def client_main(argv: list[str]) -> int:
    host, port, request_file, connections, count, seconds = argv
    payload = Path(request_file).read_bytes()
    result = asyncio.run(_load(host, int(port), payload, int(connections), int(count), float(seconds)))
    print(json.dumps(result))
    return 0


def signing_client_main(argv: list[str]) -> int:
    """A realistic client for comparison: requests + the oci Signer, each request signed anew."""
    config_file, url, threads, seconds = argv
    import threading

    import oci
    import requests

    signer = oci.signer.Signer.from_config(oci.config.from_file(config_file))
    deadline = time.perf_counter() + float(seconds)
    counts = []

    def run() -> None:
        session, done = requests.Session(), 0
        while time.perf_counter() < deadline:
            session.post(url, json=BODY, auth=signer).raise_for_status()
            done += 1
        counts.append(done)

    started = time.perf_counter()
    workers = [threading.Thread(target=run) for _ in range(int(threads))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    print(json.dumps({"requests": sum(counts), "rate": sum(counts) / elapsed}))
    return 0


# --- orchestration ---------------------------------------------------------------------------------


def _raw_request(backend, url: str, body: dict) -> bytes:
    """The bytes of one signed HTTP/1.1 request (keep-alive), ready to be replayed."""
    import requests

    prepared = requests.Request("POST", url, json=body, headers={"accept": "application/json"}).prepare()
    backend.signer()(prepared)
    path = prepared.path_url
    lines = [f"POST {path} HTTP/1.1"]
    for name, value in prepared.headers.items():
        lines.append(f"{name}: {value}")
    if "host" not in {name.lower() for name in prepared.headers}:
        lines.append(f"host: {url.split('/')[2]}")
    lines.append("connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + prepared.body


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_client(host: str, port: int, request_file: Path, connections: int, count: int, seconds: float) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--client",
            host,
            str(port),
            str(request_file),
            str(connections),
            str(count),
            str(seconds),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=32, help="requests in flight (default 32)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the timed phase (default 10)")
    parser.add_argument("--warm", type=int, default=10_000, help="requests before the RSS reading (10,000)")
    parser.add_argument("--stream", action="store_true", help="replay a streaming request instead")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("OCI_SDK_DEFAULT_RETRY_ENABLED", "false")
    from odsc_magics.local.testing import start_backend

    with tempfile.TemporaryDirectory(prefix="odsc-bench-") as tmp:
        flags = [
            "--ttft-ms",
            "0",
            "--tokens-per-s",
            "0",
            "--deploy-seconds",
            "0",
            "--capacity",
            str(max(32, args.connections)),
            "--tenancy-rps",  # the server's own speed is measured, not the platform's request-rate limit
            "1e9",
        ]
        backend = start_backend(tmp, *flags)
        try:
            deployment = backend.create_deployment("bench", bandwidth_mbps=100_000)
            action = "predictWithResponseStream" if args.stream else "predict"
            body = {**BODY, "stream": True} if args.stream else BODY
            request_file = Path(tmp) / "request.bin"
            request_file.write_bytes(_raw_request(backend, f"{deployment['url']}/{action}", body))
            host, port = backend.endpoint.removeprefix("http://").split(":")
            pid = backend.pid
            rss_idle = _rss_kb(pid)

            warm = _run_client(host, int(port), request_file, args.connections, args.warm, 600)
            rss_after_warm = _rss_kb(pid)
            cpu0 = _cpu_s(pid)
            timed = _run_client(host, int(port), request_file, args.connections, 10**9, args.seconds)
            server_cpu = _cpu_s(pid) - cpu0
            rss_end = _rss_kb(pid)
            signing = json.loads(
                subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--signing-client",
                        backend.config_file,
                        f"{deployment['url']}/predict",
                        "4",
                        "5",
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
            )
            stats = backend.deployment_stats(deployment["id"])
        finally:
            backend.stop()

    kind = "streaming /predictWithResponseStream" if args.stream else "/predict (JSON)"
    print(
        f"local backend throughput: {kind}, builtin engine, --ttft-ms 0 --tokens-per-s 0, "
        f"{args.connections} connections, pre-signed request replayed from a separate process, "
        f"{os.cpu_count()} CPUs"
    )
    print(
        f"  phase 1: {warm['requests']} requests in {warm['seconds']:.2f} s = {warm['rate']:.0f} req/s "
        f"(statuses {warm['statuses']})"
    )
    print(
        f"  phase 2: {timed['requests']} requests in {timed['seconds']:.2f} s = {timed['rate']:.0f} req/s "
        f"(statuses {timed['statuses']}), latency p50 {timed['p50_ms']:.2f} ms p99 {timed['p99_ms']:.2f} ms"
    )
    print(
        f"  CPU during phase 2: server {server_cpu:.2f} s "
        f"({100 * server_cpu / timed['seconds']:.0f}% of a core), "
        f"client {timed['client_cpu_s']:.2f} s ({100 * timed['client_cpu_s'] / timed['seconds']:.0f}%)"
    )
    per_request = server_cpu / max(1, timed["requests"])
    print(
        f"  server CPU per request {per_request * 1e6:.0f} us, i.e. about {1 / per_request:.0f} req/s per fully "
        "available core (the machine is shared: compare this with the measured rate)"
    )
    print(
        f"  server RSS: idle {rss_idle / 1024:.1f} MiB, after {warm['requests']} requests "
        f"{rss_after_warm / 1024:.1f} MiB, after {warm['requests'] + timed['requests']} requests "
        f"{rss_end / 1024:.1f} MiB"
    )
    print(
        f"  for comparison, a signing client (requests + oci Signer, 4 threads, one process) reaches "
        f"{signing['rate']:.0f} req/s against it"
    )
    print(f"  server stats: predict_requests {stats['predict_requests']}, by_status {stats['by_status']}")
    print(
        json.dumps(
            {
                "requests_per_s": round(timed["rate"], 1),
                "server_cpu_us_per_request": round(per_request * 1e6, 1),
                "rss_mib_after_warm": round(rss_after_warm / 1024, 1),
                "warm_requests": warm["requests"],
                "stream": args.stream,
            }
        )
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        raise SystemExit(client_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "--signing-client":
        raise SystemExit(signing_client_main(sys.argv[2:]))
    raise SystemExit(main())
