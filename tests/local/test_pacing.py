"""``--serving gpu``: answers timed by a simulated vLLM engine per instance, measured through signed HTTP."""

from __future__ import annotations

import json
import math
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from odsc_magics.local.cli import _serving, build_parser

SCALE = 5.0  # the simulated clock runs 5x faster: measured real seconds x SCALE = simulated seconds
OUT = 64  # output tokens of every request (ignore_eos makes the builtin engine write exactly max_tokens)


def _request(max_tokens: int = OUT, prompt: str = "tell me about continuous batching") -> dict:
    return {"model": "odsc-llm", "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True}


def _load(backend, url: str, concurrency: int, per_client: int, body: dict) -> tuple[float, float]:
    """`concurrency` clients each sending `per_client` requests back to back: (output tok/s, median latency),
    both in simulated time."""
    latencies: list[float] = []
    lock = threading.Lock()
    sessions = [backend.session() for _ in range(concurrency)]
    ready = threading.Barrier(concurrency + 1)

    def client(session: requests.Session) -> None:
        ready.wait()
        for _ in range(per_client):
            started = time.perf_counter()
            response = session.post(url, json=body)
            elapsed = time.perf_counter() - started
            assert response.status_code == 200, response.text
            assert response.json()["usage"]["completion_tokens"] == body["max_tokens"]
            with lock:
                latencies.append(elapsed * SCALE)

    with ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(client, session) for session in sessions]
        ready.wait()
        started = time.perf_counter()
        for future in futures:
            future.result()
        wall = (time.perf_counter() - started) * SCALE
    return concurrency * per_client * body["max_tokens"] / wall, statistics.median(latencies)


def test_throughput_rises_with_concurrency_then_stays_flat_while_latency_grows(backend_factory):
    backend = backend_factory("--serving", "gpu", "--time-scale", str(SCALE))
    deployment = backend.create_deployment(params="--max-num-seqs 4")
    url = deployment["url"] + "/predict"
    curve = {c: _load(backend, url, c, 2, _request()) for c in (1, 2, 4, 8, 16)}
    throughput = {c: tok_s for c, (tok_s, _) in curve.items()}
    latency = {c: lat for c, (_, lat) in curve.items()}
    # Decode is memory-bound: a batch of 2 and of 4 costs little more per step than one sequence.
    assert throughput[2] > 1.6 * throughput[1], curve
    assert throughput[4] > 1.6 * throughput[2], curve
    # Beyond --max-num-seqs 4 the engine queues: throughput flat, latency growing with the queue.
    assert throughput[8] == pytest.approx(throughput[4], rel=0.25), curve
    assert throughput[16] == pytest.approx(throughput[4], rel=0.25), curve
    assert latency[8] > 1.5 * latency[4] and latency[16] > 1.5 * latency[8], curve
    stats = backend.deployment_stats(deployment["id"])
    assert stats["max_num_seqs"] == 4 and stats["max_running"] == 4
    assert stats["generation_tokens"] == OUT * 2 * sum(curve)
    assert stats["running"] == 0 and stats["waiting"] == 0 and stats["kv_cache_usage"] == 0
    # The engine was busy at least as long as the answers took at saturation (simulated seconds).
    assert stats["busy_s"] > 16 * OUT / throughput[16] * 0.8


def test_the_running_batch_stays_within_the_kv_cache(backend_factory):
    backend = backend_factory("--serving", "gpu", "--time-scale", str(SCALE))
    deployment = backend.create_deployment()
    prompt_tokens = 2000  # one token per word for the builtin tokenizer
    body = _request(64, "word " * (prompt_tokens - 1) + "end")
    concurrency = 40
    _load(backend, deployment["url"] + "/predict", concurrency, 1, body)
    stats = backend.deployment_stats(deployment["id"])
    assert stats["prompt_tokens"] >= concurrency * prompt_tokens
    # A running sequence holds at least the blocks of its prompt (16 tokens each), so the KV cache, not
    # --max-num-seqs (256), bounds the batch: fewer ran at once than were sent.
    per_sequence = math.ceil(prompt_tokens / 16)
    assert 0 < stats["max_kv_blocks_used"] <= stats["kv_blocks_total"]
    assert stats["max_running"] <= stats["kv_blocks_total"] // per_sequence < concurrency


def test_two_instances_double_the_saturated_throughput(backend_factory):
    backend = backend_factory("--serving", "gpu", "--time-scale", str(SCALE))
    one = backend.create_deployment("one", params="--max-num-seqs 4")
    two = backend.create_deployment("two", params="--max-num-seqs 4", instances=2)
    single, _ = _load(backend, one["url"] + "/predict", 16, 2, _request())
    double, _ = _load(backend, two["url"] + "/predict", 16, 2, _request())
    assert double == pytest.approx(2 * single, rel=0.25), (single, double)
    assert backend.deployment_stats(two["id"])["max_running"] == 4  # per instance


