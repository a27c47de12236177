"""The embedding models' figures against their published config.json, and the TEI request AQUA sends."""

from __future__ import annotations

import pytest

from odsc_magics import embedding_models
from odsc_magics.embedding_models import MODELS, find, serves_embeddings, tei_cmd

# hidden_size and max_position_embeddings of each model's config.json on huggingface.co, read 2026-11-29:
# sentence-transformers/all-MiniLM-L6-v2 (copies of its config.json, e.g. huggingface.co/zhuwch/all-MiniLM-L6-v2),
# huggingface.co/Xenova/bge-base-en-v1.5 (a copy of BAAI/bge-base-en-v1.5),
# huggingface.co/intfloat/e5-large-v2/blob/b322e09026e4ea05f42beadf4d661fb4e101d311/config.json,
# huggingface.co/BAAI/bge-m3/blame/main/onnx/config.json (8194 positions: XLM-RoBERTa's first two are not tokens).
PUBLISHED = {
    "all-MiniLM-L6-v2": (384, 512),
    "bge-base-en-v1.5": (768, 512),
    "e5-large-v2": (1024, 512),
    "bge-m3": (1024, 8194 - 2),
}


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_dimensions_and_input_tokens_match_the_published_config(model) -> None:
    assert (model.dimension, model.max_input_tokens) == PUBLISHED[model.name]


def test_every_embedding_model_of_the_local_catalog_is_published_and_on_tei() -> None:
    from odsc_magics.local.catalog import SERVICE_MODELS

    embedding = [m for m in SERVICE_MODELS if m["freeformTags"]["task"] == "text_embedding"]
    assert {m["displayName"] for m in embedding} == set(PUBLISHED)
    for model in embedding:
        meta = {item["key"]: item["value"] for item in model["customMetadataList"]}
        assert (int(meta["hidden_size"]), int(meta["max_position_embeddings"])) == PUBLISHED[model["displayName"]]
        assert serves_embeddings(meta, model["freeformTags"])


def test_lookup_and_the_tei_command() -> None:
    assert find("BAAI/bge-m3") is find("bge-m3") is not None and find("Mistral-7B") is None
    assert tei_cmd("service_models/x/abc/artifact") == [
        "--model-id",
        "/opt/ds/model/deployed_model/service_models/x/abc/artifact/",
        "--port",
        "8080",
    ]
    assert tei_cmd("ignored", {"container-cmd-var": "--model-id,/m/,--port,8080"}) == [
        "--model-id",
        "/m/",
        "--port",
        "8080",
    ]
    assert embedding_models.TEI_IMAGE.startswith("dsmc://odsc-tei-serving:")
    assert not serves_embeddings({"deployment-container": "odsc-vllm-serving"}, {"task": "text_generation"})
