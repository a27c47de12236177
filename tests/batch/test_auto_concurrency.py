"""concurrency="auto" against a simulated vLLM engine: it keeps the endpoint busy without queueing into timeouts."""

from __future__ import annotations

import time

import pandas as pd

from odsc_magics.batch import predict_frame
from odsc_magics.client import connect
from odsc_magics.config import LLMSettings

PROMPT = "Row {{ n }}: " + " ".join(["word"] * 120)  # about 128 prompt tokens


def run(endpoint, rows: int, concurrency) -> tuple[float, pd.DataFrame]:
    frame = pd.DataFrame({"n": range(rows)})
    start = time.perf_counter()
    out = predict_frame(frame, PROMPT, deployment=endpoint, concurrency=concurrency, progress=False,
                        max_tokens=64, ignore_eos=True, max_retries=20)  # fmt: skip
    return rows / (time.perf_counter() - start), out


def test_auto_neither_times_out_nor_stalls_below_saturation(backend_factory):
    gpu = backend_factory("--serving", "gpu", "--time-scale", "20")
    deployment = gpu.create_deployment("auto-gpu")
    endpoint = connect(deployment["url"], settings=LLMSettings(backend="local", local_dir=str(gpu.state_dir)))
    saturated, _ = run(endpoint, 300, 128)
    before = gpu.deployment_stats(deployment["id"])
    auto, out = run(endpoint, 600, "auto")
    after = gpu.deployment_stats(deployment["id"])
    assert out["error"].isna().all(), out["error"].dropna().head()
    assert after["timeouts"] - before["timeouts"] == 0
    assert auto >= 0.6 * saturated, (auto, saturated)
