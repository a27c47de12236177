"""What the client and the live view add to a stream from the local engine, beside a raw `requests` stream.

Prints, measured in the same run against one local backend (builtin engine, no first-token delay,
1,000 tokens/s): time to first token (client vs raw signed `requests`), CPU per streamed token (raw,
client, client + throttled live view), and the live view's widget updates per second in a real kernel.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TTFT_RUNS = 30
CPU_RUNS = 5
CPU_TOKENS = 1000
TARGETS = {"ttft_ms": 2.0, "cpu_us": 50.0, "updates_per_s": 12.0}


def raw_stream(session, request: dict, *, first_only: bool) -> tuple[float, int]:
    """POST with plain requests (signed), parse SSE frames; (seconds to the first text, tokens)."""
    started = time.perf_counter()
    first = None
    tokens = 0
    response = session.post(
        request["url"], data=json.dumps(request["body"]), headers=request["headers"], stream=True
    )
    try:
        for line in response.iter_lines():
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices") or []
            if choices and choices[0].get("text"):
                tokens += 1
                if first is None:
                    first = time.perf_counter() - started
                    if first_only:
                        break
    finally:
        response.close()
    return first or 0.0, tokens


def client_stream(endpoint, *, max_tokens: int, first_only: bool, view=None) -> tuple[float, int]:
    """The same through odsc_magics' Endpoint.stream_complete (and optionally the live view)."""
    started = time.perf_counter()
    first = None
    tokens = 0
    stream = endpoint.stream_complete("Tell me about the sea.", max_tokens=max_tokens)
    try:
        for delta in stream:
            tokens += 1
            if view is not None:
                view.add(delta)
            if first is None:
                first = time.perf_counter() - started
                if first_only:
                    break
    finally:
        stream.close()
    return first or 0.0, tokens


class _StubWidget:
    value = ""

    def close(self) -> None:
        pass


def stub_view():
    """A KernelStreamView whose widget is a plain object: measures throttle + rendering, not the comm."""
    from odsc_magics.display import KernelStreamView

    view = KernelStreamView(label="bench")
    view._widget = _StubWidget()
    return view


def cpu_per_token(run) -> float:
    """Median CPU microseconds per token of ``run() -> tokens`` over CPU_RUNS runs."""
    samples = []
    for _ in range(CPU_RUNS):
        cpu = time.process_time()
        tokens = run()
        samples.append((time.process_time() - cpu) / max(tokens, 1) * 1e6)
    return statistics.median(samples)


def kernel_updates_per_s(backend) -> tuple[int, float, int, int]:
    """Stream 2,000 tokens through %%llm_predict in a real kernel; count the live widget's updates."""
    import nbformat
    from nbclient import NotebookClient

    log: list[tuple[str, dict]] = []

    class Counting(NotebookClient):
        def handle_comm_msg(self, outs, msg, cell_index):
            if cell_index == 1 and msg["msg_type"] == "comm_msg":
                log.append((msg["header"]["date"], (msg["content"]["data"] or {}).get("state") or {}))
            super().handle_comm_msg(outs, msg, cell_index)

    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("%load_ext odsc_magics"),
            nbformat.v4.new_code_cell(
                "%%llm_predict -d bench --max-tokens 2000 --param ignore_eos=true\nWrite about the sea."
            ),
        ]
    )
    env = dict(
        os.environ,
        ODSC_MAGICS_BACKEND="local",
        ODSC_MAGICS_LOCAL_DIR=str(backend.state_dir),
        PYTHONPATH=str(ROOT),
    )
    Counting(nb, kernel_name="python3", timeout=120).execute(env=env)
    from odsc_magics.display import max_per_window

    updates = [d for d, state in log if "value" in state]
    times = [datetime.fromisoformat(str(d).replace("Z", "+00:00")).timestamp() for d in updates]
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    tokens = nb.cells[1].outputs[-1]["metadata"]["odsc_magics"]["usage"]["completion_tokens"]
    return len(updates), span, tokens, max_per_window(times, 1.0)


