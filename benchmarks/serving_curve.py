"""Throughput and latency against concurrency of a few (model, shape) pairs, as `odsc-magics local` serves them.

For each pair the vLLM scheduler is simulated (odsc_magics.scheduling.simulate: a closed loop of N clients,
each sending its next request when its answer ends) at concurrency 1, 2, 4 ... 512 with 1,024 prompt tokens
in and 256 output tokens out, vLLM's defaults and the shape's tensor parallelism. It prints output tokens/s,
p50/p99 latency and time to first token, then each published vLLM measurement the physics is calibrated
against beside the simulation of the same workload, and writes the curves to docs/serving_curve.png.

    .venv/bin/python benchmarks/serving_curve.py [--out docs/serving_curve.png] [--max-concurrency 512]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path

from odsc_magics import scheduling, serving
from odsc_magics.gpus import GPUS
from odsc_magics.sizing import SHAPES, ModelSpec, ShapeInfo, model_spec_from

ROOT = Path(__file__).resolve().parents[1]
INPUT_TOKENS, OUTPUT_TOKENS = 1024, 256
PAIRS = [
    ("Mistral-7B-Instruct-v0.3", "VM.GPU.A10.1"),
    ("Mistral-7B-Instruct-v0.3", "VM.GPU.A10.2"),
    ("Meta-Llama-3.1-8B-Instruct", "BM.GPU.A10.4"),
    ("Meta-Llama-3.1-70B-Instruct", "BM.GPU4.8"),
]


def engine(model_name: str, shape: str) -> serving.EngineConfig:
    """The engine AQUA would start: the model's context, shortened to a power of two when its KV cache does not fit."""
    spec = model_spec_from(model_name)
    cfg = serving.engine_config(spec, SHAPES[shape])
    length = cfg.max_model_len
    while serving.memory(cfg).failure == "kv_cache_too_small" and length > 2048:
        length //= 2
        cfg = serving.engine_config(spec, SHAPES[shape], f"--max-model-len {length}")
    failure = serving.memory(cfg).failure
    if failure is not None:
        raise SystemExit(f"{model_name} does not start on {shape}: {failure}")
    return cfg


def curve(cfg: serving.EngineConfig, levels: list[int]) -> list[scheduling.Run]:
    return [
        scheduling.simulate(cfg, concurrency=c, input_tokens=INPUT_TOKENS, output_tokens=OUTPUT_TOKENS)
        for c in levels
    ]


def print_curve(label: str, cfg: serving.EngineConfig, runs: list[scheduling.Run], seconds: float) -> None:
    mem = serving.memory(cfg)
    print(
        f"\n{label}: TP {cfg.tensor_parallel_size}, --max-model-len {cfg.max_model_len:,}, "
        f"KV cache {mem.kv_blocks * cfg.block_size:,} tokens ({mem.kv_cache_gb:.1f} GB per GPU); "
        f"simulated in {seconds:.1f} s of CPU"
    )
    print(
        f"{'concurrency':>11}  {'output tok/s':>12}  {'p50 latency s':>13}  {'p99 latency s':>13}  "
        f"{'p50 TTFT s':>10}  {'p99 TTFT s':>10}  {'max running':>11}  {'preemptions':>11}"
    )
    for run in runs:
        print(
            f"{run.concurrency:>11}  {run.output_tok_s:>12,.0f}  {run.p50_latency_s:>13.2f}  "
            f"{run.p99_latency_s:>13.2f}  {run.p50_ttft_s:>10.3f}  {run.p99_ttft_s:>10.3f}  "
            f"{run.max_running:>11}  {run.preemptions:>11}"
        )


@dataclass(frozen=True)
class Measurement:
    """A published vLLM measurement and its workload."""

    label: str
    model: ModelSpec
    gpu: str
    params: str
    input_tokens: int
    output_tokens: int
    concurrency: int
    requests: int
    output_tok_s: float


