"""Small HTTP helpers shared by the control and data planes: JSON answers, query parameters, pagination."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from odsc_magics.local.apierror import ApiError, invalid, missing

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer (content-type application/json, no charset parameter)."""
    return web.Response(body=dumps(data), status=status, headers=headers, content_type="application/json")


def error_response(error: ApiError) -> web.Response:
    return json_response(error.body(), status=error.status, headers=error.headers or None)


async def read_json(request: web.Request) -> Any:
    """The request's JSON body; 400 CannotParseRequest when it is absent or not JSON."""
    raw = await request.read()
    if not raw.strip():
        raise ApiError(400, "CannotParseRequest", "The request body is empty; a JSON document is required")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, "CannotParseRequest", f"The request body is not valid JSON: {exc}") from None


def required_query(request: web.Request, name: str) -> str:
    value = request.query.get(name)
    if not value:
        raise missing(name)
    return value


def paginate(request: web.Request, items: list) -> tuple[list, dict[str, str]]:
    """Slice ``items`` by ``limit``/``page``; the headers carry ``opc-next-page`` when more remain."""
    try:
        limit = int(request.query.get("limit") or DEFAULT_LIMIT)
    except ValueError:
        raise invalid("limit must be an integer") from None
    if limit < 1:
        raise invalid("limit must be at least 1")
    limit = min(limit, MAX_LIMIT)
    start = 0
    page = request.query.get("page")
    if page:
        try:
            start = int(base64.urlsafe_b64decode(page.encode() + b"==").decode().removeprefix("offset:"))
        except ValueError:
            raise invalid("page is not a page token returned by this service") from None
    chunk = items[start : start + limit]
    headers = {}
    if start + limit < len(items):
        token = base64.urlsafe_b64encode(f"offset:{start + limit}".encode()).decode().rstrip("=")
        headers["opc-next-page"] = token
    return chunk, headers


def filter_and_sort(
    request: web.Request,
    items: list[dict],
    *,
    filters: dict[str, str],
    sort_keys: dict[str, str],
    default_sort: str,
    key: Callable[[dict, str], Any] | None = None,
) -> list[dict]:
    """Apply equality filters (query name → field) and ``sortBy``/``sortOrder``."""
    getter = key or (lambda item, field: item.get(field))
    for query_name, field in filters.items():
        wanted = request.query.get(query_name)
        if wanted:
            items = [item for item in items if getter(item, field) == wanted]
    sort_by = request.query.get("sortBy") or default_sort
    if sort_by not in sort_keys:
        raise invalid(f"sortBy must be one of {', '.join(sort_keys)}")
    order = request.query.get("sortOrder")
    if order and order not in {"ASC", "DESC"}:
        raise invalid("sortOrder must be ASC or DESC")
    field = sort_keys[sort_by]
    descending = (order or ("ASC" if field == "displayName" else "DESC")) == "DESC"
    return sorted(items, key=lambda item: getter(item, field) or "", reverse=descending)
