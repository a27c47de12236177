"""A request's structured-output fields as the platform's vLLM (0.6.4) reads them, and the builtin engine's answer.

vLLM 0.6.4 takes ``guided_json`` (a schema as an object or JSON text), ``guided_choice`` (strings),
``guided_regex``, ``guided_grammar``, ``guided_decoding_backend`` and ``guided_whitespace_pattern`` on both
``/v1/completions`` and ``/v1/chat/completions``, at most one of the first three at a time, and
``response_format`` ``{"type": "text" | "json_object" | "json_schema", "json_schema": {"name", "schema"}}``
(a ``json_schema`` one replaces ``guided_json``). Fields it does not know, such as the ``structured_outputs``
of later vLLM versions, are ignored: the answer is then unconstrained, as on such a server. The builtin engine
refuses what vLLM refuses, with vLLM's 400s, and ``guided_grammar``, which it cannot generate for.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from typing import Any

from odsc_magics.local.constrained import UnsupportedConstraint, choice_answer, json_answer, regex_answer
from odsc_magics.local.openai_wire import body_field, invalid, value_error
from odsc_magics.local.textgen import keywords

__all__ = ["ANY_OBJECT", "Guide", "answer", "guide_of"]

ANY_OBJECT = {"type": "object"}  # what response_format json_object asks for
_ONE_KIND = (
    "Value error, You can only use one kind of guided decoding ('guided_json', 'guided_regex' or 'guided_choice')."
)
_FORMAT_TYPES = ("text", "json_object", "json_schema")


@dataclass(frozen=True)
class Guide:
    """What the answer must be: ``kind`` "json" (``value`` a schema), "choice" (a tuple) or "regex" (a pattern)."""

    kind: str
    value: Any


def guide_of(body: dict) -> Guide | None:
    """The constraint a request body asks for, or None; raises BadRequest (400) as vLLM does."""
    guided_json = body.get("guided_json")
    guided_regex = body_field(body, "guided_regex", "str")
    guided_choice = body.get("guided_choice")
    for name in ("guided_grammar", "guided_decoding_backend", "guided_whitespace_pattern"):
        body_field(body, name, "str")
    if sum(value is not None for value in (guided_json, guided_regex, guided_choice)) > 1:
        raise invalid((), "value_error", _ONE_KIND, body)
    guide = None
    if guided_json is not None:
        guide = Guide("json", _schema(guided_json, ("guided_json",)))
    elif guided_regex is not None:
        guide = Guide("regex", guided_regex)
    elif guided_choice is not None:
        guide = Guide("choice", _choices(guided_choice))
    elif body.get("guided_grammar") is not None:
        raise value_error(
            "guided_grammar is not supported by this model server; use guided_json, guided_choice or guided_regex."
        )
    response_format = body_field(body, "response_format", "dict")
    if response_format is not None:
        kind = response_format.get("type")
        if kind not in _FORMAT_TYPES:
            raise invalid(
                ("response_format", "type"), "literal_error", "Input should be 'text', 'json_object' or 'json_schema'",
                kind,
            )  # fmt: skip
        if kind == "json_schema":
            guide = Guide("json", _format_schema(response_format.get("json_schema")))
        elif kind == "json_object" and guide is None:
            guide = Guide("json", ANY_OBJECT)
    return guide


def _schema(value: Any, loc: tuple) -> dict:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise value_error(f"{loc[-1]} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise invalid(loc, "dict_type", "Input should be a valid dictionary", value)
    import jsonschema

    try:
        jsonschema.validators.validator_for(value).check_schema(value)
    except jsonschema.SchemaError as exc:
        raise value_error(f"{loc[-1]} is not a valid JSON schema: {exc.message}") from None
    return value


def _format_schema(value: Any) -> dict:
    loc = ("response_format", "json_schema")
    if not isinstance(value, dict):
        raise invalid(loc, "model_attributes_type" if value is not None else "missing", "Field required", value)
    if not isinstance(value.get("name"), str):
        raise invalid((*loc, "name"), "missing", "Field required", value)
    if value.get("schema") is None:
        raise value_error("response_format json_schema needs a schema.")
    return _schema(value["schema"], (*loc, "schema"))


def _choices(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise invalid(("guided_choice",), "list_type", "Input should be a valid list", value)
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise invalid(("guided_choice", index), "string_type", "Input should be a valid string", item)
    if not value:
        raise value_error("guided_choice needs at least one choice.")
    return tuple(value)


def answer(guide: Guide, source: str, key: str) -> str:
    """The constrained answer to a prompt (``source``: its text) for sampling ``key``; BadRequest if impossible."""
    seed = int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")
    rng = random.Random(seed)
    try:
        if guide.kind == "choice":
            return choice_answer(list(guide.value), rng)
        if guide.kind == "regex":
            return regex_answer(guide.value, rng)
        return json_answer(guide.value, rng, keywords(source))
    except UnsupportedConstraint as exc:
        raise value_error(str(exc)) from None
