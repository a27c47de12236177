"""The `openai:URL` engine: a local deployment backed by any OpenAI-compatible server the user runs."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from odsc_magics.local.openai_wire import DONE_FRAME, EngineReply, error_reply, frame, route_reply
from odsc_magics.sse import DONE, EventData

__all__ = ["OpenAIEngine"]


class OpenAIEngine:
    """Forwards requests to an OpenAI-compatible server (vLLM, llama.cpp's server, Ollama, ...)."""

    def __init__(self, url: str, *, served_model_name: str = "odsc-llm", timeout_s: float = 600.0) -> None:
        self.served_model_name = served_model_name
        self.url = url.rstrip("/")
        # The base for /v1/... routes: a URL ending in /v1 already carries the prefix.
        self._base = self.url[: -len("/v1")] if self.url.endswith("/v1") else self.url
        self._timeout_s = timeout_s
        self._session: Any = None
        self._upstream_model: str | None = None

    async def aclose(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> Any:
        import aiohttp

        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=self._timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    def _unreachable(self, exc: BaseException) -> EngineReply:
        reason = str(exc) or type(exc).__name__
        return error_reply(
            503,
            f"The upstream model server at {self.url} could not be reached: {reason}",
            "ServiceUnavailableError",
        )

    async def _models_upstream(self) -> tuple[int, Any]:
        async with self._client().get(self._base + "/v1/models") as resp:
            try:
                return resp.status, await resp.json(content_type=None)
            except ValueError:
                return resp.status, None

    async def _model_id(self) -> str | None:
        """The upstream's first model (asked once; "" when it lists none)."""
        if self._upstream_model is None:
            status, body = await self._models_upstream()
            data = body.get("data") if status == 200 and isinstance(body, dict) else None
            first = data[0] if isinstance(data, list) and data else None
            self._upstream_model = str(first.get("id") or "") if isinstance(first, dict) else ""
        return self._upstream_model or None

    async def handle(self, method: str, path: str, body: Any, *, context: dict) -> EngineReply:
        """Forward one request to the upstream server and relay its answer."""
        import aiohttp

        route = path.split("?", 1)[0]
        bad_route = route_reply(method, route)
        if bad_route is not None:
            return bad_route
        try:
            if route == "/health":
                status, _ = await self._models_upstream()
                return EngineReply(200 if status < 500 else 503, None)
            if route == "/v1/models":
                return await self._models(context)
            return await self._forward(method, path, body)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return self._unreachable(exc)

    async def _models(self, context: dict) -> EngineReply:
        status, body = await self._models_upstream()
        # Servers without a model list (or with an odd one) still serve the deployment's model.
        upstream = list(body.get("data") or []) if status == 200 and isinstance(body, dict) else []
        upstream = [m for m in upstream if isinstance(m, dict) and m.get("id")]
        if upstream and not self._upstream_model:
            self._upstream_model = str(upstream[0]["id"])
        served = {
            "id": self.served_model_name,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "vllm",
            "root": self._upstream_model
            or (context.get("env") or {}).get("BASE_MODEL")
            or self.served_model_name,
            "parent": None,
        }
        others = [m for m in upstream if m.get("id") != self.served_model_name]
        return EngineReply(200, {"object": "list", "data": [served, *others]})

    async def _forward(self, method: str, path: str, body: Any) -> EngineReply:
        rewrite = False
        if isinstance(body, dict) and body.get("model") in (None, self.served_model_name):
            model = await self._model_id()
            if model is not None and model != self.served_model_name:
                body = {**body, "model": model}
                rewrite = True
        stream = isinstance(body, dict) and body.get("stream") is True
        resp = await self._client().request(
            method,
            self._base + path,
            json=body,
            headers={"accept": "text/event-stream" if stream else "application/json"},
        )
        content_type = resp.headers.get("content-type", "")
        if stream and resp.status == 200 and content_type.startswith("text/event-stream"):
            return EngineReply(200, stream=self._relay(resp, rewrite))
        try:
            raw = await resp.read()
        finally:
            resp.release()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            status = resp.status if resp.status >= 400 else 502
            text = raw.decode("utf-8", "replace").strip()[:500]
            err_type = "InternalServerError" if status >= 500 else "BadRequestError"
            return error_reply(status, f"The upstream model server answered {resp.status}: {text}", err_type)
        if rewrite and isinstance(data, dict) and "model" in data:
            data["model"] = self.served_model_name
        return EngineReply(resp.status, data)

    async def _relay(self, resp: Any, rewrite: bool) -> AsyncIterator[bytes]:
        """Re-frame the upstream's SSE events as ``data: ...\\n\\n``, ending with ``data: [DONE]``."""
        done = False
        parser = EventData()
        try:
            async for chunk in resp.content.iter_any():
                for payload in parser.feed(chunk):
                    done = done or payload == DONE
                    yield self._reframe(payload, rewrite)
        finally:
            resp.release()
        if not done:
            yield DONE_FRAME

    def _reframe(self, payload: bytes, rewrite: bool) -> bytes:
        if payload == DONE:
            return DONE_FRAME
        try:
            event = json.loads(payload)
        except ValueError:
            return b"data: " + payload.replace(b"\n", b" ") + b"\n\n"
        if rewrite and isinstance(event, dict) and "model" in event:
            event["model"] = self.served_model_name
        return frame(event)
