"""Time to build the ``%llm_deploy`` form from 1,000 catalog models and 30 shapes, after the first OCI import.

The models arrive as the SDK delivers ``list_models``: pages of ``ModelSummary`` objects (100 per page);
the shapes as ``list_model_deployment_shapes`` items. Timed: flattening the pages into choices, intersecting
the shapes with the catalog, and building the form (widgets, fit verdicts of the selected model). The first
build also imports ipywidgets and the form module; later builds show the steady cost. Target: <= 0.5 s.

Second figure: the control-plane calls ``Deployment.wait()`` makes while a deployment is CREATING for 60 s
(a local backend started with ``--deploy-seconds 60``; every SDK call is counted through a wrapper of the
context's call). The rule: never more than one call per second, backing off to one per 10 s.

    python benchmarks/deploy_form.py [--models 1000] [--shapes 30] [--page-size 100] [--runs 7]
                                     [--wait-seconds 60 | --wait-seconds 0 to skip]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from typing import Any

os.environ.setdefault("OCI_SDK_DEFAULT_RETRY_ENABLED", "false")
os.environ.setdefault("OCI_SDK_DEFAULT_CIRCUITBREAKER_ENABLED", "false")

TARGET_S = 0.5
_FAMILIES = [
    "Meta-Llama-3.1-8B-Instruct",
    "Mistral-7B-Instruct-v0.3",
    "Mixtral-8x7B-Instruct-v0.1",
    "gemma-2-9b-it",
    "Qwen2.5-72B-Instruct",
    "Phi-3-mini-4k-instruct",
    "custom-13B-chat",
    "in-house-assistant",
]


def _pages(models: Any, count: int, page_size: int) -> list[list[Any]]:
    """``count`` ModelSummary objects in pages, as ``oci.pagination`` would yield them."""
    items = [
        models.ModelSummary(
            id=f"ocid1.datasciencemodel.oc1.iad.{i:06d}",
            display_name=f"{_FAMILIES[i % len(_FAMILIES)]}-v{i}",
            compartment_id="ocid1.compartment.oc1..bench",
            lifecycle_state="ACTIVE",
            freeform_tags={"OCI_AQUA": "", "task": "text_generation", "organization": "bench"},
        )
        for i in range(count)
    ]
    return [items[i : i + page_size] for i in range(0, count, page_size)]


def _shape_summaries(models: Any, count: int) -> list[Any]:
    from odsc_magics.sizing import SHAPES

    names = [s.name for s in SHAPES.values() if s.is_gpu] + [s.name for s in SHAPES.values() if not s.is_gpu]
    out = []
    for name in names[:count]:
        info = SHAPES[name]
        series = "NVIDIA_GPU" if info.is_gpu else "AMD_ROME"
        out.append(
            models.ModelDeploymentShapeSummary(
                name=name, core_count=info.cpu_count, memory_in_gbs=info.cpu_memory_gb, shape_series=series
            )
        )
    return out


def _build(pages: list[list[Any]], shape_summaries: list[Any]) -> Any:
    from odsc_magics.sizing import shapes_from_service
    from odsc_magics.widgets.deploy_form import DeployForm, ModelChoice

    choices = [ModelChoice(m.id, m.display_name, metadata=m.freeform_tags) for page in pages for m in page]
    shapes = shapes_from_service(shape_summaries)
    return DeployForm(choices, shapes, on_deploy=lambda request, sink: None)


def count_wait_calls(seconds: float) -> tuple[int, float, float]:
    """(control-plane calls, shortest gap between two calls in s, wall time) while waiting on a deployment."""
    import importlib
    import tempfile

    from odsc_magics.config import LLMSettings
    from odsc_magics.context import get_context
    from odsc_magics.local.testing import start_backend

    api = importlib.import_module("odsc_magics.control_plane")
    backend = start_backend(tempfile.mkdtemp(prefix="bench-wait-"), "--deploy-seconds", str(seconds))
    try:
        settings = LLMSettings(backend="local", local_dir=str(backend.state_dir))
        deployment = api.deploy("Mistral-7B-Instruct-v0.3", "VM.GPU.A10.1", wait=False, settings=settings)
        context = get_context(settings)
        stamps: list[float] = []
        original = context.call

        def counted(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
            stamps.append(time.monotonic())
            return original(what, fn, *args, **kwargs)

        context.call = counted
        start = time.monotonic()
        try:
            deployment.wait(progress=False)
        finally:
            del context.call
        wall = time.monotonic() - start
    finally:
        backend.stop()
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return len(stamps), min(gaps, default=float("nan")), wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--shapes", type=int, default=30)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--wait-seconds", type=float, default=60.0, help="deploy time of the wait count (0: skip)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    import oci  # noqa: F401

    oci_s = time.perf_counter() - start
    start = time.perf_counter()
    import oci.data_science.models as models

    ds_s = time.perf_counter() - start

    pages = _pages(models, args.models, args.page_size)
    shape_summaries = _shape_summaries(models, args.shapes)

    start = time.perf_counter()
    form = _build(pages, shape_summaries)
    first_s = time.perf_counter() - start
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        _build(pages, shape_summaries)
        times.append(time.perf_counter() - start)
    median_s = statistics.median(times)

    shown = len(form.model_select.options)

    def row(label: str, seconds: float, note: str = "") -> None:
        print(f"{label:<34}{seconds:7.3f} s  {note}".rstrip())

    row("import oci", oci_s)
    row("import oci.data_science.models", ds_s)
    print(f"models {args.models} in {len(pages)} pages of {args.page_size}; shapes {len(shape_summaries)}")
    row("first build (imports ipywidgets)", first_s)
    row(f"build, median of {args.runs}", median_s, f"(min {min(times):.3f}, max {max(times):.3f})")
    print(f"form: {shown} models listed, selected {form.model_select.value!r} on {form.shape_select.value!r}")
    verdict = "within" if max(first_s, median_s) <= TARGET_S else "OVER"
    print(f"target <= {TARGET_S} s after the first OCI import: {verdict}")
    if args.wait_seconds > 0:
        calls, gap, wall = count_wait_calls(args.wait_seconds)
        print(
            f"control-plane calls during a {args.wait_seconds:g} s wait: {calls} in {wall:.1f} s "
            f"(shortest gap {gap:.2f} s; {calls / wall:.2f} calls/s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
