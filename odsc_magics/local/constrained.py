"""The builtin engine's constrained answers: JSON that fits a schema, one of the choices, a regex match.

vLLM constrains decoding to ``guided_json`` / ``guided_choice`` / ``guided_regex`` (or ``response_format``);
the builtin engine has no logits to mask, so it builds an answer that satisfies the constraint directly,
deterministically from the request's seed and with the prompt's keywords for free text. A JSON answer carries
every property of an object (required or not), values of the declared types inside their bounds, enums and
consts as given. A regex answer comes from a generator over Python's own regex parser (literals, classes,
``.``, alternation, groups, repeats, anchors, back references); a pattern it cannot satisfy (look-arounds that
its choice breaks) is refused with a 400 naming the pattern, never answered with text that does not match.
"""

from __future__ import annotations

import json
import random
import re
import string
from typing import Any

try:  # Python 3.11+
    from re import _constants as _sre  # type: ignore[attr-defined]
    from re import _parser as _sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _sre  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

__all__ = ["UnsupportedConstraint", "choice_answer", "json_answer", "regex_answer"]

_MAX_DEPTH = 6
_REPEAT_CAP = 3  # how many times an unbounded repeat (`*`, `+`, `{n,}`) is unrolled beyond its minimum
_FILLER = ("value", "item", "example", "detail", "note")


class UnsupportedConstraint(ValueError):
    """A constraint the engine cannot answer (the model server answers 400 with this message)."""


# --- JSON -------------------------------------------------------------------------------------------


def json_answer(schema: dict, rng: random.Random, words: list[str]) -> str:
    """A JSON text valid against ``schema`` (a JSON schema as vLLM's guided_json takes it)."""
    value = _value(schema, schema, rng, words or list(_FILLER), 0)
    return json.dumps(value, ensure_ascii=False)


