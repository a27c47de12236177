"""The model and shape catalog against the local backend: service and own models, region shapes, fit column."""

from __future__ import annotations

import pytest

from odsc_magics.catalog import CatalogModel, check_shape, find_model, list_models, list_shapes, region_shapes
from odsc_magics.config import LLMSettings
from odsc_magics.errors import NotFoundError, ValidationError
from odsc_magics.sizing import SHAPES


@pytest.fixture
def settings(backend) -> LLMSettings:
    return LLMSettings(backend="local", local_dir=str(backend.state_dir))


def test_models_are_the_service_catalog_then_own_models(settings: LLMSettings) -> None:
    models = list_models(settings=settings)
    assert all(isinstance(m, CatalogModel) for m in models)
    service = [m for m in models if m.category == "SERVICE"]
    assert {"Mistral-7B-Instruct-v0.3", "Meta-Llama-3.1-70B-Instruct"} <= {m.name for m in service}
    assert all("OCI_AQUA" in m.tags for m in service)
    categories = [m.category for m in models]
    assert categories == sorted(categories, key=lambda c: c != "SERVICE")  # service models first
    mistral = next(m for m in service if m.name == "Mistral-7B-Instruct-v0.3")
    assert mistral.spec.parameters_b == pytest.approx(7.25)  # 7,248,023,552 on its model card
    assert mistral.to_dict()["context"] == 32768


def test_models_are_searchable_by_name(settings: LLMSettings) -> None:
    found = list_models(search="llama 70b", settings=settings)
    assert [m.name for m in found] == ["Meta-Llama-3.1-70B-Instruct"]
    assert list_models(search="no-such-thing", settings=settings) == []


def test_find_model_by_name_or_ocid(backend, settings: LLMSettings) -> None:
    from odsc_magics.context import get_context

    context = get_context(settings)
    by_name = find_model("Phi-3-mini-4k-instruct", context=context)
    assert find_model(by_name.id, context=context).display_name == "Phi-3-mini-4k-instruct"
    with pytest.raises(NotFoundError, match="Did you mean Phi-3-mini-4k-instruct"):
        find_model("Phi-3-mini-4k-instrukt", context=context)


def test_region_shapes_carry_the_catalog_facts(settings: LLMSettings) -> None:
    shapes = {s.name: s for s in region_shapes(settings=settings)}
    assert shapes["VM.GPU.A10.2"] == SHAPES["VM.GPU.A10.2"]
    assert shapes["VM.GPU.A10.2"].gpu_count == 2 and shapes["VM.GPU.A10.2"].gpu_memory_gb == 48
    assert shapes["VM.GPU.A10.2"].cpu_memory_gb == 480
    assert "VM.GPU3.8" not in shapes  # known shape, not offered by this region


def test_shapes_with_the_fit_of_a_model(settings: LLMSettings) -> None:
    rows = list_shapes(model="Meta-Llama-3.1-8B-Instruct", settings=settings)
    labels = {r.shape.name: r.fit_label for r in rows}
    assert labels["VM.GPU.A10.2"] == "✓ fits"
    assert labels["VM.GPU.A10.1"] == "✗ needs ≈ 33.2 GB (fits with --max-model-len 16384)"
    assert labels["VM.Standard.E4.Flex"] == "✗ no GPU"
    assert labels["VM.GPU2.1"] == "✗ GPU not supported by vLLM"
    assert rows[0].shape.is_gpu and not rows[-1].shape.is_gpu  # GPU shapes first
    shorter = {r.shape.name: r.fit_label for r in list_shapes(model="Meta-Llama-3.1-8B-Instruct",
                                                               max_model_len=8192, settings=settings)}  # fmt: skip
    assert shorter["VM.GPU.A10.1"] == "✓ fits"
    assert all(r.verdict is None for r in list_shapes(settings=settings))


def test_check_shape() -> None:
    offered = [SHAPES["VM.GPU.A10.1"], SHAPES["VM.GPU.A10.2"]]
    assert check_shape("VM.GPU.A10.1", offered, "r1") is SHAPES["VM.GPU.A10.1"]
    with pytest.raises(ValidationError, match="not offered for model deployments in r1") as info:
        check_shape("BM.GPU.H100.8", offered, "r1")
    assert "VM.GPU.A10.1, VM.GPU.A10.2" in info.value.hint
    with pytest.raises(ValidationError, match=r"Unknown shape 'VM\.GPU\.A10\.3'\. Did you mean"):
        check_shape("VM.GPU.A10.3", offered, "r1")