def main() -> int:
    """Run every measurement and print the figures; exit 0 unless something failed."""
    os.environ.setdefault("OCI_SDK_DEFAULT_RETRY_ENABLED", "false")
    os.environ.setdefault("OCI_SDK_DEFAULT_CIRCUITBREAKER_ENABLED", "false")
    from odsc_magics.local.testing import start_backend

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HOME"] = tmp
        backend = start_backend(
            Path(tmp) / "state", "--deploy-seconds", "0.2", "--ttft-ms", "0", "--tokens-per-s", "1000"
        )
        try:
            deployment = backend.create_deployment("bench")
            os.environ["ODSC_MAGICS_BACKEND"] = "local"
            os.environ["ODSC_MAGICS_LOCAL_DIR"] = str(backend.state_dir)
            from odsc_magics import connect

            endpoint = connect(deployment["url"])
            session = backend.session()
            short = endpoint.build_request(prompt="Tell me about the sea.", stream=True, max_tokens=5)
            long = endpoint.build_request(prompt="Tell me about the sea.", stream=True, max_tokens=CPU_TOKENS)

            # warm both paths (connection pools, imports)
            raw_stream(session, short, first_only=False)
            client_stream(endpoint, max_tokens=5, first_only=False)

            raw_ttft, client_ttft = [], []
            for _ in range(TTFT_RUNS):  # interleaved so drift hits both alike
                raw_ttft.append(raw_stream(session, short, first_only=True)[0])
                client_ttft.append(client_stream(endpoint, max_tokens=5, first_only=True)[0])

            raw_cpu = cpu_per_token(lambda: raw_stream(session, long, first_only=False)[1])
            client_cpu = cpu_per_token(
                lambda: client_stream(endpoint, max_tokens=CPU_TOKENS, first_only=False)[1]
            )
            view_cpu = cpu_per_token(
                lambda: client_stream(endpoint, max_tokens=CPU_TOKENS, first_only=False, view=stub_view())[1]
            )
            updates, span, tokens, peak = kernel_updates_per_s(backend)
        finally:
            backend.stop()

    raw_ms, client_ms = statistics.median(raw_ttft) * 1000, statistics.median(client_ttft) * 1000
    added_ms = client_ms - raw_ms
    added_cpu = client_cpu - raw_cpu
    rate = (updates - 1) / span if span else float("nan")
    print("Streaming overhead against the local engine (ttft 0 ms, 1,000 tokens/s), same run")
    print(f"  time to first token, median of {TTFT_RUNS}:")
    print(f"    raw requests stream        {raw_ms:7.2f} ms")
    print(
        f"    odsc_magics client         {client_ms:7.2f} ms   added {added_ms:+.2f} ms "
        f"(target <= {TARGETS['ttft_ms']:.0f} ms)"
    )
    print(f"  CPU per streamed token, median of {CPU_RUNS} streams of {CPU_TOKENS} tokens:")
    print(f"    raw requests stream        {raw_cpu:7.1f} µs")
    print(
        f"    odsc_magics client         {client_cpu:7.1f} µs   added {added_cpu:+.1f} µs "
        f"(target <= {TARGETS['cpu_us']:.0f} µs)"
    )
    print(f"    client + live view         {view_cpu:7.1f} µs   view adds {view_cpu - client_cpu:+.1f} µs")
    print(f"  live view in a real kernel: {updates} widget updates over {span:.2f} s for {tokens} tokens:")
    print(
        f"    mean {rate:.1f} updates/s, most in any 1 s window {peak} "
        f"(target <= {TARGETS['updates_per_s']:.0f})"
    )
    ok = (
        added_ms <= TARGETS["ttft_ms"] and added_cpu <= TARGETS["cpu_us"] and peak <= TARGETS["updates_per_s"]
    )
    print(f"  within targets: {'yes' if ok else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
