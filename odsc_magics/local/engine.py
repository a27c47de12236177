"""The model server of a local deployment: vLLM's OpenAI protocol, builtin or forwarded upstream.

``builtin`` answers with deterministic text derived from the prompt and exact token accounting (no weights);
``openai:URL`` forwards to any OpenAI-compatible server (vLLM, llama.cpp's server, Ollama, ...).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from odsc_magics.local.guided import Guide, answer, guide_of
from odsc_magics.local.openai_wire import (
    COMPLETIONS_DEFAULT_MAX_TOKENS,
    DONE_FRAME,
    NO_EMBEDDINGS,
    BadRequest,
    EngineReply,
    body_field,
    dumps,
    error_reply,
    invalid,
    route_reply,
    usage,
    value_error,
)
from odsc_magics.local.pacing import FixedPace, Pace
from odsc_magics.local.textgen import generate
from odsc_magics.local.tokens import count_tokens, message_text, render_chat, tokenize

__all__ = ["BuiltinEngine", "Engine", "make_engine"]


class Engine(Protocol):
    """A model server speaking vLLM's OpenAI-compatible protocol."""

    served_model_name: str

    async def handle(self, method: str, path: str, body: Any, *, context: dict) -> EngineReply: ...

    async def aclose(self) -> None: ...


def make_engine(
    spec: str,
    *,
    ttft_ms: float = 50.0,
    tokens_per_s: float = 100.0,
    served_model_name: str = "odsc-llm",
    max_model_len: int = 4096,
) -> Engine:
    """Build the engine named by ``spec``: ``"builtin"`` or ``"openai:URL"``."""
    if spec == "builtin":
        return BuiltinEngine(
            ttft_ms=ttft_ms,
            tokens_per_s=tokens_per_s,
            served_model_name=served_model_name,
            max_model_len=max_model_len,
        )
    if spec.startswith("openai:"):
        url = spec[len("openai:") :].strip()
        if not url.startswith(("http://", "https://")):
            raise ValueError(
                f"engine {spec!r}: the URL must start with http:// or https://, "
                "e.g. openai:http://127.0.0.1:8000 (vLLM) or openai:http://127.0.0.1:11434/v1 (Ollama)"
            )
        from odsc_magics.local.upstream import OpenAIEngine

        return OpenAIEngine(url, served_model_name=served_model_name)
    raise ValueError(
        f"unknown engine {spec!r}: use 'builtin' or 'openai:URL' (e.g. openai:http://127.0.0.1:8000)"
    )


# --- the builtin engine ---------------------------------------------------------------------------


@dataclass
class _Choice:
    tokens: list[str]
    finish_reason: str
    stop_reason: str | None


@dataclass
class _Request:
    chat: bool
    prompts: list[tuple[str, int, str]]  # (text that seeds the answer, prompt tokens, keyword source)
    n: int
    max_tokens: int | None
    stop: list[str]
    include_stop: bool
    min_tokens: int
    ignore_eos: bool
    sampling_key: str
    temperature: float
    stream: bool
    include_usage: bool
    continuous_usage: bool
    guide: Guide | None = None  # guided_json / guided_choice / guided_regex / response_format
    truncate: bool = False  # the ``badjson`` fault: the answer stops halfway, as one cut by max_tokens does