def measurements() -> list[Measurement]:
    """The published measurements the physics is calibrated against: serving.MEASUREMENTS when the package
    exposes them, else the list tests/test_serving.py holds the simulation to (one source either way)."""
    found = getattr(serving, "MEASUREMENTS", None)
    if found is None:
        path = ROOT / "tests" / "test_serving.py"
        spec = importlib.util.spec_from_file_location("_serving_measurements", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the benchmark still draws its curves
            print(f"\n(could not read the cited measurements from {path.name}: {exc})")
            return []
        found = getattr(module, "MEASUREMENTS", [])
    return [m if isinstance(m, Measurement) else Measurement(*m) for m in found]


def print_measurements(found: list[Measurement]) -> None:
    on_pairs = {(model, SHAPES[shape].gpu_model) for model, shape in PAIRS}
    matching = [m for m in found if (m.model.name, m.gpu) in on_pairs]
    if not matching:
        print("\nNo cited measurement is on these (model, GPU) pairs; the ones the physics is calibrated against:")
    if not found:
        print("(none found)")
        return
    print(f"{'measured tok/s':>14}  {'simulated':>9}  {'ratio':>5}  model on GPU: input / output tokens, concurrency")
    for m in found:
        gpu = GPUS[m.gpu]
        shape = ShapeInfo(f"1x{m.gpu}", 1, m.gpu, gpu.memory_gb)
        cfg = serving.engine_config(m.model, shape, m.params or None)
        run = scheduling.simulate(
            cfg,
            concurrency=m.concurrency,
            input_tokens=m.input_tokens,
            output_tokens=m.output_tokens,
            requests=m.requests,
        )
        print(
            f"{m.output_tok_s:>14,.0f}  {run.output_tok_s:>9,.0f}  {run.output_tok_s / m.output_tok_s:>5.2f}  "
            f"{m.model.name} on one {m.gpu}: {m.input_tokens:,} / {m.output_tokens:,}, concurrency {m.concurrency:,}"
        )


def step_cost(cfg: serving.EngineConfig, running: int = 256) -> tuple[float, int]:
    """CPU seconds the scheduler spends per simulated step serving ``running`` requests at once, and the steps."""
    scheduler = scheduling.Scheduler(cfg)
    for i in range(running):
        scheduler.add(f"r{i}", INPUT_TOKENS, OUTPUT_TOKENS)
    steps, most = 0, 0
    started = time.process_time()
    while scheduler.step() is not None:
        steps += 1
        most = max(most, scheduler.running)
    return (time.process_time() - started) / max(1, steps), most


def plot(results: list[tuple[str, list[scheduling.Run]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    for label, runs in results:
        xs = [r.concurrency for r in runs]
        (line,) = left.plot(xs, [r.output_tok_s for r in runs], marker="o", label=label)
        right.plot(xs, [r.p50_latency_s for r in runs], marker="o", color=line.get_color(), label=f"{label}, p50")
        right.plot(xs, [r.p99_latency_s for r in runs], linestyle="--", color=line.get_color(), alpha=0.6)
    levels = [r.concurrency for r in results[0][1]]
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xticks(levels, [str(n) for n in levels])
        axis.set_xlabel("concurrent requests")
        axis.grid(True, which="both", alpha=0.3)
    left.set_ylabel("output tokens/s (all requests)")
    left.set_title("Throughput saturates")
    left.set_yscale("log")
    right.set_ylabel("request latency, s (p50 solid, p99 dashed)")
    right.set_title("Latency keeps growing")
    right.set_yscale("log")
    right.axhline(60, color="grey", linewidth=1)
    right.annotate("60 s /predict limit", (1, 60), textcoords="offset points", xytext=(2, 4), color="grey")
    left.legend(fontsize=8, loc="lower right")
    fig.suptitle(
        f"vLLM on OCI shapes as odsc-magics local simulates it: {INPUT_TOKENS:,} tokens in, "
        f"{OUTPUT_TOKENS} out per request"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"\nWrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "serving_curve.png")
    parser.add_argument("--max-concurrency", type=int, default=512)
    args = parser.parse_args()
    levels = [2**k for k in range(args.max_concurrency.bit_length()) if 2**k <= args.max_concurrency]
    print(f"Workload: {INPUT_TOKENS:,} prompt tokens in, {OUTPUT_TOKENS} out; closed loop, concurrency {levels}")
    results = []
    for model_name, shape in PAIRS:
        cfg = engine(model_name, shape)
        started = time.process_time()
        runs = curve(cfg, levels)
        label = f"{model_name} on {shape}"
        print_curve(label, cfg, runs, time.process_time() - started)
        results.append((label, runs))
    print_measurements(measurements())
    cost, most = step_cost(engine(*PAIRS[2]))
    print(
        f"\nScheduler CPU per simulated step, 256 requests at once on {PAIRS[2][1]} ({most} running at most): "
        f"{cost * 1e6:,.0f} µs"
    )
    plot(results, args.out)


if __name__ == "__main__":
    main()
