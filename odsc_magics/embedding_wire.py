"""One ``/v1/embeddings`` call through a deployment's ``/predict``: the request, its retries, the vectors it returns.

Vectors are asked for as ``encoding_format: "base64"`` (little-endian float32, OpenAI's and vLLM's format): a
quarter of the bytes of JSON floats through the deployment's load-balancer bandwidth, decoded without a Python
float per value. A server that answers floats anyway (one that ignores the field) is read as well.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from odsc_magics import arguments
from odsc_magics.embedding_models import EMBEDDINGS_ROUTE
from odsc_magics.errors import NotFoundError, ServerError, ValidationError
from odsc_magics.retry import RetryPolicy, run_with_retries

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Embeddings", "build_embedding_request", "decode_vectors", "embed", "embed_once"]

_CLIENT_OPTIONS = ("timeout", "max_retries")
NO_EMBEDDINGS = "does not support Embeddings API"  # vLLM's 400 for /v1/embeddings on a generation model


@dataclass
class Embeddings:
    """The vectors of one request (a float32 matrix, one row per input, in input order) and where they came from."""

    vectors: np.ndarray
    usage: dict
    latency_s: float
    opc_request_id: str | None
    deployment: str
    model: str | None = None
    attempts: int = 1
    params: dict = field(default_factory=dict)
    route: str = EMBEDDINGS_ROUTE

    @property
    def dimension(self) -> int:
        """Numbers per vector."""
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0

    def __len__(self) -> int:
        return int(self.vectors.shape[0])


def _texts(texts: Any) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, Sequence) and all(isinstance(text, str) for text in texts):
        return list(texts)
    raise ValidationError(
        f"texts must be a str or a list of str, not {type(texts).__name__}"
        + (" holding other values" if isinstance(texts, Sequence) else ""),
        hint='e.g. endpoint.embed(["first text", "second text"])',
        target="texts",
    )


def build_embedding_request(endpoint: Any, texts: Any, **params: Any) -> dict:
    """The request as it would be sent (no authorization header): {"url", "route", "headers", "body"}.

    ``params`` are further body fields (``dimensions``, ``user``, ``encoding_format="float"``, ...); ``model``
    defaults to the ``model`` setting, as for completions.
    """
    inputs = _texts(texts)
    for name in _CLIENT_OPTIONS:
        if params.get(name) is not None:
            arguments.setting(name, params[name])
    params = {k: v for k, v in params.items() if k not in _CLIENT_OPTIONS}
    model = resolve_setting(endpoint, "model", params.pop("model", None))
    body: dict[str, Any] = {"model": model, "input": inputs, "encoding_format": "base64"}
    body.update({k: v for k, v in params.items() if v is not None})
    headers = {"content-type": "application/json", "accept": "application/json", "route": EMBEDDINGS_ROUTE}
    return {"url": f"{endpoint.url}/predict", "route": EMBEDDINGS_ROUTE, "headers": headers, "body": body}


def resolve_setting(endpoint: Any, name: str, explicit: Any = None) -> Any:
    from odsc_magics.config import resolve

    return resolve(name, explicit, endpoint.settings)[0]


def decode_vectors(payload: Any, count: int, label: str = "the deployment") -> np.ndarray:
    """The float32 matrix of an OpenAI embeddings reply (rows in input order); ServerError when it is malformed."""
    import numpy as np

    def bad(why: str) -> ServerError:
        return ServerError(
            f"{label} sent an embeddings reply that cannot be read: {why}.",
            hint="Is it an embedding model's deployment (its route /v1/embeddings)? Retried with backoff.",
            target=label,
        )

    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list) or len(data) != count:
        got = len(data) if isinstance(data, list) else "no"
        raise bad(f"{got} vectors for {count} inputs")
    rows: list[Any] = [None] * count
    for position, item in enumerate(data):
        index = item.get("index", position) if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < count or rows[index] is not None:
            raise bad(f"item {position} has no valid index")
        value = item.get("embedding")
        try:
            if isinstance(value, str):
                rows[index] = np.frombuffer(base64.b64decode(value, validate=True), dtype="<f4")
            else:
                rows[index] = np.asarray(value, dtype=np.float32)
        except (binascii.Error, ValueError, TypeError):
            raise bad(f"item {position}'s vector is neither base64 float32 nor a list of numbers") from None
    dimensions = {row.shape for row in rows}
    if len(dimensions) != 1 or next(iter(dimensions))[0:1] == (0,) or len(next(iter(dimensions))) != 1:
        raise bad("the vectors differ in length or are empty")
    return np.vstack(rows).astype(np.float32, copy=False)


def embed_once(endpoint: Any, request: dict, *, read_timeout: float) -> tuple[Any, dict]:
    """POST the request once; (response, JSON payload), or the error the client raises for that reply."""
    from odsc_magics.client import read_json_reply

    data = json.dumps(request["body"], separators=(",", ":")).encode()
    resp = endpoint._send(request, data, stream=False, read_timeout=read_timeout)
    if resp.status_code != 200:
        error = endpoint._status_error(resp, len(data))
        if NO_EMBEDDINGS in str(getattr(error, "message", "")):
            # A generation model's vLLM: every request would get the same answer, so no batch goes on.
            raise NotFoundError(
                f"{endpoint.label} serves no embeddings: {error.message}",
                hint="Deploy an embedding model (`%llm_deploy models` lists them, task text_embedding, e.g. "
                "all-MiniLM-L6-v2) and embed through that deployment.",
                target=endpoint.label,
            )
        raise error
    return resp, read_json_reply(resp, endpoint.label)


def embed(endpoint: Any, texts: Any, **params: Any) -> Embeddings:
    """Embed ``texts`` in one request (retried as the client retries a completion)."""
    request = build_embedding_request(endpoint, texts, **params)
    count = len(request["body"]["input"])
    read_timeout = float(resolve_setting(endpoint, "timeout", params.get("timeout")))
    policy = RetryPolicy(max_retries=int(resolve_setting(endpoint, "max_retries", params.get("max_retries"))))
    started = time.perf_counter()
    attempts = [0]

    def attempt(number: int) -> tuple[Any, np.ndarray, dict]:
        attempts[0] = number
        resp, payload = embed_once(endpoint, request, read_timeout=read_timeout)
        return resp, decode_vectors(payload, count, endpoint.label), payload

    resp, vectors, payload = run_with_retries(attempt, policy, on_retry=endpoint._log_retry)
    skip = ("model", "input")
    return Embeddings(
        vectors=vectors,
        usage=dict(payload.get("usage") or {}),
        latency_s=time.perf_counter() - started,
        opc_request_id=resp.headers.get("opc-request-id"),
        deployment=endpoint.deployment_id or endpoint.url,
        model=payload.get("model"),
        attempts=attempts[0],
        params={k: v for k, v in request["body"].items() if k not in skip},
    )
