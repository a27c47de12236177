"""Embedding models on the local backend: the catalog, the TEI deployment AQUA makes, /v1/embeddings, errors."""

from __future__ import annotations

import asyncio
import base64
import importlib
import json

import numpy as np
import pytest

from odsc_magics import config
from odsc_magics.config import LLMSettings
from odsc_magics.embedding_models import MAX_CLIENT_BATCH_SIZE, TEI_IMAGE
from odsc_magics.errors import NotFoundError, ValidationError
from odsc_magics.local.embeddings import TeiServer, embed_text

api = importlib.import_module("odsc_magics.control_plane")


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ------------------------------------------------------------------------------------- builtin vectors


def test_builtin_vectors_put_texts_sharing_words_closer() -> None:
    query = embed_text("How do I reset my account password?", 384)
    similar = embed_text("Reset the password of an account", 384)
    unrelated = embed_text("Tomatoes grow best in warm sunny weather", 384)
    assert _cos(query, similar) > 0.4
    assert abs(_cos(query, unrelated)) < 0.25
    assert _cos(query, similar) > _cos(query, unrelated) + 0.3


def test_builtin_vectors_are_deterministic_unit_float32_of_the_dimension() -> None:
    first = embed_text("The same words, the same vector.", 768)
    again = embed_text("the SAME words the same vector", 768)  # case and punctuation do not count
    assert first.dtype == np.float32 and first.shape == (768,)
    assert np.linalg.norm(first) == pytest.approx(1.0, abs=1e-5)
    assert np.array_equal(first, again)
    assert not np.array_equal(first[:384], embed_text("The same words, the same vector.", 384))  # own draw per size
    punctuation = embed_text("?!", 384)
    assert np.linalg.norm(punctuation) == pytest.approx(1.0, abs=1e-5)


# ------------------------------------------------------------------------------------- the TEI server


def _call(server: TeiServer, path: str, body, method: str = "POST", body_bytes: int = 10):
    return asyncio.run(server.handle(method, path, body, context={"body_bytes": body_bytes}))


def test_tei_server_answers_openai_embeddings_as_floats_or_base64() -> None:
    server = TeiServer("/opt/ds/model/deployed_model/m/", 384, 512)
    floats = _call(server, "/v1/embeddings", {"input": ["one text", "another text"], "model": "odsc-llm"})
    assert floats.status == 200
    body = floats.body
    assert body["object"] == "list" and body["model"] == "/opt/ds/model/deployed_model/m/"
    assert [item["index"] for item in body["data"]] == [0, 1]
    assert len(body["data"][0]["embedding"]) == 384
    assert body["usage"] == {"prompt_tokens": 8, "total_tokens": 8}  # 2 words + [CLS] + [SEP] each
    packed = _call(server, "/v1/embeddings", {"input": "one text", "encoding_format": "base64"}).body
    vector = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(vector, body["data"][0]["embedding"], atol=1e-6)


def test_tei_server_refuses_as_tei_does() -> None:
    server = TeiServer("m", 384, 512)
    too_many = _call(server, "/v1/embeddings", {"input": ["x"] * (MAX_CLIENT_BATCH_SIZE + 1)})
    assert (too_many.status, too_many.body["error_type"]) == (413, "Validation")
    assert too_many.body["message"] == "batch size 33 > maximum allowed batch size 32"
    too_long = _call(server, "/v1/embeddings", {"input": ["ok", " ".join(["word"] * 600)]})
    assert too_long.status == 413
    assert too_long.body["message"] == "`inputs` must have less than 512 tokens. Given: 602"
    empty = _call(server, "/v1/embeddings", {"input": ["fine", ""]})
    assert (empty.status, empty.body["message"]) == (413, "`inputs` cannot be empty")
    nothing = _call(server, "/v1/embeddings", {"input": []})
    assert (nothing.status, nothing.body["error_type"]) == (400, "Empty")
    assert _call(server, "/v1/embeddings", {"text": "x"}).status == 422
    assert _call(server, "/v1/embeddings", {"input": "x"}, body_bytes=2_000_001).status == 413
    completions = _call(server, "/v1/completions", {"prompt": "hi"})
    assert (completions.status, completions.body) == (404, None)  # TEI has no completions route
    assert _call(server, "/v1/embeddings", None, method="GET").status == 405


# ------------------------------------------------------------------------------------- deploy and serve


@pytest.fixture(scope="module")
def own_backend(tmp_path_factory: pytest.TempPathFactory):
    from odsc_magics.local.testing import start_backend

    running = start_backend(tmp_path_factory.mktemp("embed-backend"), "--deploy-seconds", "0.2", "--ttft-ms", "0")
    yield running
    running.stop()


@pytest.fixture
def settings(own_backend, monkeypatch: pytest.MonkeyPatch) -> LLMSettings:
    monkeypatch.setattr(config, "_runtime_target", None)
    return LLMSettings(backend="local", local_dir=str(own_backend.state_dir))


