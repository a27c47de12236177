"""Deterministic, readable text for the builtin engine: sentences that reuse the prompt's keywords."""

from __future__ import annotations

import hashlib
import random
import re
from functools import lru_cache

from odsc_magics.local.tokens import tokenize

__all__ = ["generate", "keywords"]

_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]{3,}")
_STOPWORDS_TEXT = """
    about above after again against also among another because been before being below between both
    could does doing down during each either else even every from further have having here hers herself
    himself into itself just like many more most much must myself need once only other ought ours
    ourselves over please same shall should some such than that their theirs them themselves then there
    these they this those through under until upon very want were what when where which while whom whose
    will with within without would your yours yourself yourselves tell give show explain write describe
    make list answer question following assistant system user text words sentence sentences using
"""
_STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
_FALLBACK = ("the idea", "the question", "this topic", "the result", "the context")

_OPENERS = (
    "In practice,", "Put simply,", "As a rule,", "At first glance,", "For most teams,", "In short,",
    "Over time,", "By design,", "In many cases,", "Seen this way,",
)  # fmt: skip
_ADJS = (
    "simple", "careful", "steady", "useful", "practical", "clear", "small", "gradual", "reliable",
    "familiar", "modest", "consistent", "thoughtful", "measured", "flexible", "honest",
)  # fmt: skip
_NOUNS = (
    "approach", "balance", "pattern", "trade-off", "process", "structure", "detail", "context", "signal",
    "effort", "routine", "framework", "habit", "result", "choice", "practice",
)  # fmt: skip
# Slots: {A}/{a} first keyword (capitalised / as is), {b} second keyword, {O} opener, {j} adjective,
# {n}/{m} nouns.
_TEMPLATES = (
    "{A} is closely tied to {b}, and a {j} {n} helps explain why.",
    "{O} {a} depends on {j} {n} more than on {b}.",
    "A good way to think about {a} is as a {j} {n} that shapes {b}.",
    "When {a} changes, {b} usually follows, so it pays to watch the {n}.",
    "Most of the {n} around {a} comes from {j} choices about {b}.",
    "{O} the {j} part of {a} is the {n} behind it.",
    "Teams that study {a} early tend to find a {j} {n} in {b}.",
    "The link between {a} and {b} is {j}, but the {n} makes it clear.",
    "{A} rarely stands alone; it works together with {b} and a {j} {m}.",
    "It is worth asking how {a} affects {b} before changing the {n}.",
    "{O} a {j} {n} keeps {a} and {b} in step.",
    "Looking at {a} through the lens of {b} reveals a {j} {n}.",
)


def keywords(text: str, limit: int = 8) -> list[str]:
    """Up to ``limit`` distinct content words of ``text``, in order of appearance."""
    seen: set[str] = set()
    out: list[str] = []
    for word in _WORD.findall(text):
        low = word.lower()
        if low in _STOPWORDS or low in seen:
            continue
        seen.add(low)
        out.append(word if word[1:].islower() or word.isupper() else low)
        if len(out) >= limit:
            break
    return out


def _sentence(rng: random.Random, words: list[str]) -> str:
    a, b = rng.sample(words, 2) if len(words) >= 2 else (words[0], rng.choice(_FALLBACK))
    n, m = rng.sample(_NOUNS, 2)
    return rng.choice(_TEMPLATES).format(
        A=a[:1].upper() + a[1:], a=a, b=b, O=rng.choice(_OPENERS), j=rng.choice(_ADJS), n=n, m=m
    )


@lru_cache(maxsize=4096)
def generate(source: str, key: str, min_tokens: int = 0, leading_space: bool = False) -> tuple[str, ...]:
    """Tokens of a deterministic answer about ``source``'s keywords, seeded by ``key``.

    The answer has a natural length of about 30-120 tokens and ends at a sentence end; it is extended
    (still ending at a sentence end) until it has at least ``min_tokens`` tokens. With ``leading_space``
    the first token starts with a space, as a continuation of a prompt does.
    """
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    rng = random.Random(int.from_bytes(digest, "big"))
    words = keywords(source) or list(_FALLBACK)
    target = max(rng.randint(30, 110), min_tokens)
    tokens: list[str] = []
    since_break = 0
    while len(tokens) < target:
        if not tokens:
            sep = " " if leading_space else ""
        elif since_break >= 3 and rng.random() < 0.35:
            sep, since_break = "\n\n", 0
        else:
            sep = " "
        tokens.extend(tokenize(sep + _sentence(rng, words)))
        since_break += 1
    return tuple(tokens)
