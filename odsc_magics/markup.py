"""Untrusted text (model answers, names, log lines, failure reasons) escaped for the HTML or Markdown it goes into."""

# JupyterLab renders Markdown and HTML produced in the session as trusted: raw HTML inside Markdown is not
# sanitised, so an answer carrying `<img src=x onerror=...>` would run its handler. Every display bundle
# therefore builds its markup with the functions below and never from raw strings.
#
# This is written by hand: the maintained Markdown libraries render Markdown to HTML; none escapes text so that
# a CommonMark renderer shows it literally, or keeps a model's own Markdown while disarming what it can carry.
# The answer pass is built so that its safety does not depend on agreeing with the renderer's parse:
#   - outside code, every `<` becomes `&lt;`: no raw HTML, comment or autolink can form, whatever the context;
#   - `"` becomes `&quot;`: JupyterLab cuts `$...$` math out before rendering and pastes it back with its
#     quotes, so math inside a link target would otherwise close the attribute and add a handler;
#   - `&` that would start an entity becomes `&amp;`, so `&lt;img` stays visible as typed;
#   - fenced code blocks are re-emitted at column 0, between blank lines, with a backtick fence longer than any
#     backtick run inside, so no renderer can see them end early or continue in another block;
#   - inline code spans become `<code>` elements with their text escaped, and stray backticks are escaped, so
#     a span the renderer pairs differently (e.g. inside a link destination) still carries no live `<`;
#   - images become links (no request is made just by showing an answer) and `javascript:`, `vbscript:` and
#     `data:` targets are broken by a zero-width space before the colon.
# What this costs an answer, all of it cosmetic: `<`, `&` and `"` inside indented (unfenced) code or a fence
# opened inside a list marker or `>` line show as entities; a link title in quotes does not form; a fence inside
# a list item is moved out of the list.

from __future__ import annotations

import bisect
import html
import re
import string
from collections import defaultdict

__all__ = [
    "html_link",
    "html_text",
    "markdown_answer",
    "markdown_code",
    "markdown_code_block",
    "markdown_message",
    "markdown_text",
]

_ZWSP = "\u200b"
_PUNCTUATION = frozenset(string.punctuation)  # exactly the characters CommonMark lets a backslash escape

_LITERAL = {ord(c): "\\" + c for c in string.punctuation}
_LITERAL.update({ord("<"): "&lt;", ord("&"): "&amp;", ord("\n"): " ", ord("\r"): " ", 0: "\ufffd"})
_CODE_TEXT = {**_LITERAL, ord('"'): "&quot;"}


def html_text(text: object) -> str:
    """``text`` as HTML text or an attribute value: ``<``, ``>``, ``&`` and both quotes escaped."""
    return html.escape(str(text), quote=True)


def html_link(url: object, text: object = None) -> str:
    """An ``<a>`` to ``url`` when it is an http(s) URL; anything else is shown as escaped text, not linked."""
    url = str(url)
    label = html_text(url if text is None else text)
    if re.match(r"https?://[^\s\"'<>]+\Z", url, re.IGNORECASE):
        return f'<a href="{html_text(url)}" target="_blank" rel="noopener noreferrer">{label}</a>'
    return label


def markdown_text(text: object) -> str:
    """``text`` shown literally in Markdown: no emphasis, link, heading, table break or HTML; one line."""
    return _normalise(str(text)).translate(_LITERAL)


def markdown_code(text: object) -> str:
    """An inline code span of ``text`` that no backtick inside can close (line breaks become spaces)."""
    text = _normalise(str(text)).replace("\n", " ")
    fence = "`" * (_longest_run(text, "`") + 1)
    return f"{fence} {text} {fence}"


def markdown_code_block(text: object, info: str = "text") -> str:
    """A fenced code block of ``text`` that no line inside can close; put it after a blank line."""
    text = _normalise(str(text))
    if text.endswith("\n"):
        text = text[:-1]
    fence = "`" * max(3, _longest_run(text, "`") + 1)
    return f"{fence}{_info(info)}\n{text}\n{fence}"


