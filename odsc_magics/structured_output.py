"""Typed answers: a JSON schema, a list of choices or a regex sent as vLLM's guided decoding, the answer parsed back.

What is sent, and why. AI Quick Actions deploys models in its vLLM service container; the one this package
deploys is ``dsmc://odsc-vllm-serving:0.6.4.post1.2`` (odsc_magics.vllm_container), i.e. vLLM 0.6.4.post1
(oracle-samples/oci-data-science-ai-samples, ai-quick-actions/ai-quick-actions-containers.md, the table of
"Latest inference containers supported in AI Quick Actions"; read 2026-11-29). Later revisions of that table
and the AQUA release notes (ai-quick-actions/release-notes.md: v1.0.6b 2025-02-28 vLLM 0.7.1, v1.0.6d
2025-04-17 vLLM 0.8.3; the table later lists 0.9.1) move the managed container forward. vLLM's OpenAI server
has taken ``guided_json`` / ``guided_choice`` / ``guided_regex`` as extra body fields of both
``/v1/completions`` and ``/v1/chat/completions`` in every one of those versions (docs.vllm.ai/en/v0.6.4.post1/
serving/openai_compatible_server.html, "Extra Parameters"; at most one of the three per request, else 400
"You can only use one kind of guided decoding"), whereas ``response_format: {"type": "json_schema"}`` is a
chat-first OpenAI field and ``structured_outputs`` only exists from vLLM 0.10.2 on (0.6.4 ignores it, and
answers unconstrained). So this module sends ``guided_json`` (a schema; ``{"type": "object"}`` for any JSON
object), ``guided_choice`` or ``guided_regex``.

The answer is checked here whatever the server did: a schema with ``jsonschema`` (a dependency; the reference
validator of every draft, which also says what is wrong with a schema) or, for a pydantic model class, with the
model itself, so ``-o VAR`` gets an instance of the class; a choice must be one of the choices, a regex must
match the whole answer. An answer cut by ``max_tokens`` or from a server without constrained decoding fails
with ``AnswerFormatError`` carrying the raw text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from odsc_magics.errors import OdscMagicsError, ValidationError

__all__ = ["AnswerFormatError", "OutputFormat", "output_format", "plain", "typed_columns"]

_DTYPES = {"string": "string", "integer": "Int64", "number": "Float64", "boolean": "boolean"}


class AnswerFormatError(OdscMagicsError):
    """The answer does not parse or does not fit the requested format; ``raw`` keeps its text."""

    def __init__(self, message: str, *, raw: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.raw = raw


@dataclass(frozen=True)
class OutputFormat:
    """What an answer must be: ``kind`` is "schema", "json" (any JSON object), "choice" or "regex"."""

    kind: str
    schema: dict | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    model: Any = None  # a pydantic BaseModel class when the schema came from one
    name: str = ""
    _validator: Any = field(default=None, repr=False, compare=False)

    def request_fields(self) -> dict[str, Any]:
        """The body fields that ask vLLM for this format."""
        if self.kind == "choice":
            return {"guided_choice": list(self.choices)}
        if self.kind == "regex":
            return {"guided_regex": self.pattern}
        return {"guided_json": self.schema}

    @property
    def label(self) -> str:
        """How messages name the format."""
        if self.kind == "choice":
            return "one of " + ", ".join(map(repr, self.choices))
        if self.kind == "regex":
            return f"the regex {self.pattern!r}"
        if self.kind == "json":
            return "a JSON object"
        return f"the schema {self.name}" if self.name else "the schema"

    def parse(self, text: str, finish_reason: str | None = None) -> Any:
        """The answer's value: a dict/list/scalar, a pydantic instance, or the text; AnswerFormatError if not."""
        text = text or ""
        if self.kind == "choice":
            value = text.strip()
            if value in self.choices:
                return value
            raise self._error("is not " + self.label, text, finish_reason)
        if self.kind == "regex":
            if re.fullmatch(self.pattern or "", text):
                return text
            raise self._error(f"does not match {self.label}", text, finish_reason)
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise self._error(f"is not valid JSON ({exc})", text, finish_reason) from None
        if self.model is not None:
            try:
                return self.model.model_validate(value)
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                raise self._error(f"does not fit {self.label}: {_first_line(exc)}", text, finish_reason) from None
        if self.kind == "json":
            if not isinstance(value, dict):
                raise self._error(f"is JSON but not an object ({type(value).__name__})", text, finish_reason)
            return value
        import jsonschema

        error = jsonschema.exceptions.best_match(self._validator.iter_errors(value))
        if error is not None:
            where = "/".join(map(str, error.absolute_path)) or "the answer"
            raise self._error(f"does not fit {self.label} at {where}: {error.message}", text, finish_reason)
        return value

    def _error(self, why: str, text: str, finish_reason: str | None) -> AnswerFormatError:
        hint = "Ask for the format in the prompt as well, or check that the model server does constrained decoding."
        if finish_reason == "length":
            hint = "The answer was cut by max_tokens: raise max_tokens (--max-tokens N)."
        return AnswerFormatError(f"The answer {why}.", raw=text, hint=hint)

    # -- DataFrame columns --

    def fields(self) -> dict[str, Any]:
        """Top-level field -> pandas dtype, when the schema is an object with properties (else empty)."""
        if self.kind != "schema" or self.schema is None:
            return {}
        root = self.schema
        top = _resolve(root, root)
        properties = top.get("properties") if isinstance(top, dict) else None
        if _kind(top) != "object" or not isinstance(properties, dict) or not properties:
            return {}
        return {name: _dtype(_resolve(sub, root), root) for name, sub in properties.items()}

    def value_dtype(self) -> Any:
        """The dtype of the one answer column (choices, regex, or a schema that is not an object with fields)."""
        if self.kind == "choice":
            import pandas as pd

            return pd.CategoricalDtype(list(self.choices))
        if self.kind == "regex":
            return "string"
        if self.kind == "schema" and self.schema is not None:
            return _dtype(_resolve(self.schema, self.schema), self.schema)
        return "object"


