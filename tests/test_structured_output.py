"""Typed answers: the formats and their checks, and predict_frame(schema=/choices=/regex=) on the local backend."""

from __future__ import annotations

import json
import re
from typing import Literal

import jsonschema
import pandas as pd
import pytest
from pydantic import BaseModel, Field

from odsc_magics import errors
from odsc_magics.batch import predict_frame
from odsc_magics.client import connect
from odsc_magics.config import LLMSettings
from odsc_magics.display import result_bundle
from odsc_magics.structured_output import AnswerFormatError, output_format, typed_columns

REVIEW = {
    "type": "object",
    "properties": {
        "label": {"enum": ["positive", "negative", "mixed"]},
        "stars": {"type": "integer", "minimum": 1, "maximum": 5},
        "summary": {"type": "string"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "recommended": {"type": "boolean"},
        "product": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        "keywords": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["label", "stars", "summary", "confidence", "recommended", "product", "keywords"],
}
EXPECTED_DTYPES = {"stars": "Int64", "summary": "string", "confidence": "Float64", "recommended": "boolean",
                   "product": "object", "keywords": "object"}  # fmt: skip


class Product(BaseModel):
    name: str


class Review(BaseModel):
    label: Literal["positive", "negative"]
    stars: int = Field(ge=1, le=5)
    summary: str
    price: float | None = None
    product: Product


def endpoint_of(backend, deployment=None):
    settings = LLMSettings(backend="local", local_dir=str(backend.state_dir))
    return connect((deployment or backend.deployment)["url"], settings=settings)


def reviews(rows: int) -> pd.DataFrame:
    index = pd.Index([f"r{n:04d}" for n in range(rows)], name="review_id")
    return pd.DataFrame({"text": [f"Review {n}: the kettle boils water fast" for n in range(rows)]}, index=index)


# --- formats ----------------------------------------------------------------------------------------


def test_request_fields_are_vllms_guided_decoding():
    assert output_format(schema=REVIEW).request_fields() == {"guided_json": REVIEW}
    assert output_format(choices=["a", "b"]).request_fields() == {"guided_choice": ["a", "b"]}
    assert output_format(regex=r"\d+").request_fields() == {"guided_regex": r"\d+"}
    assert output_format(json_object=True).request_fields() == {"guided_json": {"type": "object"}}
    pydantic_fields = output_format(schema=Review).request_fields()["guided_json"]
    assert pydantic_fields == Review.model_json_schema()
    assert output_format() is None


def test_parse_checks_the_answer_against_the_format():
    fmt = output_format(schema=REVIEW)
    good = {"label": "mixed", "stars": 3, "summary": "ok", "confidence": 0.5, "recommended": True,
            "product": {"name": "kettle"}, "keywords": []}  # fmt: skip
    assert fmt.parse(json.dumps(good)) == good
    with pytest.raises(AnswerFormatError, match="at stars: 9 is greater than the maximum of 5") as caught:
        fmt.parse(json.dumps({**good, "stars": 9}))
    assert caught.value.raw == json.dumps({**good, "stars": 9})
    with pytest.raises(AnswerFormatError, match="not valid JSON") as caught:
        fmt.parse('{"label": "mi', "length")
    assert "max_tokens" in caught.value.hint
    answer = '{"label": "positive", "stars": 2, "summary": "s", "product": {"name": "k"}}'
    model = output_format(schema=Review).parse(answer)
    assert isinstance(model, Review) and model.product.name == "k" and model.price is None
    with pytest.raises(AnswerFormatError, match="stars"):
        output_format(schema=Review).parse(answer.replace('"stars": 2', '"stars": 0'))
    assert output_format(choices=["yes", "no"]).parse(" yes\n") == "yes"
    with pytest.raises(AnswerFormatError, match="is not one of 'yes', 'no'"):
        output_format(choices=["yes", "no"]).parse("maybe")
    assert output_format(regex=r"[A-Z]{2}-\d{3}").parse("AB-123") == "AB-123"
    with pytest.raises(AnswerFormatError, match="does not match"):
        output_format(regex=r"[A-Z]{2}-\d{3}").parse("AB-123 and more")
    with pytest.raises(AnswerFormatError, match="not an object"):
        output_format(json_object=True).parse("[1, 2]")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schema": {"type": "objekt"}}, "is not a valid JSON schema"),
        ({"schema": {"properties": {"a": {"type": 5}}}}, "is not a valid JSON schema"),
        ({"schema": [1, 2]}, "must be a JSON-schema dict or a pydantic BaseModel class, not list"),
        ({"schema": Review(label="positive", stars=1, summary="s", product=Product(name="k"))}, "not a model class"),
        ({"schema": {"type": "string", "default": {1, 2}}}, "is not JSON"),
        ({"choices": "yes"}, "choices must be a list of strings"),
        ({"choices": []}, "at least one"),
        ({"choices": ["a", "a"]}, "listed twice"),
        ({"regex": "(unclosed"}, "not a valid regular expression"),
        ({"choices": ["a"], "regex": "a"}, "give one output format, not choices and regex"),
    ],
)
def test_wrong_formats_are_refused_before_sending(kwargs, message):
    with pytest.raises(errors.ValidationError, match=re.escape(message)):
        output_format(**kwargs)