def markdown_message(text: object) -> str:
    """A message we wrote: literal text in which `backticked` spans are inline code (names stay literal)."""
    out = []
    for kind, value in _inline_tokens(_normalise(str(text)), escapes=False):
        if kind == "code":
            out.append(markdown_code(value))
        else:
            out.append(markdown_text(value))
    return "".join(out)


def markdown_answer(text: object) -> str:
    """A model's answer as Markdown that renders its own Markdown but can carry no live HTML, script or image."""
    lines = _normalise(str(text)).split("\n")
    blocks: list[str] = []
    prose: list[str] = []
    i = 0
    while i < len(lines):
        opener = _FENCE_OPEN.match(lines[i])
        if opener is None or (opener["fence"][0] == "`" and "`" in opener["info"]):
            prose.append(lines[i])
            i += 1
            continue
        indent, fence = len(opener["indent"].expandtabs(4)), opener["fence"]
        body: list[str] = []
        i += 1
        while i < len(lines):
            closer = _FENCE_CLOSE.match(lines[i])
            if closer and closer["fence"][0] == fence[0] and len(closer["fence"]) >= len(fence):
                i += 1
                break
            body.append(_dedent(lines[i], indent))
            i += 1
        if prose:
            blocks.append(_prose("\n".join(prose)))
            prose = []
        info = opener["info"].strip().split(" ")[0] if opener["info"].strip() else ""
        blocks.append(markdown_code_block("\n".join(body) + "\n", info))
    if prose:
        blocks.append(_prose("\n".join(prose)))
    return "\n\n".join(b for b in blocks if b.strip())


# ----------------------------------------------------------------------------------------------- internals

_FENCE_OPEN = re.compile(r"(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)\Z")
_FENCE_CLOSE = re.compile(r"[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*\Z")
_BACKTICKS = re.compile(r"`+")
# In prose: a backslash escape (kept, except for `<`, `&`, `"`), `<`, `"`, an `&` that would start an entity, `![`.
_PROSE = re.compile(r"\\([!-/:-@\[-`{-~])|[<\"]|&(?=#?\w+;)|!(?=\[)")
_PROSE_ENTITIES = {"<": "&lt;", "&": "&amp;", '"': "&quot;"}
_SCRIPT_SCHEME = re.compile(r"(?<![A-Za-z0-9+.\-])((?:java|vb)script)(?=[\t\n\r]*\\?:)", re.IGNORECASE)
# `data:` is everyday prose ("the data: ..."), so it is broken only where a link target can start.
_DATA_SCHEME = re.compile(r"((?:^|[(:\n])[ \t\n]*data)(?=\\?:)", re.IGNORECASE)


def _normalise(text: str) -> str:
    """CommonMark's line endings (CR, LF, CRLF) as LF; NUL as U+FFFD, as CommonMark reads it."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "\ufffd")


def _longest_run(text: str, char: str) -> int:
    runs = re.findall(re.escape(char) + "+", text)
    return max((len(r) for r in runs), default=0)


def _info(info: str) -> str:
    """A fence's info string (the language) reduced to characters that cannot mean anything else."""
    return re.sub(r"[^A-Za-z0-9_+#.\-]", "", info or "")[:40]


def _dedent(line: str, indent: int) -> str:
    """Drop up to ``indent`` columns of leading whitespace, as CommonMark does inside an indented fence."""
    removed = 0
    for pos, char in enumerate(line):
        if removed >= indent or char not in " \t":
            return line[pos:]
        removed += 4 - removed % 4 if char == "\t" else 1
    return ""