def output_format(
    *,
    schema: Any = None,
    choices: Sequence[str] | None = None,
    regex: str | None = None,
    json_object: bool = False,
    name: str = "",
) -> OutputFormat | None:
    """The format asked for (one of them at most), checked before anything is sent; None when none is.

    ``schema`` is a JSON-schema dict or a pydantic ``BaseModel`` class; ``choices`` a list of strings;
    ``regex`` a regular expression the whole answer must match; ``json_object`` any JSON object.
    """
    given = [n for n, v in (("schema", schema), ("choices", choices), ("regex", regex)) if v is not None]
    given += ["json"] if json_object else []
    if len(given) > 1:
        raise ValidationError(
            f"give one output format, not {' and '.join(given)}",
            hint="vLLM constrains an answer to one of: a schema, a list of choices, a regex, any JSON object.",
        )
    if not given:
        return None
    if json_object:
        return _with_validator(OutputFormat("json", schema={"type": "object"}))
    if choices is not None:
        return OutputFormat("choice", choices=_checked_choices(choices))
    if regex is not None:
        return OutputFormat("regex", pattern=_checked_regex(regex))
    return _schema_format(schema, name)


def _checked_choices(choices: Any) -> tuple[str, ...]:
    if isinstance(choices, str) or not isinstance(choices, Sequence):
        raise ValidationError(
            f"choices must be a list of strings, not {type(choices).__name__}",
            hint='e.g. choices=["positive", "negative"]',
        )
    bad = [c for c in choices if not isinstance(c, str) or not c]
    if bad or not choices:
        raise ValidationError(
            "choices must be non-empty strings" + (f" (got {bad[0]!r})" if bad else ", at least one"),
            hint='e.g. choices=["positive", "negative"]',
        )
    if len(set(choices)) != len(choices):
        raise ValidationError("choices are listed twice", hint="List each choice once.")
    return tuple(choices)


def _checked_regex(regex: Any) -> str:
    if not isinstance(regex, str) or not regex:
        raise ValidationError(f"regex must be a non-empty str, not {regex!r}", hint=r"e.g. regex=r'\d{3}-\d{4}'")
    try:
        re.compile(regex)
    except re.error as exc:
        raise ValidationError(f"regex {regex!r} is not a valid regular expression: {exc}") from None
    return regex