def test_columns_take_the_schemas_nullable_dtypes():
    fmt = output_format(schema=REVIEW)
    value = {"label": "mixed", "stars": 3, "summary": "ok", "confidence": 0.5, "recommended": True,
             "product": {"name": "kettle"}, "keywords": ["a"]}  # fmt: skip
    columns = typed_columns(fmt, [value, None], "completion")
    assert {name: str(col.dtype) for name, col in columns.items() if name != "label"} == EXPECTED_DTYPES
    assert list(columns["label"].categories) == ["positive", "negative", "mixed"]
    assert columns["product"][0] == {"name": "kettle"} and columns["keywords"][0] == ["a"]
    assert pd.isna(columns["stars"][1]) and pd.isna(columns["summary"][1])
    pydantic_columns = typed_columns(output_format(schema=Review), [None], "completion")
    assert str(pydantic_columns["price"].dtype) == "Float64"  # Optional[float]: a nullable float column
    assert list(pydantic_columns["label"].categories) == ["positive", "negative"]
    choice = typed_columns(output_format(choices=["yes", "no"]), ["no", None], "answer")["answer"]
    assert list(choice.categories) == ["yes", "no"] and choice[0] == "no"


def test_the_durable_output_shows_the_parsed_value_as_escaped_text(backend):
    endpoint = endpoint_of(backend)
    schema = {"type": "object", "properties": {"html": {"enum": ["<img src=x onerror=alert(1)>"]},
              "n": {"type": "integer"}}, "required": ["html", "n"]}  # fmt: skip
    result = endpoint.complete("Anything", max_tokens=100, guided_json=schema)
    result.parsed = output_format(schema=schema).parse(result.text)
    data, metadata = result_bundle(result)
    assert "<img" not in data["text/markdown"] and "&lt;img" in data["text/markdown"]
    assert "| field | value |" in data["text/markdown"]
    assert metadata["odsc_magics"]["parsed"] == result.parsed


# --- predict_frame ----------------------------------------------------------------------------------


def test_predict_frame_schema_2000_rows_with_faults(backend_factory):
    faulty = backend_factory("--capacity", "16", "--fault", "429:0.1", "--fault", "500:0.05",
                             "--fault", "badjson:0.05", "--seed", "7")  # fmt: skip
    deployment = faulty.create_deployment("typed-faults")
    frame = reviews(2000)
    out = predict_frame(frame, "Rate this review: {{ text }}", deployment=endpoint_of(faulty, deployment),
                        schema=REVIEW, max_tokens=200, max_rps=120, progress=False)  # fmt: skip
    assert list(out.index) == list(frame.index)
    assert {name: str(out[name].dtype) for name in EXPECTED_DTYPES} == EXPECTED_DTYPES
    assert list(out["label"].cat.categories) == ["positive", "negative", "mixed"]
    assert "completion" not in out.columns
    answered = out["error"].isna()
    # Every row: typed fields that fit the schema, or a recorded error with the answer's raw text.
    for row in out[answered].itertuples():
        value = {name: getattr(row, name) for name in REVIEW["properties"]}
        value["stars"], value["recommended"] = int(value["stars"]), bool(value["recommended"])
        jsonschema.validate(value, REVIEW)
    assert out.loc[answered, "raw"].isna().all()
    failed = out[~answered]
    assert failed["raw"].notna().all(), failed["error"].head()
    assert failed["error"].str.contains("asked twice").all()
    assert failed[list(EXPECTED_DTYPES)].isna().all().all()
    stats = faulty.deployment_stats(deployment["id"])
    assert stats["faults"]["badjson"] > 50 and stats["faults"]["429"] > 0 and stats["faults"]["500"] > 0
    # A truncated answer is asked for once more: far fewer rows fail than answers were cut.
    assert len(failed) < stats["faults"]["badjson"] / 5
    assert answered.sum() >= 1980