def _inline_tokens(text: str, *, escapes: bool) -> list[tuple[str, str]]:
    """Split ``text`` into ("text", raw) and ("code", content) the way CommonMark pairs backtick runs.

    With ``escapes`` a backslash before punctuation escapes it (so an escaped backtick opens nothing), and
    an unpaired backtick run comes back as ("ticks", run).
    """
    runs: dict[int, list[int]] = defaultdict(list)
    for match in _BACKTICKS.finditer(text):
        runs[len(match.group())].append(match.start())
    tokens: list[tuple[str, str]] = []
    start = pos = 0
    n = len(text)
    while pos < n:
        char = text[pos]
        if escapes and char == "\\" and pos + 1 < n and text[pos + 1] in _PUNCTUATION:
            pos += 2
            continue
        if char != "`":
            pos += 1
            continue
        end = pos
        while end < n and text[end] == "`":
            end += 1
        width = end - pos
        starts = runs[width]
        k = bisect.bisect_left(starts, end)  # the next maximal run of exactly this width closes the span
        if pos > start:
            tokens.append(("text", text[start:pos]))
        if k < len(starts):
            close = starts[k]
            tokens.append(("code", _code_content(text[end:close])))
            pos = start = close + width
        else:
            tokens.append(("ticks", text[pos:end]) if escapes else ("text", text[pos:end]))
            pos = start = end
    if start < n:
        tokens.append(("text", text[start:]))
    return tokens


def _code_content(raw: str) -> str:
    """A code span's content as CommonMark reads it: line endings as spaces, one padding space stripped."""
    content = raw.replace("\n", " ")
    if len(content) >= 2 and content[0] == " " and content[-1] == " " and content.strip(" "):
        content = content[1:-1]
    return content


def _prose(text: str) -> str:
    """Markdown outside fenced code: its own Markdown kept, everything that could become markup disarmed."""
    out = []
    for paragraph in re.split(r"(\n[ \t]*\n)", text):
        if not paragraph.strip():
            out.append(paragraph)
            continue
        for kind, value in _inline_tokens(paragraph, escapes=True):
            if kind == "code":
                out.append(f"<code>{_normalise(value).translate(_CODE_TEXT)}</code>")
            elif kind == "ticks":
                out.append("\\`" * len(value))
            else:
                blocks = _MATH_SPLIT.split(value)
                math = _math_blocks(blocks)
                out.extend(_disarm(block, math=i in math) for i, block in enumerate(blocks))
    return "".join(out)


def _disarm(text: str, *, math: bool = False) -> str:
    text = _SCRIPT_SCHEME.sub(lambda m: m.group(1) + _ZWSP, text)
    text = _DATA_SCHEME.sub(lambda m: m.group(1) + _ZWSP, text)
    # Inside math, `<` is TeX's `\lt`: JupyterLab hands math to MathJax as typed, where `&lt;` would show.
    less = "\\lt " if math else "&lt;"

    def replace(match: re.Match[str]) -> str:
        char = match.group(1) or match.group()
        if char == "<":
            return less
        if match.group(1) is not None:
            return _PROSE_ENTITIES.get(char, match.group())
        return _PROSE_ENTITIES.get(char, "\\!")

    return _PROSE.sub(replace, text)


# JupyterLab's math delimiters (@jupyterlab/rendermime latex.ts), to find the math it will cut out.
_MATH_SPLIT = re.compile(
    r"(\$\$?|\\(?:begin|end)\{[a-z]*\*?\}|\\[{}$]|[{}]|(?:\n\s*)+|@@\d+@@|\\\\[()\[\]])", re.IGNORECASE
)


def _math_blocks(blocks: list[str]) -> set[int]:
    """Indexes of the split blocks JupyterLab's ``removeMath`` treats as math (same walk, same rules)."""
    found: set[int] = set()
    start: int | None = None
    end = ""
    last: int | None = None
    braces = 0
    i = 1
    while i < len(blocks):
        block = blocks[i]
        if block.startswith("@"):
            pass
        elif start is not None:
            if block == end:
                if braces:
                    last = i
                else:
                    found.update(range(start, i + 1))
                    start, last = None, None
            elif re.search(r"\n.*\n", block):
                if last is not None:
                    found.update(range(start, last + 1))
                    i = last
                start, last, braces = None, None, 0
            elif block == "{":
                braces += 1
            elif block == "}" and braces:
                braces -= 1
        elif block in ("$", "$$"):
            start, end, braces = i, block, 0
        elif block in ("\\\\(", "\\\\["):
            start, end, braces = i, "\\\\)" if block.endswith("(") else "\\\\]", 0
        elif block[1:6].lower() == "begin":
            start, end, braces = i, "\\end" + block[6:], 0
        i += 2
    if start is not None and last is not None:
        found.update(range(start, last + 1))
    return found
