"""Test helpers: render Markdown as JupyterLab (marked) and nbconvert (mistune) do, and inspect the HTML."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = ROOT / "labextension" / "node_modules"
MARKED = MODULES / "marked" / "lib" / "marked.esm.js"
LATEX = MODULES / "@jupyterlab" / "rendermime" / "lib" / "latex.js"

# What rendered Markdown may contain: the elements and attributes of plain Markdown, nothing active.
SAFE_ELEMENTS = {
    "p", "br", "hr", "strong", "em", "del", "s", "code", "pre", "a", "ul", "ol", "li", "blockquote",
    "table", "thead", "tbody", "tr", "th", "td", "h1", "h2", "h3", "h4", "h5", "h6",
}  # fmt: skip
SAFE_ATTRIBUTES = {"href", "title", "class", "start", "align", "style", "id"}
BAD_SCHEMES = {"javascript", "vbscript", "data"}

# JupyterLab's pipeline (@jupyterlab/rendermime renderMarkdown): math is cut out, the rest rendered by marked
# with GFM (as @jupyterlab/markedparser-extension configures it), then the math is put back into the HTML.
_JUPYTERLAB_SCRIPT = """
import { readFileSync } from 'node:fs';
globalThis.navigator ??= { appName: 'node' };
const { marked } = await import(process.argv[1]);
const latex = readFileSync(process.argv[2], 'utf8');
const { removeMath, replaceMath } = await import('data:text/javascript,' + encodeURIComponent(latex));
let input = '';
for await (const chunk of process.stdin) input += chunk;
const render = source => {
  const parts = removeMath(source);
  return replaceMath(marked.parse(parts.text, { gfm: true, async: false }), parts.math);
};
process.stdout.write(JSON.stringify(JSON.parse(input).map(render)));
"""


def render_jupyterlab(docs: list[str]) -> list[str]:
    """Each Markdown document rendered as JupyterLab renders Markdown output (math cut out, marked, math back)."""
    node = shutil.which("node")
    if node is None or not MARKED.exists() or not LATEX.exists():
        reason = "node and labextension/node_modules (npm ci) are needed to render with marked"
        if os.environ.get("ODSC_MAGICS_CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    done = subprocess.run(
        [node, "--input-type=module", "-e", _JUPYTERLAB_SCRIPT, MARKED.as_uri(), str(LATEX)],
        input=json.dumps(docs),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


def render_mistune(docs: list[str]) -> list[str]:
    """Each document rendered by mistune (nbconvert's renderer) with raw HTML and every link kept."""
    import mistune

    renderer = mistune.HTMLRenderer(escape=False, allow_harmful_protocols=True)
    markdown = mistune.create_markdown(renderer=renderer, plugins=["table", "strikethrough", "url"])
    return [markdown(d) for d in docs]


@dataclass
class Rendered:
    """The elements, attributes and visible text of rendered HTML."""

    elements: list[str] = field(default_factory=list)
    attributes: list[tuple[str, str, str]] = field(default_factory=list)
    text: str = ""

    def problems(self, elements: set[str] = SAFE_ELEMENTS) -> list[str]:
        """Everything that could run or load something: other elements, handlers, script or data links."""
        found = [f"<{e}>" for e in self.elements if e not in elements]
        for element, name, value in self.attributes:
            if name not in SAFE_ATTRIBUTES or name.startswith("on"):
                found.append(f"<{element} {name}=...>")
            if name in {"href", "src"} and _scheme(value) in BAD_SCHEMES:
                found.append(f"<{element} {name}={value!r}>")
        return found


def _scheme(url: str) -> str | None:
    """The scheme a browser would read from an attribute value (WHATWG URL: strip, drop tabs and newlines)."""
    url = re.sub(r"[\t\n\r]", "", url.strip("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f\x10\x11\x12"
                                           "\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f \t\n\r"))
    match = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*):", url)
    return match.group(1).lower() if match else None


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.result = Rendered()
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.result.elements.append(tag)
        self.result.attributes.extend((tag, name, value or "") for name, value in attrs)

    handle_startendtag = handle_starttag

    def handle_data(self, data: str) -> None:
        self._text.append(data)

    def handle_comment(self, data: str) -> None:
        self.result.elements.append("!--")


def inspect(rendered_html: str) -> Rendered:
    """Parse rendered HTML the way a browser sees its elements, attributes and text."""
    parser = _Parser()
    parser.feed(rendered_html)
    parser.close()
    parser.result.text = "".join(parser._text)
    return parser.result


def visible(rendered_html: str) -> str:
    """The text a reader sees, zero-width spaces removed."""
    return inspect(rendered_html).text.replace("\u200b", "")


def render_both(docs: list[str]) -> list[tuple[str, str]]:
    """(JupyterLab HTML, mistune HTML) for each document."""
    return list(zip(render_jupyterlab(docs), render_mistune(docs), strict=True))
