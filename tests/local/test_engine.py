"""Tests for the local model server engine: the builtin engine's vLLM protocol and openai:URL forwarding."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web

from odsc_magics.local.engine import make_engine
from odsc_magics.local.openai_wire import DONE_FRAME, EngineReply
from odsc_magics.local.tokens import count_tokens, render_chat, tokenize

CTX: dict = {"deployment_id": "ocid1.datasciencemodeldeployment.oc1.iad.test", "env": {}}
PROMPT = "Explain how a rotating galaxy keeps its spiral arms."
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Why do volcanoes erupt near tectonic plates?"},
]


def call(
    body: Any, path: str = "/v1/completions", method: str = "POST", engine: Any = None, **kw: Any
) -> Any:
    """One request to a fast builtin engine (or ``engine``); returns (reply, frames or None)."""

    async def run() -> tuple[EngineReply, list[bytes] | None]:
        eng = engine or make_engine("builtin", ttft_ms=0, tokens_per_s=0, **kw)
        reply = await eng.handle(method, path, body, context=CTX)
        frames = [f async for f in reply.stream] if reply.stream is not None else None
        return reply, frames

    return asyncio.run(run())


def events(frames: list[bytes]) -> list[dict]:
    """The JSON events of an SSE stream, checking the framing and the final [DONE]."""
    assert frames[-1] == DONE_FRAME
    out = []
    for frame in frames[:-1]:
        assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
        payload = frame[len(b"data: ") : -2]
        assert b"\n" not in payload
        event = json.loads(payload)
        assert payload.decode() == json.dumps(event, ensure_ascii=False, separators=(",", ":"))
        out.append(event)
    return out


# --- tokenizer ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["", "Hello, world!", "  two  spaces\n\nand a tab\t. ", "naïve café — ok?", PROMPT]
)
def test_tokenizer_is_lossless(text: str) -> None:
    tokens = tokenize(text)
    assert "".join(tokens) == text
    assert count_tokens(text) == len(tokens)


def test_tokenizer_splits_words_and_punctuation() -> None:
    assert tokenize("Hi, there.") == ["Hi", ",", " there", "."]


# --- completions ----------------------------------------------------------------------------------


def test_completion_shape_and_usage() -> None:
    reply, _ = call({"model": "odsc-llm", "prompt": PROMPT, "max_tokens": 300})
    assert reply.status == 200
    body = reply.body
    assert set(body) == {"id", "object", "created", "model", "choices", "usage"}
    assert body["id"].startswith("cmpl-") and body["object"] == "text_completion"
    assert isinstance(body["created"], int) and body["model"] == "odsc-llm"
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["logprobs"] is None
    assert choice["finish_reason"] == "stop" and choice["stop_reason"] is None
    usage = body["usage"]
    assert usage["prompt_tokens"] == count_tokens(PROMPT)
    assert usage["completion_tokens"] == count_tokens(choice["text"])
    assert 30 <= usage["completion_tokens"] <= 130
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"] is None


def test_completion_relates_to_prompt() -> None:
    text = call({"prompt": PROMPT, "max_tokens": 300})[0].body["choices"][0]["text"]
    assert text.startswith(" ")
    assert any(word in text for word in ("galaxy", "rotating", "spiral", "arms", "keeps"))


def test_completion_default_max_tokens_is_16() -> None:
    body = call({"prompt": PROMPT})[0].body
    assert body["usage"]["completion_tokens"] == 16
    assert body["choices"][0]["finish_reason"] == "length"


def test_max_tokens_cuts_with_length() -> None:
    body = call({"prompt": PROMPT, "max_tokens": 5})[0].body
    assert body["usage"]["completion_tokens"] == 5
    assert body["choices"][0]["finish_reason"] == "length"
    assert count_tokens(body["choices"][0]["text"]) == 5


def test_deterministic_and_seeded() -> None:
    def text(**params: Any) -> str:
        return call({"prompt": PROMPT, "max_tokens": 200, **params})[0].body["choices"][0]["text"]

    assert text() == text()
    assert text(seed=1) == text(seed=1)
    assert text(seed=1) != text(seed=2)
    assert text(temperature=0) == text(temperature=0)
    assert text(temperature=0) != text(temperature=0.7)


def test_stop_string_excluded_with_stop_reason() -> None:
    full = call({"prompt": PROMPT, "max_tokens": 200})[0].body["choices"][0]["text"]
    stop = full.split()[5]
    _, frames = call({"prompt": PROMPT, "max_tokens": 200, "stop": ["zzz-never", stop], "stream": True})
    evs = events(frames)
    text = "".join(e["choices"][0]["text"] for e in evs)
    assert text == full[: full.index(stop)]
    assert evs[-1]["choices"][0]["finish_reason"] == "stop"
    assert evs[-1]["choices"][0]["stop_reason"] == stop
    body = call({"prompt": PROMPT, "max_tokens": 200, "stop": stop})[0].body
    assert body["choices"][0]["text"] == text and body["choices"][0]["stop_reason"] == stop
    assert body["usage"]["completion_tokens"] == len(evs)


def test_include_stop_str_in_output() -> None:
    full = call({"prompt": PROMPT, "max_tokens": 200})[0].body["choices"][0]["text"]
    body = call({"prompt": PROMPT, "max_tokens": 200, "stop": ".", "include_stop_str_in_output": True})[
        0
    ].body
    assert body["choices"][0]["text"] == full[: full.index(".") + 1]


def test_n_and_prompt_list() -> None:
    body = call({"prompt": [PROMPT, "Tell me about bread baking."], "n": 2, "max_tokens": 8, "seed": 3})[
        0
    ].body
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    assert body["choices"][0]["text"] != body["choices"][1]["text"]
    assert body["usage"]["prompt_tokens"] == count_tokens(PROMPT) + count_tokens(
        "Tell me about bread baking."
    )
    assert body["usage"]["completion_tokens"] == 32
    greedy = call({"prompt": PROMPT, "n": 2, "temperature": 0})[0].body["choices"]
    assert greedy[0]["text"] == greedy[1]["text"]


def test_ignore_eos_and_min_tokens() -> None:
    body = call({"prompt": PROMPT, "max_tokens": 500, "ignore_eos": True})[0].body
    assert body["usage"]["completion_tokens"] == 500 and body["choices"][0]["finish_reason"] == "length"
    body = call({"prompt": PROMPT, "max_tokens": 1000, "min_tokens": 300})[0].body
    assert body["usage"]["completion_tokens"] >= 300


def test_completion_stream_frames_match_usage() -> None:
    reply, frames = call(
        {"prompt": PROMPT, "max_tokens": 300, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert reply.status == 200 and reply.body is None
    evs = events(frames)
    *tokens, usage = evs
    for e in tokens:
        assert e["object"] == "text_completion" and e["model"] == "odsc-llm" and e["usage"] is None
        assert e["id"] == tokens[0]["id"]
        (c,) = e["choices"]
        assert set(c) == {"index", "text", "logprobs", "finish_reason", "stop_reason"}
    assert all(e["choices"][0]["finish_reason"] is None for e in tokens[:-1])
    assert tokens[-1]["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == len(tokens)
    assert usage["usage"]["prompt_tokens"] == count_tokens(PROMPT)
    full = call({"prompt": PROMPT, "max_tokens": 300})[0].body
    assert "".join(e["choices"][0]["text"] for e in tokens) == full["choices"][0]["text"]


def test_continuous_usage_stats() -> None:
    options = {"include_usage": True, "continuous_usage_stats": True}
    _, frames = call({"prompt": PROMPT, "max_tokens": 4, "stream": True, "stream_options": options})
    evs = events(frames)
    assert [e["usage"]["completion_tokens"] for e in evs] == [1, 2, 3, 4, 4]


# --- chat -----------------------------------------------------------------------------------------


def test_chat_shape_and_usage() -> None:
    reply, _ = call({"model": "odsc-llm", "messages": MESSAGES}, "/v1/chat/completions")
    assert reply.status == 200
    body = reply.body
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    (choice,) = body["choices"]
    message = choice["message"]
    assert message["role"] == "assistant" and message["tool_calls"] == []
    assert choice["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == count_tokens(render_chat(MESSAGES))
    assert body["usage"]["completion_tokens"] == count_tokens(message["content"])
    assert any(w in message["content"] for w in ("volcanoes", "erupt", "tectonic", "plates"))


def test_chat_stream_shape() -> None:
    body = {"messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    _, frames = call(body, "/v1/chat/completions")
    first, *tokens, usage = events(frames)
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
    ]
    for e in tokens[:-1]:
        assert set(e["choices"][0]) == {"index", "delta", "logprobs", "finish_reason"}
        assert set(e["choices"][0]["delta"]) == {"content"} and e["choices"][0]["finish_reason"] is None
    assert tokens[-1]["choices"][0]["finish_reason"] == "stop"
    assert tokens[-1]["choices"][0]["stop_reason"] is None
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == len(tokens)
    plain = call({"messages": MESSAGES}, "/v1/chat/completions")[0].body
    assert (
        "".join(e["choices"][0]["delta"]["content"] for e in tokens)
        == plain["choices"][0]["message"]["content"]
    )


def test_chat_max_completion_tokens_and_content_parts() -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "Describe orchards."}]}]
    body = call({"messages": messages, "max_completion_tokens": 3}, "/v1/chat/completions")[0].body
    assert body["usage"]["completion_tokens"] == 3 and body["choices"][0]["finish_reason"] == "length"


# --- errors ---------------------------------------------------------------------------------------


def assert_error(reply: EngineReply, status: int, err_type: str = "BadRequestError") -> str:
    assert reply.status == status and reply.stream is None
    body = reply.body
    assert set(body) == {"object", "message", "type", "param", "code"}
    assert body["object"] == "error" and body["type"] == err_type
    assert body["param"] is None and body["code"] == status
    return body["message"]


def test_context_length_error() -> None:
    reply, _ = call({"prompt": " ".join(["word"] * 100), "max_tokens": 4000})
    message = assert_error(reply, 400)
    assert message == (
        "This model's maximum context length is 4096 tokens. However, you requested 4100 tokens (100 in the "
        "messages, 4000 in the completion). Please reduce the length of the messages or completion."
    )
    reply, _ = call({"messages": [{"role": "user", "content": "hi " * 5000}]}, "/v1/chat/completions")
    assert "maximum context length is 4096 tokens" in assert_error(reply, 400)
    reply, _ = call({"prompt": "word " * 100, "max_tokens": 20}, max_model_len=110)
    assert "maximum context length is 110 tokens" in assert_error(reply, 400)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "Field required"),
        (None, "Field required"),
        ({"prompt": 3}, "valid string"),
        ({"prompt": "hi", "max_tokens": "many"}, "valid integer"),
        ({"prompt": "hi", "max_tokens": -1}, "max_tokens must be at least 1, got -1."),
        ({"prompt": "hi", "temperature": -0.5}, "temperature must be non-negative, got -0.5."),
        ({"prompt": "hi", "top_p": 2}, "top_p must be in (0, 1]"),
        ({"prompt": "hi", "n": 0}, "n must be at least 1"),
        ({"prompt": "hi", "stop": 5}, "valid string"),
        ({"prompt": "hi", "stream_options": {"include_usage": True}}, "stream=True"),
        ({"prompt": "hi", "echo": True}, "echo"),
        ({"prompt": "hi", "logprobs": 2}, "logprobs"),
    ],
)
def test_completion_bad_requests(body: Any, needle: str) -> None:
    assert needle in assert_error(call(body)[0], 400)


@pytest.mark.parametrize(
    "body",
    [{}, {"messages": "hi"}, {"messages": [{"content": "no role"}]}, {"messages": [], "temperature": -1}],
)
def test_chat_bad_requests(body: Any) -> None:
    assert_error(call(body, "/v1/chat/completions")[0], 400)


def test_unknown_model_is_404() -> None:
    message = assert_error(call({"model": "gpt-4", "prompt": "hi"})[0], 404, "NotFoundError")
    assert message == "The model `gpt-4` does not exist."
    reply, _ = call({"model": "odsc-llm", "prompt": "hi"}, served_model_name="other")
    assert_error(reply, 404, "NotFoundError")


def test_routes() -> None:
    assert call(None, "/nope", "GET")[0].body == {"detail": "Not Found"}
    assert call(None, "/nope", "GET")[0].status == 404
    reply, _ = call(None, "/v1/completions", "GET")
    assert (reply.status, reply.body) == (405, {"detail": "Method Not Allowed"})
    reply, _ = call(None, "/health", "GET")
    assert (reply.status, reply.body, reply.stream) == (200, None, None)


def test_models() -> None:
    reply, _ = call(None, "/v1/models", "GET")
    assert reply.status == 200
    (model,) = reply.body["data"]
    assert reply.body["object"] == "list"
    assert model["id"] == "odsc-llm" and model["object"] == "model" and model["owned_by"] == "vllm"
    assert model["root"] == "odsc-llm" and model["parent"] is None and model["max_model_len"] == 4096
    assert model["permission"][0]["object"] == "model_permission"

    async def with_env() -> EngineReply:
        eng = make_engine("builtin")
        return await eng.handle(
            "GET", "/v1/models", None, context={"deployment_id": "x", "env": {"BASE_MODEL": "m/x"}}
        )

    assert asyncio.run(with_env()).body["data"][0]["root"] == "m/x"


def test_make_engine_rejects_unknown_specs() -> None:
    for spec in ("gpt", "openai:", "openai:ftp://x"):
        with pytest.raises(ValueError, match="openai:"):
            make_engine(spec)


def test_timing_is_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []

    async def fake_sleep(delay: float) -> None:
        sleeps.append(delay)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    engine = make_engine("builtin", ttft_ms=200, tokens_per_s=50)
    call({"prompt": PROMPT, "max_tokens": 4, "stream": True}, engine=engine)
    assert sleeps == [0.2, 0.02, 0.02, 0.02]
    sleeps.clear()
    call({"prompt": PROMPT, "max_tokens": 4}, engine=engine)
    assert sleeps == [pytest.approx(0.26)]
    sleeps.clear()
    call(
        {"prompt": PROMPT, "max_tokens": 4, "stream": True},
        engine=make_engine("builtin", ttft_ms=0, tokens_per_s=0),
    )
    assert sleeps == []


# --- openai:URL -----------------------------------------------------------------------------------


async def start_stub(served: str = "tiny-model") -> tuple[web.AppRunner, str, list[dict]]:
    """An OpenAI-compatible server on loopback, backed by the builtin engine under another model name."""
    engine = make_engine("builtin", ttft_ms=0, tokens_per_s=0, served_model_name=served)
    seen: list[dict] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        seen.append({"method": request.method, "path": request.path, "body": body})
        reply = await engine.handle(request.method, request.path, body, context=CTX)
        if reply.stream is None:
            return web.json_response(reply.body, status=reply.status)
        resp = web.StreamResponse(status=200, headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        async for frame in reply.stream:
            await resp.write(frame)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}", seen


def test_openai_forwarding() -> None:
    async def run() -> None:
        runner, url, seen = await start_stub()
        engine = make_engine(f"openai:{url}/v1")
        try:
            reply = await engine.handle(
                "POST", "/v1/completions", {"prompt": PROMPT, "max_tokens": 7}, context=CTX
            )
            assert reply.status == 200 and reply.body["model"] == "odsc-llm"
            assert reply.body["usage"]["completion_tokens"] == 7
            assert seen[-1]["path"] == "/v1/completions" and seen[-1]["body"]["model"] == "tiny-model"

            body = {"messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
            reply = await engine.handle("POST", "/v1/chat/completions", body, context=CTX)
            assert reply.status == 200
            evs = events([f async for f in reply.stream])
            assert all(e["model"] == "odsc-llm" for e in evs)
            assert evs[-1]["usage"]["completion_tokens"] == len(evs) - 2

            reply = await engine.handle(
                "POST", "/v1/completions", {"model": "nope", "prompt": "x"}, context=CTX
            )
            assert reply.status == 404 and reply.body["type"] == "NotFoundError"

            reply = await engine.handle("GET", "/v1/models", None, context=CTX)
            ids = [m["id"] for m in reply.body["data"]]
            assert ids == ["odsc-llm", "tiny-model"] and reply.body["data"][0]["root"] == "tiny-model"

            assert (await engine.handle("GET", "/health", None, context=CTX)).status == 200
            assert (await engine.handle("GET", "/elsewhere", None, context=CTX)).status == 404
        finally:
            await engine.aclose()
            await runner.cleanup()

    asyncio.run(run())


def test_openai_upstream_unreachable() -> None:
    async def run() -> None:
        runner, url, _ = await start_stub()
        await runner.cleanup()  # the port is now closed
        engine = make_engine(f"openai:{url}")
        try:
            reply = await engine.handle("POST", "/v1/completions", {"prompt": "hi"}, context=CTX)
            message = assert_error(reply, 503, "ServiceUnavailableError")
            assert url in message and "could not be reached" in message
            assert (await engine.handle("GET", "/health", None, context=CTX)).status == 503
        finally:
            await engine.aclose()

    asyncio.run(run())


RAW_SSE = (
    b": keep-alive\r\n\r\n"
    b'event: message\r\ndata:{"id":"x","object":"text_completion","model":"llama","choices":'
    b'[{"index":0,"text":"Hi","finish_reason":null}]}\r\n\r\n'
    b'data: {"id": "x", "object": "text_completion", "model": "llama", "choices": '
    b'[{"index": 0, "text": "!", "finish_reason": "stop"}]}\n\n'
)


async def start_raw_stub() -> tuple[web.AppRunner, str]:
    """A server with unusual SSE framing (CRLF, comments, no [DONE]) and a plain-text error."""

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "llama", "object": "model"}]})

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body.get("prompt") == "fail":
            return web.Response(status=500, text="upstream exploded")
        resp = web.StreamResponse(headers={"content-type": "text/event-stream; charset=utf-8"})
        await resp.prepare(request)
        await resp.write(RAW_SSE)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def test_openai_reframes_upstream_sse_and_errors() -> None:
    async def run() -> None:
        runner, url = await start_raw_stub()
        engine = make_engine(f"openai:{url}/")
        try:
            reply = await engine.handle(
                "POST", "/v1/completions", {"prompt": "x", "stream": True}, context=CTX
            )
            frames = [f async for f in reply.stream]
            evs = events(frames)
            assert [e["choices"][0]["text"] for e in evs] == ["Hi", "!"]
            assert all(e["model"] == "odsc-llm" for e in evs)

            reply = await engine.handle("POST", "/v1/completions", {"prompt": "fail"}, context=CTX)
            assert reply.status == 500 and "upstream exploded" in reply.body["message"]
        finally:
            await engine.aclose()
            await runner.cleanup()

    asyncio.run(run())
