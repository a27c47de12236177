"""Typed answers from the magics in a real kernel: --schema (pydantic and dict), --choice, --regex, --json."""

from __future__ import annotations

import json

import pytest
from kernel_helpers import failed, llm_outputs, texts

pytestmark = pytest.mark.slow

DEFINITIONS = '''
from typing import Literal
from pydantic import BaseModel, Field

class Product(BaseModel):
    name: str

class Review(BaseModel):
    sentiment: Literal["positive", "negative"]
    stars: int = Field(ge=1, le=5)
    summary: str
    product: Product

invoice = {
    "type": "object",
    "properties": {
        "vendor": {"type": "string"},
        "total": {"type": "number", "minimum": 0},
        "paid": {"type": "boolean"},
        "note": {"enum": ["<img src=x onerror=alert(1)>", "**bold** | cell"]},
    },
    "required": ["vendor", "total", "paid", "note"],
}
not_a_schema = {"type": "objekt"}
labels = ["positive", "negative"]
'''


def usage_error(cell) -> str:
    """The text of the UsageError a cell ended with (IPython prints it to stderr as "UsageError: ...")."""
    shown = texts(cell)
    assert "UsageError: " in shown, shown
    return shown.split("UsageError: ", 1)[1].strip()


def check(expression: str) -> str:
    """A cell printing ``OK`` when ``expression`` holds, else what it was."""
    return f"print('OK' if ({expression}) else 'FAILED: ' + repr(_llm_last))"


@pytest.fixture(scope="module")
def session(backend, tmp_path_factory):
    import nbformat
    from kernel_helpers import RecordingClient, kernel_env

    cells = {
        "setup": "%load_ext odsc_magics",
        "definitions": DEFINITIONS,
        "pydantic": "%%llm_predict -d test-llm --schema Review -o review --max-tokens 200\nReview: the kettle boils",
        "pydantic_check": check(
            "type(review).__name__ == 'Review' and 1 <= review.stars <= 5 and _llm_last.parsed is review"
        ),
        "dict": "%%llm_predict -d test-llm --schema invoice -o inv --no-stream --max-tokens 200\nInvoice of the shop",
        "dict_check": check(
            "isinstance(inv, dict) and sorted(inv) == ['note', 'paid', 'total', 'vendor'] and _llm_last.parsed == inv"
        ),
        "choice": "%llm_predict -d test-llm --choice positive --choice negative -o label Sentiment: it is great",
        "choice_check": check("label in ('positive', 'negative') and _llm_last.parsed == label"),
        "regex": "%%llm_predict -d test-chat --chat --regex '[A-Z]{3}-\\d{4}' -o code\nA product code",
        "regex_check": "import re\n" + check("re.fullmatch(r'[A-Z]{3}-\\d{4}', code) is not None"),
        "json": "%%llm_predict -d test-llm --json -o obj --max-tokens 100\nDescribe a kettle as JSON",
        "json_check": check("isinstance(obj, dict) and obj and _llm_last.parsed == obj"),
        "chat": "%%llm_chat -d test-chat --choice yes --choice no -o yn\nIs tea hot?",
        "chat_check": check("yn in ('yes', 'no')"),
        "dry_run": "%llm_predict -d test-llm --dry-run --choice yes --choice no Is it?",
        "no_such_name": "%%llm_predict -d test-llm --schema NoSuchModel\nhi",
        "invalid_schema": "%%llm_predict -d test-llm --schema not_a_schema\nhi",
        "not_a_schema_type": "%%llm_predict -d test-llm --schema labels\nhi",
        "two_formats": "%%llm_predict -d test-llm --json --choice a\nhi",
        "attribute": "%%llm_predict -d test-llm --schema Review.nothing\nhi",
        "truncated": "%%llm_predict -d test-llm --schema Review -o cut_off --max-tokens 4\nReview: ok",
        "truncated_check": check("_llm_last.parsed is None and 'cut_off' not in globals() and _llm_last.text"),
    }
    names = list(cells)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells.values()])
    client = RecordingClient(nb, kernel_name="python3", timeout=120, allow_errors=True)
    client.execute(env=kernel_env(backend, tmp_path_factory.mktemp("home")))
    return {name: nb.cells[i] for i, name in enumerate(names)}


@pytest.mark.parametrize("name", ["pydantic", "dict", "choice", "regex", "json", "chat"])
def test_each_format_gives_the_parsed_value_to_o_var_and_llm_last(session, name) -> None:
    assert not failed(session[name]), texts(session[name])
    assert texts(session[f"{name}_check"]).strip() == "OK", texts(session[f"{name}_check"])


def test_an_object_is_shown_as_a_table_of_its_fields_escaped(session) -> None:
    for name in ("pydantic", "dict"):
        (answer,) = llm_outputs(session[name])
        markdown = answer.data["text/markdown"]
        assert "| field | value |" in markdown
        assert "<img" not in markdown and "**bold**" not in markdown
        parsed = answer.metadata["odsc_magics"]["parsed"]
        assert isinstance(parsed, dict)
        for key, value in parsed.items():
            shown = value if isinstance(value, str) else json.dumps(value)
            assert key in answer.data["text/plain"] and shown in answer.data["text/plain"]
    (answer,) = llm_outputs(session["choice"])
    assert answer.data["text/plain"] in ("Answer: positive", "Answer: negative")


def test_the_request_carries_vllms_guided_fields(session) -> None:
    (answer,) = llm_outputs(session["dict"])
    assert answer.metadata["odsc_magics"]["params"]["guided_json"]["required"] == ["vendor", "total", "paid", "note"]
    shown = texts(session["dry_run"])
    assert '"guided_choice": [' in shown and '"yes"' in shown and "nothing was sent" in shown


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no_such_name", "no variable 'NoSuchModel' in the notebook"),
        ("invalid_schema", "not_a_schema is not a valid JSON schema"),
        ("not_a_schema_type", "must be a JSON-schema dict or a pydantic BaseModel class, not list"),
        ("two_formats", "give one output format, not choices and json"),
        ("attribute", "--schema Review.nothing: Review has no attribute 'nothing'"),
    ],
)
def test_a_bad_schema_is_a_usage_error_that_says_what_to_do(session, name, message) -> None:
    cell = session[name]
    error = usage_error(cell)
    assert message in error
    assert len(error.splitlines()) <= 2  # the message, then the next step
    assert not llm_outputs(cell)  # nothing was sent


def test_an_answer_cut_short_fails_the_cell_and_keeps_the_raw_text(session) -> None:
    cell = session["truncated"]
    error = usage_error(cell)
    assert "not valid JSON" in error and "raise max_tokens" in error
    (answer,) = llm_outputs(cell)
    assert answer.metadata["odsc_magics"]["finish_reason"] == "length"
    assert "parsed" not in answer.metadata["odsc_magics"]
    assert texts(session["truncated_check"]).strip() == "OK"
