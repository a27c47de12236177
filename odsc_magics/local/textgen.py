"""Deterministic, readable text for the builtin engine: sentences that reuse the prompt's keywords."""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Callable, Sequence
from functools import lru_cache

from odsc_magics.local.tokens import tokenize

__all__ = ["generate", "keywords"]

_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*|[^\sA-Za-z]")
_STOPWORDS_TEXT = """
    about above after again against also among another because been before being below between both
    could does doing down during each either else even every from further have having here hers herself
    himself into itself just like many more most much must myself need once only other ought ours
    ourselves over please same shall should some such than that their theirs them themselves then there
    these they this those through under until upon very want were what when where which while whom whose
    will with within without would your yours yourself yourselves tell give show explain write describe
    make list answer question following assistant system user text words sentence sentences using
    the and for are was why how who you can its has had not but any all our out use get one two may too
    did let see say she him her his new now way yes summarize translate compare define generate create
    provide thanks thank good great best better hello hey help helpful short brief simple simply really
    know think mean means does doesn don isn aren wasn lot lots thing things something anything kind
    """
_STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
_FALLBACK = ("the idea", "the question", "this topic", "the result", "the context")

_OPENERS = (
    "In practice,", "Put simply,", "As a rule,", "At first glance,", "For most people,", "In short,",
    "Over time,", "By design,", "In many cases,", "Seen this way,", "On balance,", "Usually,",
)  # fmt: skip
_ADJS = (
    "simple", "careful", "steady", "useful", "practical", "clear", "small", "gradual", "reliable",
    "familiar", "modest", "consistent", "thoughtful", "measured", "flexible", "patient",
)  # fmt: skip
_NOUNS = (
    "approach", "balance", "pattern", "trade-off", "process", "structure", "detail", "context", "signal",
    "effort", "routine", "framework", "habit", "result", "choice", "practice",
)  # fmt: skip
# Slots: {A}/{a} a keyword (capitalised / as is), {b} another keyword, {O} opener, {j} adjective,
# {n}/{m} nouns. An answer opens with a _LEADS sentence about the prompt's first keyword.
_LEADS = (
    "{A} is closely tied to {b}, and a {j} {n} helps explain why.",
    "{A} is easier to understand once you look at {b}.",
    "Here is a short look at {a} and how it relates to {b}.",
    "{A} comes down to a {j} {n} and a clear view of {b}.",
    "The key to {a} is the way it interacts with {b}.",
)
_TEMPLATES = (
    "{O} {a} depends on a {j} {n} more than on {b}.",
    "A good way to think about {a} is as a {j} {n} that shapes {b}.",
    "When {a} changes, {b} usually follows, so it pays to watch the {n}.",
    "Most of the {n} around {a} comes from {j} choices about {b}.",
    "{O} the {j} part of {a} is the {n} behind it.",
    "People who study {a} early tend to find a {j} {n} in {b}.",
    "The link between {a} and {b} is {j}, but the {n} makes it clear.",
    "{A} rarely stands alone; it works together with {b} and a {j} {m}.",
    "It is worth asking how {a} affects {b} before changing the {n}.",
    "{O} a {j} {n} keeps {a} and {b} in step.",
    "Looking at {a} through the lens of {b} reveals a {j} {n}.",
    "{O} {a} rewards a {j} {n}, especially where {b} is involved.",
    "There is no single {n} for {a}, yet {b} offers a {j} starting point.",
    "{O} the {n} behind {a} also explains a good deal about {b}.",
)
_STRIDES = tuple(k for k in range(1, len(_TEMPLATES)) if math.gcd(k, len(_TEMPLATES)) == 1)
_CACHED_MAX = 512  # longer answers (ignore_eos, min_tokens) are not kept in the cache


def keywords(text: str, limit: int = 6) -> list[str]:
    """Up to ``limit`` distinct key phrases of ``text``: content words, or pairs of them standing alone."""
    runs: list[list[str]] = [[]]
    for word in _WORD.findall(text):
        if len(word) < 3 or word.lower() in _STOPWORDS:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append(word if word[1:].islower() or word.isupper() else word.lower())
    seen: set[str] = set()
    out: list[str] = []
    for run in runs:
        # Two content words between stop words are usually one thing ("spiral arms", "cloud demand").
        for phrase in [" ".join(run)] if len(run) == 2 else run:
            if phrase.lower() not in seen:
                seen.add(phrase.lower())
                out.append(phrase)
    return out[:limit]


def _pick(r: Callable[[], float], seq: Sequence[str]) -> str:
    return seq[int(r() * len(seq))]


def _sentence(r: Callable[[], float], template: str, a: str, words: list[str]) -> str:
    others = [w for w in words if w != a] or _FALLBACK
    i = int(r() * len(_NOUNS))
    j = (i + 1 + int(r() * (len(_NOUNS) - 1))) % len(_NOUNS)
    return template.format(
        A=a[:1].upper() + a[1:],
        a=a,
        b=_pick(r, others),
        O=_pick(r, _OPENERS),
        j=_pick(r, _ADJS),
        n=_NOUNS[i],
        m=_NOUNS[j],
    )


def generate(source: str, key: str, min_tokens: int = 0, leading_space: bool = False) -> tuple[str, ...]:
    """Tokens of a deterministic answer about ``source``'s keywords, seeded by ``key``.

    The answer has a natural length of about 30-120 tokens and ends at a sentence end; it is extended
    (still ending at a sentence end) until it has at least ``min_tokens`` tokens. With ``leading_space``
    the first token starts with a space, as a continuation of a prompt does.
    """
    # The cache is keyed by a digest and the key phrases, never by the (possibly long) prompt itself.
    seed = int.from_bytes(
        hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big"
    )
    words = _keywords_cached(source) if len(source) <= 8192 else tuple(keywords(source))
    if min_tokens > _CACHED_MAX:
        return _generate(words, seed, min_tokens, leading_space)
    return _generate_cached(words, seed, min_tokens, leading_space)


def _keywords_cached_impl(source: str) -> tuple[str, ...]:
    return tuple(keywords(source))


_keywords_cached = lru_cache(maxsize=1024)(_keywords_cached_impl)


def _generate(phrases: tuple[str, ...], seed: int, min_tokens: int, leading_space: bool) -> tuple[str, ...]:
    r = random.Random(seed).random
    words = list(phrases) or list(_FALLBACK)
    target = max(30 + int(r() * 81), min_tokens)
    tokens = tokenize((" " if leading_space else "") + _sentence(r, _pick(r, _LEADS), words[0], words))
    # Walk the templates in a per-answer order (a stride coprime with their count) so none repeats soon.
    count = len(_TEMPLATES)
    at, stride = int(r() * count), _STRIDES[int(r() * len(_STRIDES))]
    since_break = 1
    while len(tokens) < target:
        if since_break >= 3 and r() < 0.35:
            sep, since_break = "\n\n", 0
        else:
            sep = " "
        tokens.extend(tokenize(sep + _sentence(r, _TEMPLATES[at], _pick(r, words), words)))
        at = (at + stride) % count
        since_break += 1
    return tuple(tokens)


_generate_cached = lru_cache(maxsize=4096)(_generate)
