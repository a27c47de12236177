"""The builtin engine's tokenizer: lossless word/punctuation tokens and a simple chat template."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

__all__ = ["count_tokens", "message_text", "render_chat", "tokenize"]

# A token is a word or one punctuation mark, with the whitespace before it; trailing whitespace is a token
# of its own. Concatenating the tokens gives back the text exactly.
_TOKEN = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")


def tokenize(text: str) -> list[str]:
    """Split ``text`` into tokens; ``"".join(tokenize(t)) == t``."""
    return _TOKEN.findall(text)


@lru_cache(maxsize=4096)
def _count_cached(text: str) -> int:
    return len(_TOKEN.findall(text))


def count_tokens(text: str) -> int:
    """Number of tokens in ``text`` (cached for repeated prompts)."""
    if len(text) > 8192:  # long prompts are counted each time rather than kept in the cache
        return len(_TOKEN.findall(text))
    return _count_cached(text)


def message_text(content: Any) -> str:
    """The text of a chat message's ``content``: a string, None, or a list of OpenAI content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "text":
            parts.append(str(part.get("text", "")))
    return "\n".join(parts)


def render_chat(messages: list[dict]) -> str:
    """The chat template: ``<|role|>\\ncontent\\n`` per message, then ``<|assistant|>\\n``."""
    out = [f"<|{m.get('role', 'user')}|>\n{message_text(m.get('content'))}\n" for m in messages]
    out.append("<|assistant|>\n")
    return "".join(out)
