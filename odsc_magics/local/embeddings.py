"""The local backend's embedding model server: Text Embeddings Inference's ``/v1/embeddings``, with builtin vectors.

A deployment on the TEI image (odsc_magics.embedding_models) is served here, as TEI serves it: ``/v1/embeddings``
(OpenAI's format, ``encoding_format`` ``float`` or ``base64``), ``/health``, ``/info``; any other path is the
router's bare 404 (TEI has no completions). TEI's limits and errors: at most ``MAX_CLIENT_BATCH_SIZE`` inputs per
request and ``max_input_tokens`` tokens per input (413 ``Validation``), no empty input, at most
``TEI_PAYLOAD_LIMIT`` bytes of body (a bare 413).

The builtin vectors need no weights: a hashed bag of words projected at random (each distinct lower-cased word
draws a fixed Gaussian vector from a seed hashed from the word; a text's vector is the sum, weighted
``1 + log(count)``, normalised to length 1). Texts sharing words are closer; the same text always gets the same
vector, in every process.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import time
from collections import Counter
from functools import lru_cache
from typing import Any

import numpy as np

from odsc_magics.embedding_models import (
    EMBEDDINGS_ROUTE,
    MAX_CLIENT_BATCH_SIZE,
    SPECIAL_TOKENS,
    TEI_CONTAINER,
    TEI_PAYLOAD_LIMIT,
    find,
)
from odsc_magics.local.openai_wire import EngineReply
from odsc_magics.local.tokens import count_tokens

__all__ = ["TeiServer", "embed_text", "is_tei", "tei_launch_lines", "tei_server_for"]

DEFAULT_DIMENSION = 768
DEFAULT_MAX_INPUT = 512
_WORD = re.compile(r"\w+")
_ROUTES = {EMBEDDINGS_ROUTE: "POST", "/embed": "POST", "/health": "GET", "/info": "GET"}


@lru_cache(maxsize=1 << 16)
def _word_vector(word: str, dimension: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
    vector = np.random.default_rng(seed).standard_normal(dimension).astype(np.float32)
    vector.setflags(write=False)
    return vector


def embed_text(text: str, dimension: int) -> np.ndarray:
    """The builtin vector of ``text``: float32, length 1."""
    counts = Counter(word.lower() for word in _WORD.findall(text))
    if not counts:  # no word at all (punctuation only): the whole text is its one "word"
        counts = Counter({text: 1})
    total = np.zeros(dimension, dtype=np.float32)
    for word, count in counts.items():
        weight = 1.0 + math.log(count)
        total += _word_vector(word, dimension) if weight == 1.0 else weight * _word_vector(word, dimension)
    norm = float(np.linalg.norm(total))
    return total / norm if norm else total


def _error(status: int, message: str, error_type: str) -> EngineReply:
    """TEI's OpenAI-compatible error body."""
    return EngineReply(status, {"message": message, "code": status, "error_type": error_type})


class TeiServer:
    """One TEI model server: the model's dimension and its tokens per input."""

    served_model_name = "tei"

    def __init__(self, model_id: str, dimension: int, max_input_tokens: int) -> None:
        self.model_id = model_id
        self.dimension = dimension
        self.max_input_tokens = max_input_tokens

    async def aclose(self) -> None:
        """Nothing to release."""

    async def handle(self, method: str, path: str, body: Any, *, context: dict) -> EngineReply:
        """Answer one request on the container path ``path``."""
        path = path.split("?", 1)[0]
        allowed = _ROUTES.get(path)
        if allowed is None:
            return EngineReply(404, None)  # the router's fallback: no body
        if method.upper() != allowed:
            return EngineReply(405, None)
        if path == "/health":
            return EngineReply(200, None)
        if path == "/info":
            return EngineReply(200, self.info())
        if (context.get("body_bytes") or 0) > TEI_PAYLOAD_LIMIT:
            return EngineReply(413, None)  # the body limit, before any parsing
        texts, error = self._inputs(body, "inputs" if path == "/embed" else "input")
        if error is not None:
            return error
        tokens = [count_tokens(text) + SPECIAL_TOKENS for text in texts]
        for text, count in zip(texts, tokens, strict=True):
            if not text:
                return _error(413, "`inputs` cannot be empty", "Validation")
            if count > self.max_input_tokens:
                return _error(
                    413,
                    f"`inputs` must have less than {self.max_input_tokens} tokens. Given: {count}",
                    "Validation",
                )
        vectors = [embed_text(text, self.dimension) for text in texts]
        if path == "/embed":
            return EngineReply(200, [vector.tolist() for vector in vectors])
        as_base64 = isinstance(body, dict) and body.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "embedding": base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
                if as_base64
                else vector.tolist(),
                "index": index,
            }
            for index, vector in enumerate(vectors)
        ]
        total = sum(tokens)
        return EngineReply(
            200,
            {
                "object": "list",
                "data": data,
                "model": self.model_id,
                "usage": {"prompt_tokens": total, "total_tokens": total},
            },
        )

    def _inputs(self, body: Any, field: str) -> tuple[list[str], EngineReply | None]:
        """The texts of a request, or TEI's error for a body it cannot read."""
        if not isinstance(body, dict) or field not in body:
            message = f"Failed to deserialize the JSON body into the target type: missing field `{field}`"
            return [], _error(422, message, "Validation")
        value = body[field]
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            return [], _error(422, f"Failed to deserialize the JSON body: invalid type for `{field}`", "Validation")
        if not items:
            return [], _error(400, "`inputs` cannot be empty", "Empty")
        if len(items) > MAX_CLIENT_BATCH_SIZE:
            message = f"batch size {len(items)} > maximum allowed batch size {MAX_CLIENT_BATCH_SIZE}"
            return [], _error(413, message, "Validation")
        texts = []
        for item in items:
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in item):
                texts.append(" ".join(map(str, item)))  # token ids: one word each
            else:
                return [], _error(
                    422, f"Failed to deserialize the JSON body: invalid type for `{field}`", "Validation"
                )
        return texts, None

    def info(self) -> dict:
        """TEI's ``/info``, as far as the builtin server knows it."""
        return {
            "model_id": self.model_id,
            "model_type": {"embedding": {"pooling": "mean"}},
            "max_input_length": self.max_input_tokens,
            "max_client_batch_size": MAX_CLIENT_BATCH_SIZE,
            "version": "builtin",
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }


