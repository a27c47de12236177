"""Notebook display: the throttled live view of a stream and the durable Markdown record of a result."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from odsc_magics.markup import html_text, markdown_answer, markdown_code_block, markdown_message, markdown_text

__all__ = [
    "KernelStreamView",
    "TerminalStreamView",
    "Throttle",
    "dry_run_bundle",
    "in_kernel",
    "make_stream_view",
    "max_per_window",
    "parsed_bundle",
    "result_bundle",
    "result_metadata",
    "show",
    "snippet_bundle",
    "status_line",
    "table_bundle",
]

MAX_UPDATES_PER_S = 10.0
# IOPub allows 1 MB/s; each update resends the whole text, so long answers slow the update rate.
BYTES_PER_S_BUDGET = 250_000


class Throttle:
    """Coalesce updates: ``ready()`` is true at most ``max_hz`` times a second (and less for big payloads)."""

    def __init__(
        self,
        max_hz: float = MAX_UPDATES_PER_S,
        *,
        bytes_per_s: float = BYTES_PER_S_BUDGET,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.min_interval = 1.0 / max_hz
        self.bytes_per_s = bytes_per_s
        self.clock = clock
        self._last: float | None = None
        self.count = 0

    def ready(self, payload_bytes: int = 0) -> bool:
        """True when an update may be sent now; counts it as sent."""
        now = self.clock()
        interval = max(self.min_interval, payload_bytes / self.bytes_per_s)
        if self._last is not None and now - self._last < interval:
            return False
        self._last = now
        self.count += 1
        return True

    def force(self) -> None:
        """Record an update sent regardless of the rate (the final flush)."""
        self._last = self.clock()
        self.count += 1


def in_kernel(shell: Any) -> bool:
    """True in a Jupyter kernel (comms and display updates work), false in terminal IPython."""
    return getattr(shell, "kernel", None) is not None


def max_per_window(times: Iterable[float], window_s: float = 1.0) -> int:
    """The most events inside any ``window_s`` window (how "updates per second" is measured)."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def status_line(tokens: int, elapsed_s: float, ttft_s: float | None) -> str:
    """``N tokens · X tok/s · TTFT Y ms`` (rate over the time since the first token)."""
    parts = [f"{tokens} token{'s' if tokens != 1 else ''}"]
    if ttft_s is not None and elapsed_s > ttft_s and tokens > 1:
        parts.append(f"{(tokens - 1) / (elapsed_s - ttft_s):.1f} tok/s")
    if ttft_s is not None:
        parts.append(f"TTFT {ttft_s * 1000:.0f} ms")
    return " · ".join(parts)


def result_metadata(result: Any) -> dict:
    """The ``{"odsc_magics": {...}}`` metadata recorded with a result's durable output."""
    return {
        "odsc_magics": {
            "deployment": result.deployment,
            "route": result.route,
            "params": dict(result.params or {}),
            "usage": dict(result.usage or {}),
            "finish_reason": result.finish_reason,
            "latency_s": round(result.latency_s, 4) if result.latency_s is not None else None,
            "ttft_s": round(result.ttft_s, 4) if result.ttft_s is not None else None,
            "opc_request_id": result.opc_request_id,
            "interrupted": bool(getattr(result, "interrupted", False)),
        }
    }


def result_bundle(result: Any, *, tokens: int | None = None) -> tuple[dict, dict]:
    """The durable ``(data, metadata)`` of a result: Markdown and plain text, marked when interrupted.

    The answer's own Markdown renders; any HTML, image or script link in it is shown as text. A structured
    answer (``result.parsed`` set) shows its parsed value instead (:func:`parsed_bundle`).
    """
    if getattr(result, "parsed", None) is not None and not getattr(result, "interrupted", False):
        return parsed_bundle(result)
    text = result.text or ""
    markdown, plain = markdown_answer(text), text
    if getattr(result, "interrupted", False):
        tokens = (result.usage or {}).get("completion_tokens") or tokens
        where = f" after {tokens} tokens" if tokens else ""
        markdown = f"{markdown}\n\n*(interrupted{where}: partial answer)*"
        plain = f"{text}\n[interrupted{where}: partial answer]"
    return {"text/markdown": markdown, "text/plain": plain}, result_metadata(result)


