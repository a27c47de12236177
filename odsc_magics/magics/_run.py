"""Send one request from a magic: stream it into the live view (or not) and keep the result."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError

from odsc_magics.display import make_stream_view, result_bundle, show
from odsc_magics.errors import StreamInterruptedError

__all__ = ["LAST_RESULT_VAR", "run_request", "show_snippet"]

# The last Result (also a partial one) is kept in the user namespace under this name.
LAST_RESULT_VAR = "_llm_last"


def _label(endpoint: Any) -> str:
    return endpoint.name or endpoint.deployment_id or endpoint.url


def _keep(shell: Any, result: Any, output_var: str | None, output_format: Any = None) -> None:
    shell.user_ns[LAST_RESULT_VAR] = result
    if output_var and output_format is None:
        shell.user_ns[output_var] = result.text
    elif output_var and result.parsed is not None:
        shell.user_ns[output_var] = result.parsed


def _deliver(shell: Any, result: Any, output_var: str | None, output_format: Any, present: Callable[[], None]) -> Any:
    """A complete answer: parse it (if structured), keep it, ``present`` it, then fail the cell if it did not fit."""
    misfit = _parse(result, output_format)
    _keep(shell, result, output_var, output_format)
    present()
    if misfit is not None:
        raise misfit
    return result


def _parse(result: Any, output_format: Any) -> BaseException | None:
    """Set ``result.parsed`` from a complete structured answer; the error when it does not fit, else None."""
    from odsc_magics.structured_output import AnswerFormatError

    if output_format is None or result.interrupted:
        return None
    try:
        result.parsed = output_format.parse(result.text, result.finish_reason)
    except AnswerFormatError as err:
        return UsageError(f"{err.short()}\nThe raw answer is shown above and kept in `{LAST_RESULT_VAR}.text`.")
    return None


def show_snippet(
    shell: Any,
    endpoint: Any,
    as_: str,
    *,
    prompt: str | None = None,
    messages: list[dict] | None = None,
    params: dict[str, Any],
    stream: bool,
    output_var: str | None,
) -> str:
    """``--as FORMAT`` (a dry run): show the request as a program for that tool; ``-o VAR`` gets its text."""
    from odsc_magics.display import snippet_bundle
    from odsc_magics.request_snippets import LANGUAGES, TOOLS, endpoint_snippet

    snippet = endpoint_snippet(endpoint, as_, prompt=prompt, messages=messages, stream=stream, **params)
    show(snippet_bundle(snippet, LANGUAGES[as_], TOOLS[as_]))
    if output_var:
        shell.user_ns[output_var] = snippet
    return snippet


def run_request(
    shell: Any,
    endpoint: Any,
    *,
    prompt: str | None = None,
    messages: list[dict] | None = None,
    params: dict[str, Any],
    stream: bool,
    output_var: str | None,
    output_format: Any = None,
) -> Any:
    """Send a completion (``prompt``) or chat (``messages``) request and show it; returns the Result.

    Streaming: a kernel interrupt closes the connection, shows the partial answer (marked interrupted)
    and raises a ``KeyboardInterrupt`` that says so (not the one from the HTTP read) so Run All stops;
    a stream cut by the service shows the partial answer and ends the cell with a ``UsageError``. With an
    ``output_format`` the answer is parsed: its value is shown and kept (``-o VAR``, ``_llm_last.parsed``); an
    answer that does not fit shows as text and ends the cell with a ``UsageError``.
    """
    chat = messages is not None
    if output_format is not None:
        params = {**params, **output_format.request_fields()}
    if not stream:
        result = endpoint.chat(messages, **params) if chat else endpoint.complete(prompt, **params)
        return _deliver(shell, result, output_var, output_format, lambda: show(*result_bundle(result)))

    view = make_stream_view(shell, label=_label(endpoint))
    live = endpoint.stream_chat(messages, **params) if chat else endpoint.stream_complete(prompt, **params)
    view.start()
    try:
        for delta in live:
            view.add(delta)
    except KeyboardInterrupt:
        result = live.close()
        _keep(shell, result, output_var)
        view.finish(result)
        tokens = (result.usage or {}).get("completion_tokens") or view.tokens
        where = f"`{output_var}` and `{LAST_RESULT_VAR}`" if output_var else f"`{LAST_RESULT_VAR}`"
        raise KeyboardInterrupt(
            f"Stopped after {tokens} tokens; the partial answer is kept above and in {where}."
        ) from None
    except StreamInterruptedError as err:
        result = err.partial
        if result is None:
            view.discard()
            raise
        _keep(shell, result, output_var)
        view.finish(result)
        tokens = (result.usage or {}).get("completion_tokens") or view.tokens
        where = " and in `" + output_var + "`" if output_var else ""
        raise UsageError(
            f"The stream was cut after {tokens} tokens ({err.message}); "
            f"the partial text is kept above{where}.\n"
            "Re-run the cell to try again."
        ) from None
    except BaseException:
        view.discard()
        with contextlib.suppress(Exception):
            live.close()
        raise
    result = live.result if live.result is not None else live.close()
    return _deliver(shell, result, output_var, output_format, lambda: view.finish(result))