def test_a_server_that_never_fits_fails_each_row_after_asking_twice(backend_factory):
    faulty = backend_factory("--fault", "badjson:1.0")
    deployment = faulty.create_deployment("never-fits")
    out = predict_frame(reviews(12), "Rate: {{ text }}", deployment=endpoint_of(faulty, deployment),
                        schema=Review, max_tokens=200, progress=False)  # fmt: skip
    assert out["error"].notna().all() and out["raw"].notna().all()
    assert (out["attempts"] == 2).all()
    assert faulty.deployment_stats(deployment["id"])["predict_requests"] == 24
    assert out.attrs["odsc_magics"]["failures"] == {"AnswerFormatError": 12}
    assert str(out["stars"].dtype) == "Int64" and out["stars"].isna().all()


def test_predict_frame_choices_give_a_categorical_column_with_exactly_those(backend):
    out = predict_frame(reviews(40), "Sentiment of: {{ text }}", deployment=endpoint_of(backend),
                        choices=["positive", "negative", "neutral"], output_column="sentiment",
                        chat=True, progress=False)  # fmt: skip
    assert isinstance(out["sentiment"].dtype, pd.CategoricalDtype)
    assert list(out["sentiment"].cat.categories) == ["positive", "negative", "neutral"]
    assert out["sentiment"].notna().all() and out["error"].isna().all()
    assert out["sentiment"].nunique() > 1


def test_predict_frame_regex_and_pydantic_and_accessor(backend):
    import odsc_magics.pandas  # noqa: F401  (registers the accessors)

    frame = reviews(10)
    codes = frame.llm.predict("Code for {{ text }}", deployment=endpoint_of(backend), regex=r"[A-Z]{3}-\d{4}",
                              output_column="code", progress=False)  # fmt: skip
    assert str(codes["code"].dtype) == "string"
    assert codes["code"].map(lambda code: re.fullmatch(r"[A-Z]{3}-\d{4}", code) is not None).all()
    typed = predict_frame(frame, "Rate: {{ text }}", deployment=endpoint_of(backend), schema=Review,
                          max_tokens=200, progress=False)  # fmt: skip
    assert str(typed["stars"].dtype) == "Int64" and typed["stars"].between(1, 5).all()
    assert typed["product"].map(lambda p: isinstance(p, dict) and isinstance(p["name"], str)).all()


def test_predict_frame_refuses_a_bad_schema_or_a_column_clash_before_sending(backend):
    endpoint = endpoint_of(backend)
    before = backend.deployment_stats(backend.deployment["id"])["predict_requests"]
    with pytest.raises(errors.ValidationError, match="not a valid JSON schema"):
        predict_frame(reviews(3), "x {{ text }}", deployment=endpoint, schema={"type": "objekt"}, progress=False)
    clash = {"type": "object", "properties": {"error": {"type": "string"}}}
    with pytest.raises(errors.ValidationError, match="'error'"):
        predict_frame(reviews(3), "x {{ text }}", deployment=endpoint, schema=clash, progress=False)
    with pytest.raises(errors.ValidationError, match="'text'"):
        predict_frame(reviews(3), "x {{ text }}", deployment=endpoint, choices=["a"], output_column="text",
                      progress=False)  # fmt: skip
    assert backend.deployment_stats(backend.deployment["id"])["predict_requests"] == before


def test_a_checkpointed_typed_run_resumes_with_the_same_typed_columns(backend, tmp_path):
    endpoint = endpoint_of(backend)
    path = str(tmp_path / "typed.sqlite")
    first = predict_frame(reviews(8), "Rate: {{ text }}", deployment=endpoint, schema=REVIEW, max_tokens=200,
                          temperature=0, checkpoint=path, progress=False)  # fmt: skip
    before = backend.deployment_stats(backend.deployment["id"])["predict_requests"]
    again = predict_frame(reviews(8), "Rate: {{ text }}", deployment=endpoint, schema=REVIEW, max_tokens=200,
                          temperature=0, checkpoint=path, progress=False)  # fmt: skip
    assert backend.deployment_stats(backend.deployment["id"])["predict_requests"] == before
    assert again.attrs["odsc_magics"]["resumed_from_checkpoint"] == 8
    columns = list(REVIEW["properties"])
    pd.testing.assert_frame_equal(again[columns], first[columns])