def test_a_client_that_goes_away_aborts_its_request(backend_factory):
    backend = backend_factory("--serving", "gpu")
    deployment = backend.create_deployment()
    session = backend.session()
    response = session.post(
        deployment["url"] + "/predictWithResponseStream", json={**_request(2000), "stream": True}, stream=True
    )
    lines = response.iter_lines()
    assert next(lines).startswith(b"data: ")
    assert backend.deployment_stats(deployment["id"])["running"] == 1
    response.close()
    session.close()
    deadline = time.monotonic() + 5
    while (stats := backend.deployment_stats(deployment["id"]))["running"]:
        assert time.monotonic() < deadline, "the abandoned stream kept running"
        time.sleep(0.05)
    assert stats["kv_cache_usage"] == 0 and stats["generation_tokens"] < 200


def test_stream_pace_follows_the_shape(backend_factory):
    """One sequence of a 7B model on an A10 decodes at tens of tokens per second, not at a fixed speed."""
    backend = backend_factory("--serving", "gpu")
    deployment = backend.create_deployment()
    session = backend.session()
    started = time.perf_counter()
    response = session.post(
        deployment["url"] + "/predictWithResponseStream", json={**_request(60), "stream": True}, stream=True
    )
    stamps = [time.perf_counter() for line in response.iter_lines() if line.startswith(b"data: {")]
    assert len(stamps) == 60
    tok_s = len(stamps) / (stamps[-1] - started)  # a slow client or machine can only make this lower
    # 14.5 GB of BF16 weights read per step from the A10's 600 GB/s: at most ~41 steps/s.
    assert 15 < tok_s < 41.5, tok_s


def test_serving_defaults_to_gpu_unless_fixed_timing_is_asked_for():
    parser = build_parser()
    assert _serving(parser.parse_args([])) == "gpu"
    assert _serving(parser.parse_args(["--tokens-per-s", "50"])) == "fixed"
    assert _serving(parser.parse_args(["--ttft-ms", "0", "--serving", "gpu"])) == "gpu"
    assert parser.parse_args([]).capacity is None


def test_fixed_serving_keeps_its_speed_however_many_run(backend_factory):
    backend = backend_factory("--serving", "fixed", "--ttft-ms", "0", "--tokens-per-s", "100")
    deployment = backend.create_deployment()
    url = deployment["url"] + "/predict"

    def timed(session: requests.Session) -> float:
        started = time.perf_counter()
        assert session.post(url, json=_request(50)).status_code == 200
        return time.perf_counter() - started

    sessions = [backend.session() for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        latencies = list(pool.map(timed, sessions))
    assert all(0.45 < latency < 1.5 for latency in latencies), latencies
    assert backend.deployment_stats(deployment["id"])["max_running"] == 0  # no simulated engine


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_the_backend_serves_256_concurrent_streams_on_a_fraction_of_a_core(backend_factory):
    import asyncio

    import aiohttp

    backend = backend_factory("--serving", "gpu", "--tenancy-rps", "100000")
    deployment = backend.create_deployment(bandwidth_mbps=1000)
    url = deployment["url"] + "/predictWithResponseStream"
    payload = json.dumps({**_request(128, "word " * 100), "stream": True})
    signer = backend.signer()
    frames = 0

    def signed() -> dict:
        prepared = requests.Request("POST", url, data=payload, headers={"content-type": "application/json"}).prepare()
        signer(prepared)
        return dict(prepared.headers)

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal frames
        while True:
            async with session.post(url, data=payload, headers=signed()) as response:
                assert response.status == 200
                async for line in response.content:
                    frames += line.startswith(b"data: {")

    async def measure() -> tuple[float, float, dict]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            clients = [asyncio.create_task(client(session)) for _ in range(256)]
            await asyncio.sleep(6)  # all admitted, the engine at its steady batch
            cpu, seen, started = _cpu_seconds(backend.pid), frames, time.monotonic()
            await asyncio.sleep(5)
            elapsed = time.monotonic() - started
            result = ((_cpu_seconds(backend.pid) - cpu) / elapsed, (frames - seen) / elapsed)
            stats = backend.deployment_stats(deployment["id"])
            for task in clients:
                task.cancel()
            await asyncio.gather(*clients, return_exceptions=True)
        return (*result, stats)

    cores, frames_per_s, stats = asyncio.run(measure())
    assert stats["running"] + stats["waiting"] >= 200 and stats["max_running"] > 100, stats
    assert frames_per_s > 500, frames_per_s  # the engine's saturated pace reaches the clients
    assert cores < 0.3, cores