def _schema_format(schema: Any, name: str) -> OutputFormat:
    shown = name or "schema"
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
        try:
            as_dict = schema.model_json_schema()
        except Exception as exc:  # pydantic cannot express some models as a JSON schema
            raise ValidationError(
                f"{shown}: pydantic cannot make a JSON schema of {schema.__name__} ({_first_line(exc)})",
                hint="Use field types JSON can hold (str, int, float, bool, lists, nested models, enums).",
            ) from None
        return _with_validator(OutputFormat("schema", schema=as_dict, model=schema, name=name or schema.__name__))
    if hasattr(schema, "model_json_schema") or hasattr(type(schema), "__fields__"):
        raise ValidationError(
            f"{shown} is an instance of {type(schema).__name__}, not a model class",
            hint=f"Pass the class itself, e.g. {type(schema).__name__}.",
        )
    if not isinstance(schema, dict):
        raise ValidationError(
            f"{shown} must be a JSON-schema dict or a pydantic BaseModel class, not {type(schema).__name__}",
            hint='e.g. {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}',
        )
    try:
        json.dumps(schema)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"{shown} is not JSON ({exc})", hint="A JSON schema holds only dicts, lists, strings and numbers."
        ) from None
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(map(str, exc.absolute_path)) or "the top level"
        raise ValidationError(
            f"{shown} is not a valid JSON schema: {exc.message} (at {where})",
            hint='See json-schema.org; e.g. a property is {"type": "string"}, and type names are lower case.',
        ) from None
    return _with_validator(OutputFormat("schema", schema=schema, name=name))


def _with_validator(fmt: OutputFormat) -> OutputFormat:
    import jsonschema

    validator = jsonschema.validators.validator_for(fmt.schema)(fmt.schema)
    object.__setattr__(fmt, "_validator", validator)
    return fmt


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    if len(text) >= 3 and "validation error" in text[0]:  # pydantic: "1 validation error for X\nfield\n  msg [...]"
        return f"{text[1].strip()}: {text[2].split(' [type=')[0].strip()}"
    return text[0] if text else type(exc).__name__


def _resolve(schema: Any, root: dict) -> Any:
    """``schema`` with local ``$ref`` followed, and ``anyOf`` [X, null] (pydantic's Optional) read as X."""
    for _ in range(32):
        if isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and schema["$ref"].startswith("#"):
            target: Any = root
            for part in [p for p in schema["$ref"][1:].split("/") if p]:
                target = target.get(part, {}) if isinstance(target, dict) else {}
            schema = target
            continue
        if isinstance(schema, dict) and isinstance(schema.get("anyOf"), list):
            branches = [b for b in schema["anyOf"] if not (isinstance(b, dict) and b.get("type") == "null")]
            if len(branches) == 1:
                schema = branches[0]
                continue
        return schema
    return schema


def _kind(schema: Any) -> str | None:
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    if kind is None and "properties" in schema:
        return "object"
    return kind if isinstance(kind, str) else None


def _dtype(schema: Any, root: dict) -> Any:
    enum = schema.get("enum") if isinstance(schema, dict) else None
    if isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum):
        import pandas as pd

        return pd.CategoricalDtype(list(dict.fromkeys(enum)))
    return _DTYPES.get(_kind(schema) or "", "object")


def plain(value: Any) -> Any:
    """A parsed value as plain JSON data (a pydantic instance becomes its JSON-mode dict)."""
    if hasattr(value, "model_dump") and not isinstance(value, type):
        return value.model_dump(mode="json")
    return value


def typed_columns(fmt: OutputFormat, values: list[Any], output_column: str) -> dict[str, Any]:
    """The answer columns of a frame: one per top-level field, else ``output_column``; None where unanswered."""
    import pandas as pd

    fields = fmt.fields()
    if not fields:
        data = [plain(v) for v in values]
        dtype = fmt.value_dtype()
        return {output_column: _array(data, dtype)}
    rows = [plain(v) if v is not None else None for v in values]
    out = {}
    for name, dtype in fields.items():
        column = [row.get(name) if isinstance(row, dict) else None for row in rows]
        out[name] = _array(column, dtype)
    return out if out else {output_column: pd.array(rows, dtype="object")}


def _array(values: list[Any], dtype: Any) -> Any:
    import pandas as pd

    if isinstance(dtype, pd.CategoricalDtype):
        return pd.Categorical(values, dtype=dtype)
    if dtype == "object":
        array = pd.array([None] * len(values), dtype="object")
        for index, value in enumerate(values):  # lists and dicts stay whole, one per cell
            array[index] = value
        return array
    return pd.array(values, dtype=dtype)