def _resolve(schema: Any, root: dict) -> Any:
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema and seen < 32:
        ref = schema["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise UnsupportedConstraint(f"guided_json: only local $ref ('#/...') are supported, not {ref!r}")
        target: Any = root
        for part in [p for p in ref[1:].split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise UnsupportedConstraint(f"guided_json: $ref {ref!r} points nowhere")
            target = target[part]
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **extra} if isinstance(target, dict) else target
        seen += 1
    return schema


def _value(schema: Any, root: dict, rng: random.Random, words: list[str], depth: int) -> Any:
    schema = _resolve(schema, root)
    if schema is True or not isinstance(schema, dict):
        return _phrase(rng, words)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][rng.randrange(len(schema["enum"]))]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            usable = [b for b in branches if _resolve(b, root) != {"type": "null"}] or branches
            merged = {k: v for k, v in schema.items() if k != key}
            return _value({**merged, **_resolve(usable[0], root)}, root, rng, words, depth)
    if isinstance(schema.get("allOf"), list) and schema["allOf"]:
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = _resolve(part, root)
            if isinstance(part, dict):
                merged = _merge(merged, part)
        return _value(merged, root, rng, words, depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        return _object(schema, root, rng, words, depth)
    if kind == "array":
        return _array(schema, root, rng, words, depth)
    if kind == "integer":
        return _integer(schema, rng)
    if kind == "number":
        return _number(schema, rng)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _string(schema, rng, words)


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for key, value in b.items():
        if key == "properties" and isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = {**out[key], **value}
        elif key == "required" and isinstance(out.get(key), list) and isinstance(value, list):
            out[key] = list(dict.fromkeys([*out[key], *value]))
        else:
            out[key] = value
    return out


def _object(schema: dict, root: dict, rng: random.Random, words: list[str], depth: int) -> dict:
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    if not properties:
        # Any object ({"type": "object"}, --json): a small, readable one about the prompt.
        return {"topic": words[0], "answer": _sentence(rng, words)}
    if depth >= _MAX_DEPTH:
        required = schema.get("required") or []
        properties = {k: v for k, v in properties.items() if k in required}
    return {name: _value(sub, root, rng, words, depth + 1) for name, sub in properties.items()}


def _array(schema: dict, root: dict, rng: random.Random, words: list[str], depth: int) -> list:
    low = _int(schema.get("minItems"), 0)
    high = _int(schema.get("maxItems"), max(low, 3))
    count = min(high, max(low, 1 + rng.randrange(3))) if depth < _MAX_DEPTH else low
    prefix = schema.get("prefixItems") if isinstance(schema.get("prefixItems"), list) else []
    items = schema.get("items", {})
    out: list = []
    for index in range(max(count, len(prefix) if low else 0)):
        sub = prefix[index] if index < len(prefix) else items
        value = _value(sub, root, rng, words, depth + 1)
        if schema.get("uniqueItems"):
            for _ in range(8):
                if value not in out:
                    break
                value = _value(sub, root, rng, [*words[index + 1 :], *words[: index + 1]], depth + 1)
            if value in out:
                break
        out.append(value)
    return out


def _int(value: Any, default: int) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _bounds(schema: dict, integer: bool) -> tuple[float, float]:
    low = schema.get("minimum")
    high = schema.get("maximum")
    step = 1 if integer else 0.01
    if isinstance(schema.get("exclusiveMinimum"), (int, float)):
        low = schema["exclusiveMinimum"] + step
    if isinstance(schema.get("exclusiveMaximum"), (int, float)):
        high = schema["exclusiveMaximum"] - step
    if low is None and high is None:
        low, high = (1, 100) if integer else (0.0, 100.0)
    elif low is None:
        low = high - 100
    elif high is None:
        high = low + 100
    if high < low:
        raise UnsupportedConstraint("guided_json: a number's minimum is above its maximum")
    return low, high


def _integer(schema: dict, rng: random.Random) -> int:
    import math

    low, high = _bounds(schema, True)
    low, high = math.ceil(low), math.floor(high)
    step = _int(schema.get("multipleOf"), 1) or 1
    first = -(-low // step) * step
    if first > high:
        raise UnsupportedConstraint("guided_json: no integer fits the schema's bounds and multipleOf")
    return first + step * rng.randrange((high - first) // step + 1)


def _number(schema: dict, rng: random.Random) -> float:
    low, high = _bounds(schema, False)
    value = round(low + (high - low) * rng.random(), 2)
    return min(max(value, low), high)


def _string(schema: dict, rng: random.Random, words: list[str]) -> str:
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        # JSON schema patterns are searched, not matched whole: a match of the whole pattern will do.
        return regex_answer(pattern, rng)
    fmt = schema.get("format")
    if fmt == "date":
        text = f"2024-{1 + rng.randrange(12):02d}-{1 + rng.randrange(28):02d}"
    elif fmt == "date-time":
        text = f"2024-{1 + rng.randrange(12):02d}-{1 + rng.randrange(28):02d}T{rng.randrange(24):02d}:00:00Z"
    elif fmt == "time":
        text = f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:00"
    elif fmt == "email":
        text = f"{_slug(words[0])}@example.com"
    elif fmt in ("uri", "url"):
        text = f"https://example.com/{_slug(words[0])}"
    elif fmt == "uuid":
        text = "-".join("".join(rng.choice("0123456789abcdef") for _ in range(n)) for n in (8, 4, 4, 4, 12))
    else:
        text = _phrase(rng, words)
    low = _int(schema.get("minLength"), 0)
    high = _int(schema.get("maxLength"), max(len(text), low))
    while len(text) < low:
        text = f"{text} {_phrase(rng, words)}"
    return text[:high] if high >= low else text


def _slug(word: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", word.lower()).strip("-") or "item"


def _phrase(rng: random.Random, words: list[str]) -> str:
    return words[rng.randrange(len(words))]


def _sentence(rng: random.Random, words: list[str]) -> str:
    first = words[rng.randrange(len(words))]
    others = [w for w in words if w != first][:2] or ["its context"]
    return f"{first[:1].upper()}{first[1:]} relates to {' and '.join(others)}."


# --- choices ----------------------------------------------------------------------------------------


def choice_answer(choices: list[str], rng: random.Random) -> str:
    """One of ``choices``, picked by the request's seed."""
    return choices[rng.randrange(len(choices))]


# --- regex ------------------------------------------------------------------------------------------

_CATEGORIES = {
    _sre.CATEGORY_DIGIT: string.digits,
    _sre.CATEGORY_NOT_DIGIT: string.ascii_letters,
    _sre.CATEGORY_WORD: string.ascii_letters + string.digits + "_",
    _sre.CATEGORY_NOT_WORD: " -.,",
    _sre.CATEGORY_SPACE: " ",
    _sre.CATEGORY_NOT_SPACE: string.ascii_letters + string.digits,
}
_PRINTABLE = string.ascii_letters + string.digits + " _-.,"


def regex_answer(pattern: str, rng: random.Random) -> str:
    """A string that ``re.fullmatch(pattern, ...)`` accepts; UnsupportedConstraint if none can be built."""
    try:
        compiled = re.compile(pattern)
        parsed = _sre_parse.parse(pattern)
    except re.error as exc:
        raise UnsupportedConstraint(f"guided_regex: invalid regular expression {pattern!r}: {exc}") from None
    for attempt in range(8):
        groups: dict[int, str] = {}
        text = _emit(parsed, random.Random(rng.random() + attempt), groups)
        if compiled.fullmatch(text):
            return text
    raise UnsupportedConstraint(
        f"guided_regex {pattern!r}: the builtin engine cannot generate text for this pattern "
        "(look-arounds or conditionals it cannot satisfy); use a simpler pattern or --engine openai:URL"
    )


def _emit(items: Any, rng: random.Random, groups: dict[int, str]) -> str:
    out: list[str] = []
    for op, av in items:
        out.append(_emit_one(op, av, rng, groups))
    return "".join(out)


def _emit_one(op: Any, av: Any, rng: random.Random, groups: dict[int, str]) -> str:
    if op is _sre.LITERAL:
        return chr(av)
    if op is _sre.NOT_LITERAL:
        return next(c for c in _PRINTABLE if ord(c) != av)
    if op is _sre.ANY:
        return rng.choice(string.ascii_letters)
    if op is _sre.IN:
        return _from_set(av, rng)
    if op is _sre.BRANCH:
        branches = av[1]
        return _emit(branches[rng.randrange(len(branches))], rng, groups)
    if op is _sre.SUBPATTERN:
        group, _, _, body = av
        text = _emit(body, rng, groups)
        if group is not None:
            groups[group] = text
        return text
    if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", None)):
        low, high, body = av
        high = low + _REPEAT_CAP if high is _sre.MAXREPEAT else high
        count = low + rng.randrange(high - low + 1)
        return "".join(_emit(body, rng, groups) for _ in range(count))
    if op is getattr(_sre, "ATOMIC_GROUP", None):
        return _emit(av, rng, groups)
    if op is _sre.GROUPREF:
        return groups.get(av, "")
    if op in (_sre.AT, _sre.ASSERT, _sre.ASSERT_NOT):
        return ""  # anchors take no text; look-arounds are checked by the final match
    if op is _sre.GROUPREF_EXISTS:
        group, yes, no = av
        return _emit(yes if group in groups else (no or []), rng, groups)
    raise UnsupportedConstraint(f"guided_regex: unsupported construct {op}")


def _from_set(items: list, rng: random.Random) -> str:
    negate = bool(items) and items[0][0] is _sre.NEGATE
    allowed: list[str] = []
    for op, av in items[1:] if negate else items:
        if op is _sre.LITERAL:
            allowed.append(chr(av))
        elif op is _sre.RANGE:
            low, high = av
            allowed.extend(chr(c) for c in range(low, min(high, low + 200) + 1))
        elif op is _sre.CATEGORY:
            allowed.extend(_CATEGORIES.get(av, _PRINTABLE))
    if negate:
        excluded = set(allowed)
        candidates = [c for c in _PRINTABLE if c not in excluded]
        return candidates[0] if candidates else "~"
    return rng.choice(allowed) if allowed else ""