def parsed_bundle(result: Any) -> tuple[dict, dict]:
    """The durable output of a structured answer: its fields as a table, a choice as text, else JSON.

    Every key and value came from the model: shown as text (table cells, code block), never as markup. The
    metadata carries the parsed value as JSON data under ``"parsed"``.
    """
    import json

    from odsc_magics.structured_output import plain

    value = plain(result.parsed)
    data: dict
    if isinstance(value, dict) and value:
        rows = [(key, v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)) for key, v in value.items()]
        data = table_bundle("Answer", ["field", "value"], rows)
    elif isinstance(value, str):
        data = {"text/markdown": f"**Answer:** {markdown_text(value)}", "text/plain": f"Answer: {value}"}
    else:
        shown = json.dumps(value, indent=2, ensure_ascii=False)
        data = {"text/markdown": markdown_code_block(shown, "json"), "text/plain": shown}
    metadata = result_metadata(result)
    metadata["odsc_magics"]["parsed"] = value
    return data, metadata


def table_bundle(title: str, header: Iterable[str], rows: Iterable[Iterable[Any]]) -> dict:
    """A small table as Markdown and aligned plain text; the title, header and cells are shown as text."""
    header = [str(h) for h in header]
    rows = [[str(c) for c in row] for row in rows]
    md = [f"**{markdown_text(title.strip())}**", "", "| " + " | ".join(markdown_text(h) for h in header) + " |"]
    md += ["|" + "---|" * len(header)]
    md += ["| " + " | ".join(markdown_text(c) for c in row) + " |" for row in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    plain = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    plain += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in rows]
    return {"text/markdown": "\n".join(md), "text/plain": "\n".join(plain)}


def dry_run_bundle(prompt_or_messages: Any, request: dict) -> dict:
    """What ``--dry-run`` shows: the rendered prompt and the request that would be sent."""
    import json

    body = json.dumps(request.get("body"), indent=2, ensure_ascii=False)
    headers = json.dumps(request.get("headers", {}), indent=2)
    if isinstance(prompt_or_messages, str):
        shown = prompt_or_messages
    else:
        shown = json.dumps(prompt_or_messages, indent=2, ensure_ascii=False)
    summary = f"POST {request.get('url')}  (route {request.get('route')})"
    md = (
        f"**Dry run: nothing was sent.**\n\n{markdown_text(summary)}\n\n"
        f"Rendered prompt:\n\n{markdown_code_block(shown)}\n\n"
        f"Headers:\n\n{markdown_code_block(headers, 'json')}\n\nBody:\n\n{markdown_code_block(body, 'json')}"
    )
    plain = (
        f"Dry run: nothing was sent.\n{summary}\n--- rendered prompt ---\n{shown}\n"
        f"--- headers ---\n{headers}\n--- body ---\n{body}"
    )
    return {"text/markdown": md, "text/plain": plain}


def snippet_bundle(snippet: str, language: str, tool: str) -> dict:
    """What ``--dry-run --as FORMAT`` shows: the program in a code block; its text/plain is the program alone."""
    md = (
        f"**Dry run: nothing was sent.** The same request with {markdown_message(tool)}:\n\n"
        f"{markdown_code_block(snippet, language)}"
    )
    return {"text/markdown": md, "text/plain": snippet}


def show(data: dict, metadata: dict | None = None) -> None:
    """Display a raw mime bundle (in a terminal, IPython prints its text/plain)."""
    from IPython.display import display

    display(data, raw=True, metadata=metadata or {})


