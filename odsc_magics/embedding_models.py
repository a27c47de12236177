"""Embedding models as AI Quick Actions serves them: the TEI container, its command and route, its limits, the models.

Sources, read 2026-11-29:
- [ADS] github oracle/accelerated-data-science, ``ads/aqua/common/enums.py`` (CustomInferenceContainerTypeFamily
  ``AQUA_TEI_CONTAINER_FAMILY = "odsc-tei-serving"``) and
  ``tests/unitary/with_extras/aqua/test_deployment.py::test_create_deployment_for_tei_byoc_embedding_model`` with
  its data ``test_data/deployment/aqua_tei_byoc_embedding_model.yaml`` and
  ``aqua_create_embedding_deployment.yaml``: an embedding model carries the custom metadata
  ``deployment-container: odsc-tei-serving`` and ``container-cmd-var:
  --model-id,/opt/ds/model/deployed_model/<artifact>/,--port,8080``, the freeform tag ``task: text_embedding``;
  its deployment runs the TEI image with that ``cmd``, ports 8080, and the environment ``BASE_MODEL`` and
  ``MODEL_DEPLOY_PREDICT_ENDPOINT=/v1/embeddings`` (no ``PARAMS``: the vLLM flags do not apply).
  ``ads/aqua/client/client.py``'s ``Client.embeddings`` posts ``{"input": ...}`` to ``/predict`` with no route
  header, relying on that default route.
- [TEI] github huggingface/text-embeddings-inference, ``router/src/http/server.rs``: the OpenAI-compatible
  ``/v1/embeddings``; errors ``{"message", "code", "error_type"}`` with status 413 for ``Validation``
  (``"batch size N > maximum allowed batch size M"``, ```` `inputs` must have less than N tokens. Given: M ````),
  400 for ``Empty``; ``core/src/tokenization.rs`` for the per-input limit. Its launcher defaults, as a started
  server prints them (alphahinex.github.io/2025/06/29/use-embedding-and-rerank-with-tei-in-dify):
  ``max_batch_tokens: 16384``, ``max_client_batch_size: 32``, ``auto_truncate: false``, ``payload_limit: 2000000``.
- [HF] each model's ``config.json`` on huggingface.co (``hidden_size`` is the vector's dimension,
  ``max_position_embeddings`` bounds an input's tokens): sentence-transformers/all-MiniLM-L6-v2 384 / 512 (as
  copies of it reproduce it), BAAI/bge-base-en-v1.5 768 / 512 (huggingface.co/Xenova/bge-base-en-v1.5, a copy),
  intfloat/e5-large-v2 1024 / 512 (huggingface.co/intfloat/e5-large-v2/blob/b322e09/config.json), BAAI/bge-m3
  1024 / 8194 (huggingface.co/BAAI/bge-m3/blame/main/onnx/config.json), of which XLM-RoBERTa uses 8192 for tokens
  (its positions start after the padding index, 1). Parameter counts as the model cards give them.

The tag of the TEI image is the local catalog's own: no public source names the service's current one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EMBEDDINGS_ROUTE",
    "MAX_BATCH_TOKENS",
    "MAX_CLIENT_BATCH_SIZE",
    "MODELS",
    "TASK",
    "TEI_CONTAINER",
    "TEI_IMAGE",
    "TEI_PAYLOAD_LIMIT",
    "EmbeddingModel",
    "embedding_deployment_details",
    "find",
    "serves_embeddings",
    "tei_cmd",
]

TEI_CONTAINER = "odsc-tei-serving"
TEI_TAG = "1.5.0.1"  # the local catalog's tag (see above)
TEI_IMAGE = f"dsmc://{TEI_CONTAINER}:{TEI_TAG}"
EMBEDDINGS_ROUTE = "/v1/embeddings"
TASK = "text_embedding"
CONTAINER_KEY = "deployment-container"  # custom metadata naming a model's serving container
CMD_KEY = "container-cmd-var"  # custom metadata: the container's command, comma-separated
MODEL_DIR = "/opt/ds/model/deployed_model"
PORT = 8080

# TEI launcher defaults [TEI]: texts per request, tokens per engine batch, bytes per request body.
MAX_CLIENT_BATCH_SIZE = 32
MAX_BATCH_TOKENS = 16384
TEI_PAYLOAD_LIMIT = 2_000_000
SPECIAL_TOKENS = 2  # [CLS] and [SEP]: what a BERT-style tokenizer adds to every input


@dataclass(frozen=True)
class EmbeddingModel:
    """An embedding model of the catalog: its vector's dimension and the tokens one input may hold."""

    name: str
    organization: str
    license: str
    dimension: int
    max_input_tokens: int
    parameters: str  # as the catalog's parameter_count metadata writes it


