"""concurrency="auto" against simulated endpoints on a fake clock: the knee of a vLLM-like server, a capacity
wall, the 60 s limit, stray 429s and two batches sharing one endpoint. The best fixed concurrency of a sweep is
the oracle, as in benchmarks/batch_throughput.py (which measures the same against the local backend)."""

from __future__ import annotations

import pytest
from controller_sim import simulate, vllm_like

SWEEP = (4, 8, 16, 32, 48, 64, 128, 256, 512)


def oracle(latency_at, rows: int, **kw):
    """The fixed concurrency with the most rows/s and no timeout or failed row, and its run."""
    runs = {level: simulate(latency_at, rows, concurrency=level, **kw) for level in SWEEP}
    fine = {level: run for level, run in runs.items() if not run.timeouts and not run.failed}
    best = max(fine, key=lambda level: fine[level].rows_s)
    return best, fine[best]


@pytest.mark.parametrize(
    "server",
    [vllm_like(), vllm_like(base=0.1, slowdown_at=16, max_seqs=32), vllm_like(base=0.5, slowdown_at=256, max_seqs=64)],
    ids=["knee-128", "knee-32", "queue-64"],
)
def test_auto_gets_the_oracles_throughput_without_its_queueing(server):
    _, best = oracle(server, 3000)
    auto = simulate(server, 3000)
    assert auto.rows_s >= 0.95 * best.rows_s
    assert auto.p50 <= 1.3 * best.p50
    assert auto.timeouts == 0


def test_auto_keeps_answers_well_inside_the_time_limit():
    # 32 in flight answer in about 1.8 s, 64 in more than the 3 s limit: every one of them times out
    server = vllm_like(base=1.45, slowdown_at=128, max_seqs=40)
    best_level, best = oracle(server, 800, timeout_s=3.0)
    assert best_level < 64
    auto = simulate(server, 800, timeout_s=3.0)
    assert auto.timeouts == 0
    assert auto.rows_s >= 0.9 * best.rows_s
    assert max(auto.latencies) < 3.0


@pytest.mark.parametrize("capacity", [8, 32, 128])
@pytest.mark.parametrize("seconds", [0.3, 3.0])
def test_auto_fills_a_capacity_wall_with_few_throttles(capacity, seconds):
    rows = max(600, int(capacity * 12 / seconds)) if seconds < 1 else max(300, capacity * 25)
    auto = simulate(lambda n: seconds, rows, capacity=capacity)
    assert auto.rows_s >= 0.90 * capacity / seconds
    assert auto.throttled_share <= 0.05


def test_at_the_callers_ceiling_with_no_waiting_auto_stays_there():
    # A task of predict_spark holds a share of the job's budget: 8 here, answered in 0.3 s however many run
    auto = simulate(lambda n: 0.3, 2000, maximum=8)
    assert auto.rows_s >= 0.97 * 8 / 0.3
    assert {limit for at, limit in auto.limits if at > 2.0} == {8}  # no probe lower: it could only cost rows


def test_stray_429s_do_not_collapse_the_limit():
    _, best = oracle(vllm_like(), 3000)
    auto = simulate(vllm_like(), 3000, stray_throttles=0.05)
    assert auto.rows_s >= 0.85 * best.rows_s  # the benchmark's bar is 0.90; the simulation's noise is larger
    assert min(limit for at, limit in auto.limits if at > auto.ended / 2) >= 32


def test_after_a_slowdown_service_timeouts_cut_hard_and_stop():
    # Eight times slower from 5 s on: the ~145 in flight then would take ~5 s, past the 3 s limit
    auto = simulate(vllm_like(), 4000, timeout_s=3.0, slowdown=(5.0, 8.0))
    assert auto.failed == 0
    assert auto.timeouts > 0
    # Each wave of timeouts halves the limit once: a few waves of the 3 s limit, then none
    assert max(auto.timed_out_at) < 5.0 + 4 * 3.0
    assert max(limit for at, limit in auto.limits if at > auto.ended - 5) <= 64


def test_two_batches_share_one_endpoint_and_together_keep_it_full():
    best = simulate(vllm_like(), 6000, concurrency=256)
    first, second = simulate(vllm_like(), [3000, 3000])
    assert first.rows_s >= 0.40 * best.rows_s and second.rows_s >= 0.40 * best.rows_s
    assert 6000 / max(first.ended, second.ended) >= 0.90 * best.rows_s


def test_a_batch_joining_late_gets_its_share():
    best = simulate(vllm_like(), 6000, concurrency=256)
    first, second = simulate(vllm_like(), [3000, 3000], starts=[0.0, 5.0])
    assert first.rows_s >= 0.40 * best.rows_s and second.rows_s >= 0.40 * best.rows_s
