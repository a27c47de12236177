"""vLLM's OpenAI-compatible wire protocol as the local model servers speak it: replies, SSE frames, errors.

Shared by the builtin engine (engine.py), the ``openai:URL`` engine (upstream.py) and the data plane.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "COMPLETIONS_DEFAULT_MAX_TOKENS",
    "DONE_FRAME",
    "NO_EMBEDDINGS",
    "ROUTES",
    "BadRequest",
    "EngineReply",
    "body_field",
    "dumps",
    "error_body",
    "error_frame",
    "error_reply",
    "frame",
    "invalid",
    "route_reply",
    "usage",
    "value_error",
]

DONE_FRAME = b"data: [DONE]\n\n"
ROUTES = {
    "/v1/completions": "POST",
    "/v1/chat/completions": "POST",
    "/v1/embeddings": "POST",  # served by embedding models only; a generation model answers NO_EMBEDDINGS
    "/v1/models": "GET",
    "/health": "GET",
}
# vLLM's answer (400 BadRequestError) to /v1/embeddings on a model served for generation (entrypoints/openai).
NO_EMBEDDINGS = "The model does not support Embeddings API"
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # vLLM's CompletionRequest default; chat has none (up to the context)


@dataclass
class EngineReply:
    """What the model server answers: ``body`` (JSON; None means an empty body) or an SSE ``stream``."""

    status: int
    body: dict | list | None = None
    stream: AsyncIterator[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def dumps(obj: Any) -> str:
    """Compact JSON, non-ASCII kept, as vLLM writes it."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def frame(obj: Any) -> bytes:
    """One SSE event ``data: <json>`` and its blank line."""
    return b"data: " + dumps(obj).encode() + b"\n\n"


def error_body(status: int, message: str, err_type: str = "BadRequestError") -> dict:
    """vLLM's ErrorResponse."""
    return {"object": "error", "message": message, "type": err_type, "param": None, "code": status}


def error_reply(status: int, message: str, err_type: str = "BadRequestError") -> EngineReply:
    """A reply with vLLM's error body."""
    return EngineReply(status, error_body(status, message, err_type))


def error_frame(status: int, message: str, err_type: str) -> bytes:
    """The event vLLM sends when a stream fails after its headers: ``data: {"error": ErrorResponse}``."""
    return frame({"error": error_body(status, message, err_type)})


def route_reply(method: str, path: str) -> EngineReply | None:
    """FastAPI's 404 / 405 for an unknown path or a wrong method, else None."""
    allowed = ROUTES.get(path)
    if allowed is None:
        return EngineReply(404, {"detail": "Not Found"})
    if method.upper() != allowed:
        return EngineReply(405, {"detail": "Method Not Allowed"}, headers={"allow": allowed})
    return None


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    """The ``usage`` object of a non-streamed answer."""
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
        "prompt_tokens_details": None,
    }


# --- request validation ---------------------------------------------------------------------------


class BadRequest(Exception):
    """A request the model server refuses; ``reply`` is its error answer."""

    def __init__(self, reply: EngineReply) -> None:
        super().__init__(reply.body)
        self.reply = reply


def invalid(loc: tuple, err_type: str, msg: str, value: Any) -> BadRequest:
    """FastAPI's RequestValidationError as vLLM renders it: str() of pydantic's error list."""
    detail = [{"type": err_type, "loc": ("body", *loc), "msg": msg, "input": value}]
    return BadRequest(error_reply(400, str(detail)))


def value_error(message: str) -> BadRequest:
    """vLLM's 400 for a request that parses but cannot be served."""
    return BadRequest(error_reply(400, message))


_TYPES = {
    "int": ("int_type", "Input should be a valid integer"),
    "number": ("float_type", "Input should be a valid number"),
    "bool": ("bool_type", "Input should be a valid boolean"),
    "str": ("string_type", "Input should be a valid string"),
    "dict": ("dict_type", "Input should be a valid dictionary"),
    "list": ("list_type", "Input should be a valid list"),
}


def body_field(body: dict, name: str, kind: str, default: Any = None) -> Any:
    """Field ``name`` of a request body checked as pydantic checks ``kind``; ``default`` when absent or null."""
    value = body.get(name)
    if value is None:
        return default
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "dict": isinstance(value, dict),
        "list": isinstance(value, list),
    }[kind]
    if not ok and kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    if not ok:
        err_type, msg = _TYPES[kind]
        raise invalid((name,), err_type, msg, value)
    return value