class TerminalStreamView:
    """Terminal IPython: print each delta as it arrives; the printed text is the record."""

    def __init__(self, out: Any = None) -> None:
        self.out = out or sys.stdout
        self.tokens = 0
        self.updates = 0

    def start(self) -> None:
        """Nothing to show before the first token."""

    def add(self, delta: str) -> None:
        """Print one delta now."""
        self.tokens += 1
        self.updates += 1
        self.out.write(delta)
        self.out.flush()

    def finish(self, result: Any) -> None:
        """End the printed line; mark a partial answer."""
        if getattr(result, "interrupted", False):
            self.out.write(f"\n[interrupted after {self.tokens} tokens: partial answer]")
        self.out.write("\n")
        self.out.flush()

    def discard(self) -> None:
        """Nothing was shown that needs removing."""
        if self.tokens:
            self.out.write("\n")
            self.out.flush()


class KernelStreamView:
    """Jupyter: one live widget updated at most ~10 times a second, replaced at the end by Markdown.

    The live view is an ``ipywidgets.HTML`` shown under a display id; every update is one widget-state
    message. ``finish`` swaps the same display id to the durable bundle (Markdown, text, metadata), which
    survives reloads, nbconvert and frontends without widgets, and closes the widget.
    """

    def __init__(self, *, label: str = "", throttle: Throttle | None = None) -> None:
        self.label = label
        self.throttle = throttle or Throttle()
        self.parts: list[str] = []
        self.tokens = 0
        self.size = 0
        self._widget: Any = None
        self._handle: Any = None
        self._t0 = time.monotonic()
        self._first: float | None = None

    @property
    def updates(self) -> int:
        """How many live updates were sent (the final swap excluded)."""
        return self.throttle.count

    def start(self) -> None:
        """Show the live view with a waiting status."""
        from IPython.display import display

        self._t0 = time.monotonic()
        try:
            import ipywidgets
        except ImportError:  # pragma: no cover - ipywidgets is a dependency
            ipywidgets = None
        waiting = "waiting for the first token…"
        if ipywidgets is not None:
            self._widget = ipywidgets.HTML(value=self._html(waiting))
            self._handle = display(self._widget, display_id=True)
        else:  # pragma: no cover
            self._handle = display({"text/plain": waiting}, raw=True, display_id=True)

    def add(self, delta: str) -> None:
        """Take one delta; refresh the view when the throttle allows."""
        now = time.monotonic()
        if self._first is None:
            self._first = now
        self.tokens += 1
        self.size += len(delta)
        self.parts.append(delta)
        if self.throttle.ready(self.size):
            self._render(now)

    def _status(self, now: float) -> str:
        ttft = None if self._first is None else self._first - self._t0
        return status_line(self.tokens, now - self._t0, ttft)

    def _html(self, status: str) -> str:
        text = html_text("".join(self.parts))
        label = f"{html_text(self.label)} · " if self.label else ""
        return (
            f'<div class="odsc-magics-live" style="font-size:0.85em;opacity:0.7">{label}{status}</div>'
            f'<pre style="white-space:pre-wrap;margin:0.3em 0">{text}</pre>'
        )

    def _render(self, now: float) -> None:
        status = self._status(now)
        if self._widget is not None:
            self._widget.value = self._html(status)
        else:  # pragma: no cover
            self._handle.update({"text/plain": "".join(self.parts) + "\n" + status}, raw=True)

    def finish(self, result: Any) -> None:
        """Flush the final live state, then replace the live view with the durable bundle."""
        if self.tokens and self._widget is not None:
            self.throttle.force()
            self._render(time.monotonic())
        data, metadata = result_bundle(result, tokens=self.tokens)
        self._swap(data, metadata)

    def discard(self) -> None:
        """Remove the live view (the request failed before an answer)."""
        self._swap({"text/plain": ""}, {})

    def _swap(self, data: dict, metadata: dict) -> None:
        if self._handle is not None:
            self._handle.update(data, raw=True, metadata=metadata)
        if self._widget is not None:
            self._widget.close()
            self._widget = None


def make_stream_view(shell: Any, *, label: str = "") -> KernelStreamView | TerminalStreamView:
    """The live view that fits where the magic runs."""
    if in_kernel(shell):
        return KernelStreamView(label=label)
    return TerminalStreamView()