class BuiltinEngine:
    """Deterministic text derived from the prompt, exact token accounting, no weights."""

    def __init__(
        self,
        *,
        ttft_ms: float = 50.0,
        tokens_per_s: float = 100.0,
        served_model_name: str = "odsc-llm",
        max_model_len: int = 4096,
    ) -> None:
        self.served_model_name = served_model_name
        self.max_model_len = max_model_len
        self.ttft_s = max(float(ttft_ms), 0.0) / 1000.0
        self.token_s = 1.0 / tokens_per_s if tokens_per_s > 0 else 0.0
        self.pace = FixedPace(self.ttft_s, self.token_s)
        self._model_json = dumps(served_model_name)

    async def aclose(self) -> None:
        """Nothing to release."""

    async def handle(self, method: str, path: str, body: Any, *, context: dict) -> EngineReply:
        """Answer one request to the model server's container route ``path``."""
        path = path.split("?", 1)[0]
        bad_route = route_reply(method, path)
        if bad_route is not None:
            return bad_route
        if path == "/health":
            return EngineReply(200, None)
        if path == "/v1/models":
            return EngineReply(200, self._models(context))
        if path == "/v1/embeddings":  # a generation model's server (an embedding model runs on local.embeddings)
            return error_reply(400, NO_EMBEDDINGS)
        chat = path == "/v1/chat/completions"
        try:
            req = self._parse(body, chat=chat)
            req.truncate = context.get("fault") == "badjson"
            choices = [self._choice(req, p, j) for p in req.prompts for j in range(req.n)]
        except BadRequest as exc:
            return exc.reply
        prompt_tokens = sum(p[1] for p in req.prompts)
        # One sequence per choice; their timing comes from the deployment's pace (``context["pace"]``: the
        # simulated GPU engine) or this engine's fixed speed.
        pace: Pace = context.get("pace") or self.pace
        sequences = ([p[1] for p in req.prompts for _ in range(req.n)], [len(c.tokens) for c in choices])
        if req.stream:
            return EngineReply(200, stream=self._stream(req, choices, prompt_tokens, pace, sequences))
        return await self._complete(req, choices, prompt_tokens, pace, sequences)

    # -- request --

    def _parse(self, body: Any, *, chat: bool) -> _Request:
        if not isinstance(body, dict):
            if body is None:
                raise invalid((), "missing", "Field required", None)
            raise invalid(
                (),
                "model_attributes_type",
                "Input should be a valid dictionary or object to extract fields from",
                body,
            )
        name = "messages" if chat else "prompt"
        if body.get(name) is None:
            raise invalid((name,), "missing", "Field required", body)
        prompts = self._chat_prompt(body["messages"]) if chat else self._completion_prompts(body["prompt"])
        model = body_field(body, "model", "str")
        stream = body_field(body, "stream", "bool", False)
        stream_options = body_field(body, "stream_options", "dict")
        n = body_field(body, "n", "int", 1)
        max_tokens = body_field(body, "max_tokens", "int")
        if chat:
            max_tokens = body_field(body, "max_completion_tokens", "int", max_tokens)
        elif max_tokens is None:
            max_tokens = COMPLETIONS_DEFAULT_MAX_TOKENS
        temperature = float(body_field(body, "temperature", "number", 1.0))
        top_p = float(body_field(body, "top_p", "number", 1.0))
        seed = body_field(body, "seed", "int")
        min_tokens = body_field(body, "min_tokens", "int", 0)
        ignore_eos = body_field(body, "ignore_eos", "bool", False)
        include_stop = body_field(body, "include_stop_str_in_output", "bool", False)
        stop = body.get("stop")
        if stop is None:
            stop = []
        elif isinstance(stop, str):
            stop = [stop]
        elif not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
            raise invalid(("stop",), "string_type", "Input should be a valid string", stop)
        if model is not None and model != self.served_model_name:
            raise BadRequest(error_reply(404, f"The model `{model}` does not exist.", "NotFoundError"))
        if stream_options is not None and not stream:
            raise value_error("Stream options can only be defined when `stream=True`.")
        if body.get("echo"):
            raise value_error("echo is not supported by this model server.")
        if body.get("logprobs") not in (None, False) or body.get("top_logprobs") not in (None, 0):
            raise value_error("logprobs are not supported by this model server.")
        if n < 1:
            raise value_error(f"n must be at least 1, got {n}.")
        if temperature < 0:
            raise value_error(f"temperature must be non-negative, got {temperature}.")
        if not 0.0 < top_p <= 1.0:
            raise value_error(f"top_p must be in (0, 1], got {top_p}.")
        if max_tokens is not None and max_tokens < 1:
            raise value_error(f"max_tokens must be at least 1, got {max_tokens}.")
        if min_tokens < 0:
            raise value_error(f"min_tokens must be greater than or equal to 0, got {min_tokens}.")
        if max_tokens is not None and min_tokens > max_tokens:
            raise value_error(
                f"min_tokens must be less than or equal to max_tokens={max_tokens}, got {min_tokens}."
            )
        for _, prompt_len, _ in prompts:
            self._check_context(prompt_len, max_tokens)
        sampling_key = "\x00".join(
            str(body.get(k)) for k in ("top_k", "presence_penalty", "frequency_penalty", "repetition_penalty")
        )
        options = stream_options or {}
        guide = guide_of(body)
        return _Request(
            chat=chat,
            prompts=prompts,
            n=n,
            max_tokens=max_tokens,
            stop=[s for s in stop if s],
            include_stop=include_stop,
            min_tokens=min_tokens,
            ignore_eos=ignore_eos,
            sampling_key=f"{seed}\x00{temperature}\x00{top_p}\x00{sampling_key}",
            temperature=temperature,
            stream=stream,
            include_usage=bool(options.get("include_usage")),
            continuous_usage=bool(options.get("include_usage") and options.get("continuous_usage_stats")),
            guide=guide,
        )

    def _completion_prompts(self, prompt: Any) -> list[tuple[str, int, str]]:
        if isinstance(prompt, str):
            items: list = [prompt]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, int) for p in prompt):
            items = [prompt]
        elif isinstance(prompt, list) and prompt:
            items = prompt
        else:
            raise invalid(("prompt",), "string_type", "Input should be a valid string", prompt)
        out = []
        for item in items:
            if isinstance(item, str):
                if not item:
                    raise value_error("Prompt cannot be empty")
                out.append((item, count_tokens(item), item))
            elif (
                isinstance(item, list)
                and item
                and all(isinstance(t, int) and not isinstance(t, bool) for t in item)
            ):
                # Token ids: the builtin tokenizer has no vocabulary, so they count one token each.
                out.append((" ".join(map(str, item)), len(item), ""))
            else:
                raise invalid(("prompt",), "string_type", "Input should be a valid string", prompt)
        return out

    def _chat_prompt(self, messages: Any) -> list[tuple[str, int, str]]:
        if not isinstance(messages, list):
            raise invalid(("messages",), "list_type", "Input should be a valid list", messages)
        for i, m in enumerate(messages):
            if not isinstance(m, dict):
                raise invalid(("messages", i), "dict_type", "Input should be a valid dictionary", m)
            if not isinstance(m.get("role"), str):
                raise invalid(("messages", i, "role"), "missing", "Field required", m)
            content = m.get("content")
            if content is not None and not isinstance(content, (str, list)):
                raise invalid(
                    ("messages", i, "content"), "string_type", "Input should be a valid string", content
                )
        rendered = render_chat(messages)
        users = [m for m in messages if m["role"] == "user"]
        source = message_text((users or messages or [{}])[-1].get("content")) if messages else ""
        return [(rendered, count_tokens(rendered), source)]

    def _check_context(self, prompt_len: int, max_tokens: int | None) -> None:
        limit = self.max_model_len
        if max_tokens is None:
            if prompt_len >= limit:
                raise value_error(
                    f"This model's maximum context length is {limit} tokens. However, you requested "
                    f"{prompt_len} tokens in the messages, Please reduce the length of the messages."
                )
        elif prompt_len + max_tokens > limit:
            raise value_error(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_len + max_tokens} tokens ({prompt_len} in the messages, {max_tokens} in the "
                "completion). Please reduce the length of the messages or completion."
            )

    # -- generation --

    def _choice(self, req: _Request, prompt: tuple[str, int, str], index: int) -> _Choice:
        text, prompt_len, source = prompt
        limit = req.max_tokens if req.max_tokens is not None else self.max_model_len - prompt_len
        # Greedy sampling gives every one of the n choices the same answer, as vLLM does.
        sample = 0 if req.temperature == 0 else index
        key = f"{int(req.chat)}\x00{text}\x00{req.sampling_key}\x00{sample}"
        minimum = limit if req.ignore_eos else min(req.min_tokens, limit)
        if req.guide is not None:
            text = answer(req.guide, source, key)
            full = tuple(tokenize(text[: max(1, len(text) // 2)] if req.truncate else text))
        else:
            full = generate(source, key, minimum, not req.chat)
        tokens = list(full[:limit])
        finish = "stop" if len(full) < limit else "length"
        if req.guide is not None:  # a constrained answer ends where its text does, unless cut short
            finish = "length" if req.truncate or len(full) > limit else "stop"
        if req.stop:
            cut = _find_stop("".join(tokens), req.stop, req.include_stop)
            if cut is not None:
                return _cut_tokens(tokens, *cut)
        return _Choice(tokens, finish, None)

    # -- answers --

    async def _complete(
        self, req: _Request, choices: list[_Choice], prompt_tokens: int, pace: Pace, sequences: tuple
    ) -> EngineReply:
        steps = max(len(c.tokens) for c in choices)
        ticket = pace.start(*sequences)
        try:
            await ticket.reach(max(1, steps))
        finally:
            ticket.close()
        completion_tokens = sum(len(c.tokens) for c in choices)
        counts = usage(prompt_tokens, completion_tokens)
        created = int(time.time())
        if req.chat:
            body: dict = {
                "id": "chatcmpl-" + os.urandom(16).hex(),
                "object": "chat.completion",
                "created": created,
                "model": self.served_model_name,
                "choices": [
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": "".join(c.tokens), "tool_calls": []},
                        "logprobs": None,
                        "finish_reason": c.finish_reason,
                        "stop_reason": c.stop_reason,
                    }
                    for i, c in enumerate(choices)
                ],
                "usage": counts,
            }
        else:
            body = {
                "id": "cmpl-" + os.urandom(16).hex(),
                "object": "text_completion",
                "created": created,
                "model": self.served_model_name,
                "choices": [
                    {
                        "index": i,
                        "text": "".join(c.tokens),
                        "logprobs": None,
                        "finish_reason": c.finish_reason,
                        "stop_reason": c.stop_reason,
                    }
                    for i, c in enumerate(choices)
                ],
                "usage": counts,
            }
        return EngineReply(200, body)

    async def _stream(
        self, req: _Request, choices: list[_Choice], prompt_tokens: int, pace: Pace, sequences: tuple
    ) -> AsyncIterator[bytes]:
        # The ticket is taken at the first read: the request reaches the engine when the stream is consumed.
        ticket = pace.start(*sequences)
        try:
            created = int(time.time())
            if req.chat:
                head = (
                    f'data: {{"id":"chatcmpl-{os.urandom(16).hex()}","object":"chat.completion.chunk",'
                    f'"created":{created},"model":{self._model_json},"choices":['
                )
            else:
                head = (
                    f'data: {{"id":"cmpl-{os.urandom(16).hex()}","object":"text_completion",'
                    f'"created":{created},"model":{self._model_json},"choices":['
                )
            steps = max(len(c.tokens) for c in choices)
            counts = [0] * len(choices)
            await ticket.reach(1)
            if req.chat:
                for i in range(len(choices)):
                    yield (
                        f'{head}{{"index":{i},"delta":{{"role":"assistant","content":""}},'
                        f'"logprobs":null,"finish_reason":null}}]{self._usage_tail(req, prompt_tokens, 0)}}}\n\n'
                    ).encode()
            for step in range(steps):
                if step:
                    await ticket.reach(step + 1)
                for i, choice in enumerate(choices):
                    if step >= len(choice.tokens):
                        continue
                    counts[i] += 1
                    text = dumps(choice.tokens[step])
                    last = step == len(choice.tokens) - 1
                    if req.chat:
                        end = (
                            f',"finish_reason":{dumps(choice.finish_reason)},"stop_reason":{dumps(choice.stop_reason)}'
                            if last
                            else ',"finish_reason":null'
                        )
                        item = f'{{"index":{i},"delta":{{"content":{text}}},"logprobs":null{end}}}'
                    else:
                        end = (
                            f'"finish_reason":{dumps(choice.finish_reason)},"stop_reason":{dumps(choice.stop_reason)}'
                            if last
                            else '"finish_reason":null,"stop_reason":null'
                        )
                        item = f'{{"index":{i},"text":{text},"logprobs":null,{end}}}'
                    tail = self._usage_tail(req, prompt_tokens, counts[i])
                    yield f"{head}{item}]{tail}}}\n\n".encode()
            if req.include_usage:
                completion_tokens = sum(counts)
                yield (
                    f'{head}],"usage":{{"prompt_tokens":{prompt_tokens},"total_tokens":'
                    f'{prompt_tokens + completion_tokens},"completion_tokens":{completion_tokens}}}}}\n\n'
                ).encode()
            yield DONE_FRAME
        finally:
            ticket.close()

    def _usage_tail(self, req: _Request, prompt_tokens: int, completion_tokens: int) -> str:
        # vLLM dumps completion chunks with every field (usage null, prompt_tokens_details null) and chat
        # chunks with only the fields it set.
        if req.continuous_usage:
            details = "" if req.chat else ',"prompt_tokens_details":null'
            return (
                f',"usage":{{"prompt_tokens":{prompt_tokens},"total_tokens":'
                f'{prompt_tokens + completion_tokens},"completion_tokens":{completion_tokens}{details}}}'
            )
        return "" if req.chat else ',"usage":null'

    def _models(self, context: dict) -> dict:
        env = context.get("env") or {}
        created = int(time.time())
        return {
            "object": "list",
            "data": [
                {
                    "id": self.served_model_name,
                    "object": "model",
                    "created": created,
                    "owned_by": "vllm",
                    "root": env.get("BASE_MODEL") or self.served_model_name,
                    "parent": None,
                    "max_model_len": self.max_model_len,
                    "permission": [
                        {
                            "id": "modelperm-" + os.urandom(16).hex(),
                            "object": "model_permission",
                            "created": created,
                            "allow_create_engine": False,
                            "allow_sampling": True,
                            "allow_logprobs": True,
                            "allow_search_indices": False,
                            "allow_view": True,
                            "allow_fine_tuning": False,
                            "organization": "*",
                            "group": None,
                            "is_blocking": False,
                        }
                    ],
                }
            ],
        }


def _find_stop(text: str, stops: list[str], include: bool) -> tuple[int, str] | None:
    """Where the text ends at the first stop string to complete: (cut offset, stop string), or None."""
    best: tuple[int, int, str] | None = None
    for s in stops:
        at = text.find(s)
        if at >= 0 and (best is None or (at + len(s), at) < best[:2]):
            best = (at + len(s), at, s)
    if best is None:
        return None
    end, start, s = best
    return (end if include else start), s


def _cut_tokens(tokens: list[str], offset: int, stop: str) -> _Choice:
    """The tokens up to text offset ``offset``; the token holding it keeps only its part before it."""
    pos = 0
    for i, tok in enumerate(tokens):
        end = pos + len(tok)
        if offset <= end:
            return _Choice([*tokens[:i], tok[: offset - pos]], "stop", stop)
        pos = end
    return _Choice(tokens, "stop", stop)