@pytest.fixture(scope="module")
def embedding_deployment(own_backend):
    settings = LLMSettings(backend="local", local_dir=str(own_backend.state_dir))
    return api.deploy("all-MiniLM-L6-v2", "VM.GPU.A10.1", name="minilm", progress=False, settings=settings)


def test_the_catalog_offers_embedding_models_on_the_tei_container(own_backend) -> None:
    client = own_backend.data_science_client()
    model = client.get_model(own_backend.service_model_id("bge-m3")).data
    metadata = {item.key: item.value for item in model.custom_metadata_list}
    assert model.freeform_tags["task"] == "text_embedding" and "OCI_AQUA" in model.freeform_tags
    assert metadata["deployment-container"] == "odsc-tei-serving"
    assert metadata["hidden_size"] == "1024" and metadata["max_position_embeddings"] == "8192"
    assert metadata["container-cmd-var"].split(",")[0] == "--model-id"
    families = {c.family_name for c in client.list_containers().data}
    assert {"odsc-vllm-serving", "odsc-tei-serving"} <= families


def test_deploy_sends_the_aqua_tei_request_and_the_endpoint_embeds(own_backend, embedding_deployment) -> None:
    deployment = embedding_deployment
    assert deployment.state == "ACTIVE" and deployment.is_embedding and not deployment.is_chat
    assert own_backend.deployment_stats(deployment.id)["predict_requests"] >= 1  # the smoke test embedded "Hello"
    raw = own_backend.data_science_client().get_model_deployment(deployment.id).data
    container = raw.model_deployment_configuration_details.environment_configuration_details
    assert container.image == TEI_IMAGE
    artifact = container.environment_variables["BASE_MODEL"]
    assert container.environment_variables == {
        "BASE_MODEL": artifact,
        "MODEL_DEPLOY_PREDICT_ENDPOINT": "/v1/embeddings",
    }
    assert container.cmd == ["--model-id", f"/opt/ds/model/deployed_model/{artifact}/", "--port", "8080"]
    assert container.server_port == container.health_check_port == 8080

    result = deployment.embed(["the cat sat on the mat", "a cat sat on a mat", "quarterly revenue fell"])
    assert result.vectors.shape == (3, 384) and result.vectors.dtype == np.float32
    similar, unrelated = result.vectors[0] @ result.vectors[1], result.vectors[0] @ result.vectors[2]
    assert similar > unrelated


def test_the_sdk_predict_reaches_tei_on_the_default_route(own_backend, embedding_deployment) -> None:
    """ADS's Client.embeddings sends no route header: MODEL_DEPLOY_PREDICT_ENDPOINT routes it."""
    client = own_backend.model_deployment_client()
    reply = json.loads(client.predict(embedding_deployment.id, {"input": ["hello world"]}).data)
    assert len(reply["data"][0]["embedding"]) == 384


def test_completions_on_an_embedding_deployment_say_what_it_serves(embedding_deployment) -> None:
    with pytest.raises(NotFoundError) as caught:
        embedding_deployment.complete("Hello", max_tokens=4)
    assert "serves an embedding model" in caught.value.message
    assert "embed_frame" in caught.value.hint


def test_embeddings_on_a_generation_deployment_get_vllms_answer(own_backend, settings) -> None:
    generation = own_backend.create_deployment("generator")
    session = own_backend.session()
    raw = session.post(
        generation["url"] + "/predict",
        json={"model": "odsc-llm", "input": ["hello"]},
        headers={"route": "/v1/embeddings"},
    )
    assert raw.status_code == 400
    assert raw.json() == {
        "object": "error",
        "message": "The model does not support Embeddings API",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
    endpoint = api.get_deployment("generator", settings=settings).endpoint()
    with pytest.raises(NotFoundError) as caught:
        endpoint.embed(["hello"])
    assert "serves no embeddings" in caught.value.message and "text_embedding" in caught.value.hint


def test_vllm_options_are_refused_for_an_embedding_model(settings) -> None:
    with pytest.raises(ValidationError) as caught:
        api.deploy("e5-large-v2", "VM.GPU.A10.1", max_model_len=512, chat=True, progress=False, settings=settings)
    assert "embedding model" in caught.value.message and "max_model_len, chat" in caught.value.message


def test_an_embedding_model_starts_the_tei_server_not_vllm() -> None:
    from odsc_magics.local import catalog, failures

    model = next(m for m in catalog.SERVICE_MODELS if m["displayName"] == "bge-m3")
    launch = failures.plan(model, {"BASE_MODEL": "service_models/bge-m3/a1/artifact"}, "VM.GPU.A10.1")
    assert not launch.failed
    text = "\n".join(launch.lines)
    assert "text_embeddings_router" in text and "vLLM" not in text
    assert 'model_id: "/opt/ds/model/deployed_model/service_models/bge-m3/a1/artifact/"' in text
    assert "max_client_batch_size: 32" in text and "Maximum number of tokens per request: 8192" in text
    failing = failures.plan(model, {failures.FAIL_ENV: "boom"}, "VM.GPU.A10.1")
    assert failing.failed and failing.message == "Model deployment failed: boom"