# [HF] config.json: hidden_size, max_position_embeddings (bge-m3: XLM-RoBERTa's 8194 positions, 8192 usable).
MODELS = (
    EmbeddingModel("all-MiniLM-L6-v2", "Sentence Transformers", "Apache 2.0", 384, 512, "22.7M"),
    EmbeddingModel("bge-base-en-v1.5", "BAAI", "MIT", 768, 512, "109M"),
    EmbeddingModel("e5-large-v2", "intfloat", "MIT", 1024, 512, "335M"),
    EmbeddingModel("bge-m3", "BAAI", "MIT", 1024, 8192, "568M"),
)
_BY_NAME = {model.name.lower(): model for model in MODELS}


def find(name: str | None) -> EmbeddingModel | None:
    """The catalog's embedding model of that display name (a path prefix such as ``BAAI/`` is ignored)."""
    if not name:
        return None
    return _BY_NAME.get(name.strip().rsplit("/", 1)[-1].lower())


def serves_embeddings(metadata: Mapping[str, Any] | None, tags: Mapping[str, Any] | None = None) -> bool:
    """True for a model AQUA deploys with the TEI container (its metadata or task says so)."""
    if (metadata or {}).get(CONTAINER_KEY) == TEI_CONTAINER:
        return True
    return (tags or {}).get("task") == TASK


def tei_cmd(base_model: str, metadata: Mapping[str, Any] | None = None) -> list[str]:
    """The container command: the model's ``container-cmd-var`` metadata, else TEI serving the artifact on 8080."""
    given = str((metadata or {}).get(CMD_KEY) or "").strip()
    if given:
        return [part.strip() for part in given.split(",") if part.strip()]
    return ["--model-id", f"{MODEL_DIR}/{base_model.strip('/')}/", "--port", str(PORT)]


def embedding_deployment_details(
    *,
    name: str,
    model_id: str,
    model_name: str,
    base_model: str,
    metadata: Mapping[str, Any] | None,
    project_id: str,
    compartment_id: str,
    shape: str,
    instances: int = 1,
    bandwidth_mbps: int,
    env: Mapping[str, str] | None = None,
    logs: Any = None,
    tags: Mapping[str, str] | None = None,
) -> Any:
    """The ``CreateModelDeploymentDetails`` AI Quick Actions sends for an embedding model on the TEI container."""
    from odsc_magics.vllm_container import aqua_deployment_details

    variables = {
        "BASE_MODEL": base_model,
        "MODEL_DEPLOY_PREDICT_ENDPOINT": EMBEDDINGS_ROUTE,
        **{str(key): str(value) for key, value in (env or {}).items()},
    }
    return aqua_deployment_details(
        name=name,
        description=f"{model_name} served by Text Embeddings Inference",
        model_id=model_id,
        model_name=model_name,
        project_id=project_id,
        compartment_id=compartment_id,
        shape=shape,
        instances=instances,
        bandwidth_mbps=bandwidth_mbps,
        image=TEI_IMAGE,
        cmd=tei_cmd(base_model, metadata),
        port=PORT,
        variables=variables,
        logs=logs,
        tags=tags,
    )
