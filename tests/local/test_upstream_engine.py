"""``--engine openai:URL``: the data plane relays to an OpenAI-compatible server the user runs."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from stub_server import serve_in_thread

CHAT = {"model": "odsc-llm", "messages": [{"role": "user", "content": "hi"}]}


async def _models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "upstream-model", "object": "model"}]})


async def _chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if not body.get("stream"):
        message = {"role": "assistant", "content": "Hello"}
        return web.json_response(
            {
                "id": "u",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for piece in ("Hel", "lo"):
        chunk = {
            "id": "u",
            "object": "chat.completion.chunk",
            "model": body["model"],
            "choices": [{"index": 0, "delta": {"content": piece}}],
        }
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    return response


@pytest.fixture
def upstream():
    """A minimal OpenAI-compatible server on a loopback port, in a thread."""
    app = web.Application()
    app.router.add_get("/v1/models", _models)
    app.router.add_post("/v1/chat/completions", _chat)
    with serve_in_thread(app) as url:
        yield url


@pytest.mark.parametrize("serving", ["fixed", "gpu"])
def test_openai_engine_relays_json_and_streams(backend_factory, upstream, serving):
    backend = backend_factory("--engine", f"openai:{upstream}", "--serving", serving)
    deployment = backend.create_deployment("relay", chat=True)
    session = backend.session()
    answer = session.post(deployment["url"] + "/predict", json=CHAT).json()
    assert answer["choices"][0]["message"]["content"] == "Hello" and answer["model"] == "odsc-llm"
    streamed = session.post(deployment["url"] + "/predictWithResponseStream", json={**CHAT, "stream": True})
    assert streamed.headers["content-type"] == "text/event-stream"
    payloads = [line[6:] for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert payloads[-1] == "[DONE]"
    assert "".join(json.loads(p)["choices"][0]["delta"]["content"] for p in payloads[:-1]) == "Hello"
    # The upstream server times its own answers: no simulated engine runs for it.
    stats = backend.deployment_stats(deployment["id"])
    assert stats["steps"] == 0 and stats["generation_tokens"] == 0