def is_tei(deployment: dict) -> bool:
    """True for a deployment on the Text Embeddings Inference image."""
    config = deployment.get("modelDeploymentConfigurationDetails") or {}
    image = str((config.get("environmentConfigurationDetails") or {}).get("image") or "")
    return image.rsplit("/", 1)[-1].startswith(f"{TEI_CONTAINER}:") or image.endswith(f"/{TEI_CONTAINER}")


_servers: dict[tuple[str, int, int], TeiServer] = {}


def tei_server_for(deployment: dict, model: dict | None) -> TeiServer | None:
    """The TEI server of a deployment on the TEI image (None for any other), sized from its model's metadata."""
    if not is_tei(deployment):
        return None
    metadata = {item.get("key"): item.get("value") for item in (model or {}).get("customMetadataList") or []}
    known = find((model or {}).get("displayName"))
    dimension = _whole(metadata.get("hidden_size")) or (known.dimension if known else DEFAULT_DIMENSION)
    max_input = _whole(metadata.get("max_position_embeddings")) or (
        known.max_input_tokens if known else DEFAULT_MAX_INPUT
    )
    config = deployment.get("modelDeploymentConfigurationDetails") or {}
    cmd = list((config.get("environmentConfigurationDetails") or {}).get("cmd") or [])
    model_id = cmd[cmd.index("--model-id") + 1] if "--model-id" in cmd[:-1] else str(known.name if known else "")
    key = (model_id, dimension, max_input)
    server = _servers.get(key)
    if server is None:
        server = _servers[key] = TeiServer(model_id, dimension, max_input)
    return server


def tei_launch_lines(model: dict | None, env: dict[str, str], stamp: str) -> list[str] | None:
    """What TEI prints while it starts (its arguments, then ready) for an embedding model; None for another model.

    The lines follow a TEI server's start-up log (its ``Args { ... }`` line, then the HTTP server ready).
    """
    from odsc_magics.embedding_models import MAX_BATCH_TOKENS, MODEL_DIR, PORT, serves_embeddings

    metadata = {item.get("key"): item.get("value") for item in (model or {}).get("customMetadataList") or []}
    if model is None or not serves_embeddings(metadata, model.get("freeformTags")):
        return None
    model_id = f"{MODEL_DIR}/{env.get('BASE_MODEL', '').strip('/')}/"
    port = env.get("PORT") or str(PORT)
    where = "text_embeddings_router"
    return [
        f"{stamp}  INFO {where}: router/src/main.rs:175: Args {{ model_id: \"{model_id}\", "
        f"max_concurrent_requests: 512, max_batch_tokens: {MAX_BATCH_TOKENS}, max_batch_requests: None, "
        f"max_client_batch_size: {MAX_CLIENT_BATCH_SIZE}, auto_truncate: false, port: {port}, "
        f"payload_limit: {TEI_PAYLOAD_LIMIT} }}",
        f"{stamp}  INFO {where}: router/src/lib.rs: Maximum number of tokens per request: "
        f"{_whole(metadata.get('max_position_embeddings')) or DEFAULT_MAX_INPUT}",
        f"{stamp}  INFO {where}: router/src/lib.rs: Starting model backend",
        f"{stamp}  INFO {where}::http::server: router/src/http/server.rs: Starting HTTP server: 0.0.0.0:{port}",
        f"{stamp}  INFO {where}::http::server: router/src/http/server.rs: Ready",
    ]


def _whole(value: Any) -> int | None:
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None
