"""An aiohttp app on a loopback port in a thread of its own: the stub model servers of the tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web


@contextmanager
def serve_in_thread(app: web.Application) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 (a free port) until the block ends; yields its base URL."""
    ready = threading.Event()
    state: dict = {}

    async def serve() -> None:
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        state["url"] = f"http://127.0.0.1:{runner.addresses[0][1]}"
        state["stop"] = asyncio.Event()
        ready.set()
        await state["stop"].wait()
        await runner.cleanup()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the stub server did not start"
    try:
        yield state["url"]
    finally:
        loop.call_soon_threadsafe(state["stop"].set)
        thread.join(10)


async def _models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "stub-model", "object": "model"}]})


def openai_app(answer) -> web.Application:
    """An OpenAI-compatible model server: ``answer`` (an aiohttp handler) serves both completion routes."""
    app = web.Application()
    app.router.add_get("/v1/models", _models)
    app.router.add_post("/v1/completions", answer)
    app.router.add_post("/v1/chat/completions", answer)
    return app


def answering(text: str, *, piece: int = 7, pause: float = 0.0):
    """An aiohttp handler for both completion routes that answers ``text``: as one JSON reply, or streamed in
    pieces of ``piece`` characters ``pause`` seconds apart."""
    import json

    async def answer(request: web.Request) -> web.StreamResponse:
        chat = request.path.endswith("/chat/completions")
        body = await request.json()
        if not body.get("stream"):
            choice: dict = {"index": 0, "finish_reason": "stop"}
            choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
            usage = {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}
            kind = "chat.completion" if chat else "text_completion"
            return web.json_response(
                {"id": "stub", "object": kind, "model": body.get("model"), "choices": [choice], "usage": usage}
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        kind = "chat.completion.chunk" if chat else "text_completion"
        for start in range(0, len(text), piece):
            part = text[start : start + piece]
            choice = {"index": 0, "delta": {"content": part}} if chat else {"index": 0, "text": part}
            event = {"id": "stub", "object": kind, "model": body.get("model"), "choices": [choice]}
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
            if pause:
                await asyncio.sleep(pause)
        await response.write(b"data: [DONE]\n\n")
        return response

    return answer
