"""Prompt templating: only {{ }} is special; the sandbox refuses internals; undefined names are named."""

from __future__ import annotations

import pytest

from odsc_magics.errors import TemplateError
from odsc_magics.templating import render, variables


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "x", "nested": {"a": [1, 2]}}',
        "def f(x): return {x: 1}",
        'f"{value!r:>10}" and {single} braces',
        "{% if x %} block {% endif %} and {# comment #}",
        "$var and {var} stay",
        "trailing newline\n",
        "",
    ],
)
def test_text_without_double_braces_passes_through(text: str) -> None:
    assert render(text, {}) == text


def test_expressions_are_filled_and_the_rest_is_verbatim() -> None:
    text = 'Topic: {{ topic }}; JSON {"k": {"v": 1}} {% raw %} {single} {{ n + 1 }}\n'
    out = render(text, {"topic": "tides", "n": 41})
    assert out == 'Topic: tides; JSON {"k": {"v": 1}} {% raw %} {single} 42\n'


def test_filters_items_and_attributes_work() -> None:
    class Row:
        title = "Moby Dick"

    out = render(
        "{{ row.title | upper }} {{ d['k'] }} {{ xs[1] }}", {"row": Row(), "d": {"k": "v"}, "xs": [1, 2]}
    )
    assert out == "MOBY DICK v 2"


@pytest.mark.parametrize(
    "text",
    ["{{ x.__class__ }}", "{{ x.__class__.__mro__ }}", "{{ f.__globals__ }}", "{{ ''.__class__.__base__ }}"],
)
def test_sandbox_refuses_internals(text: str) -> None:
    with pytest.raises(TemplateError, match="refused"):
        render(text, {"x": 1, "f": test_sandbox_refuses_internals})


def test_undefined_name_is_named() -> None:
    with pytest.raises(TemplateError, match="undefined name 'missing'") as info:
        render("Hello {{ missing }}", {})
    assert "missing" in info.value.hint


def test_several_undefined_names_are_all_named_in_order() -> None:
    with pytest.raises(TemplateError, match="undefined names 'b', 'a'"):
        render("{{ b }} {{ c }} {{ a }}", {"c": 1})


def test_undefined_attribute_is_an_error() -> None:
    with pytest.raises(TemplateError, match="no attribute 'nope'"):
        render("{{ x.nope }}", {"x": 3})


def test_bad_syntax_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="line 2"):
        render("ok\n{{ unterminated", {})


def test_an_error_in_the_users_object_is_reported() -> None:
    class Boom:
        def __str__(self) -> str:
            raise RuntimeError("kaput")

    with pytest.raises(TemplateError, match="RuntimeError: kaput"):
        render("{{ b }}", {"b": Boom()})


def test_variables_lists_free_names_once() -> None:
    assert variables("{{ a }} {{ b.c }} {{ a }}") == ("a", "b")
    assert variables("no names {here}") == ()


def test_only_the_names_used_are_read() -> None:
    class Namespace(dict):
        def __iter__(self):  # rendering must not copy the whole namespace
            raise AssertionError("iterated")

    assert render("{{ a }}", Namespace(a=1, b=2)) == "1"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("{{ xs.append(1) }}", [1, 2]),
        ("{{ xs.pop() }}", [1, 2]),
        ("{{ d.update(k=0) }}", {"k": 1}),
        ("{{ d.clear() }}", {"k": 1}),
        ("{{ s.add(3) }}", {1, 2}),
    ],
)
def test_a_template_cannot_change_notebook_objects(text: str, value: object) -> None:
    import copy

    before = copy.deepcopy(value)
    name = text.split("{{ ")[1].split(".")[0]
    with pytest.raises(TemplateError, match="refused") as info:
        render(text, {name: value})
    assert value == before
    assert "cannot change" in info.value.hint
