"""The magics' boundary: option parsing and the one place errors become IPython ``UsageError``."""

from __future__ import annotations

import argparse
import builtins
import functools
import json
import keyword
import shlex
import sys
import types
from collections.abc import Callable
from typing import Any, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic import Magics

from odsc_magics.errors import OdscMagicsError

__all__ = [
    "Interrupted",
    "LLMMagicsBase",
    "check_var_name",
    "generation_params",
    "parse_magic_line",
    "parse_magic_words",
    "split_options",
    "usage",
    "usage_errors",
]

F = TypeVar("F", bound=Callable[..., Any])


def usage_errors(func: F) -> F:
    """Turn an ``OdscMagicsError`` raised inside a magic into a bare ``UsageError`` (short, no traceback).

    IPython shows a ``UsageError`` as one red line and still fails the cell, so Run All stops. A
    ``KeyboardInterrupt`` becomes ``Interrupted``: one line too, still an interrupt. Anything else (a bug)
    keeps its traceback. The wrapper keeps the function's attributes (help, parser).
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except OdscMagicsError as err:
            raise UsageError(err.short()) from None
        except KeyboardInterrupt as err:
            raise Interrupted(str(err)) from None

    return wrapper  # type: ignore[return-value]


class Interrupted(KeyboardInterrupt):
    """The user stopped a magic: IPython shows one line (the message), not the frames it was stopped in.

    It stays a ``KeyboardInterrupt``, so the cell fails as interrupted and Run All stops.
    """

    def _render_traceback_(self) -> list[str]:
        message = str(self)
        return [f"KeyboardInterrupt: {message}" if message else "KeyboardInterrupt"]


def usage(parser: argparse.ArgumentParser) -> str:
    """The magic's one-paragraph usage, without the reST markup IPython adds for the help page."""
    return "Usage: " + parser.format_usage().replace("::", "").strip()


def _option_takes_value(parser: argparse.ArgumentParser, token: str) -> bool:
    option = token.split("=", 1)[0]
    action = parser._option_string_actions.get(option)
    if action is None:
        return False
    return "=" not in token and action.nargs != 0


def split_options(line: str, parser: argparse.ArgumentParser) -> tuple[list[str], str]:
    """Split a magic line into leading options and the free text after them, kept verbatim.

    The text after the options (a line magic's prompt) is not shell-parsed, so apostrophes, quotes,
    braces and JSON in it arrive untouched; ``--`` ends the options explicitly.
    """
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    argv: list[str] = []
    while True:
        position = lexer.instream.tell()
        try:
            token = lexer.get_token()
        except ValueError:  # an unbalanced quote: in free text fine, in an option value not
            rest = line[position:].lstrip()
            if rest.startswith("-") or (argv and _option_takes_value(parser, argv[-1])):
                raise UsageError(f"unbalanced quote in the options\n{usage(parser)}") from None
            return argv, rest
        if token is None or token == lexer.eof:
            return argv, ""
        if token == "--":
            return argv, line[lexer.instream.tell() :].lstrip()
        if not token.startswith("-") or _looks_negative_number(token):
            return argv, line[position:].lstrip()
        argv.append(token)
        if _option_takes_value(parser, token):
            try:
                value = lexer.get_token()
            except ValueError:
                raise UsageError(f"unbalanced quote in the options\n{usage(parser)}") from None
            if value is None:
                raise UsageError(f"argument {token}: expected one argument\n{usage(parser)}")
            argv.append(value)


def _looks_negative_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def parse_magic_line(
    func: Callable[..., Any], line: str, *, free_text: bool
) -> tuple[argparse.Namespace, str]:
    """Parse ``line`` with the magic's ``@magic_arguments`` parser; returns (options, free text).

    A bad option or value raises ``UsageError`` with the message and the usage line. With
    ``free_text=False`` (a cell magic's line) any text after the options is an error.
    """
    parser = func.parser  # type: ignore[attr-defined]
    argv, rest = split_options(line, parser)
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        raise UsageError(f"{exc}\n{usage(parser)}") from None
    except SystemExit:  # -h/--help: argparse printed the help already
        raise UsageError(parser.format_help()) from None
    if rest and not free_text:
        raise UsageError(
            f"unexpected text after the options: {rest[:40]!r} (the prompt goes in the cell body)\n"
            f"{usage(parser)}".rstrip()
        )
    return args, rest


def parse_magic_words(func: Callable[..., Any], line: str) -> argparse.Namespace:
    """Parse a whole magic line shell-style (subcommand magics without free text)."""
    parser = func.parser  # type: ignore[attr-defined]
    try:
        argv = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"{exc}\n{usage(parser)}") from None
    try:
        return parser.parse_args(argv)
    except UsageError as exc:
        raise UsageError(f"{exc}\n{usage(parser)}") from None
    except SystemExit:
        raise UsageError(parser.format_help()) from None


class LLMMagicsBase(Magics):
    """What every magic family shares: the settings-aware connection and the template renderer."""

    def connect(self, target: str | None) -> Any:
        """The endpoint for ``target`` (None: the default target), read with these magics' settings."""
        from odsc_magics.client import connect

        return connect(target, settings=self)

    def render(self, text: str) -> str:
        """Fill ``{{ name }}`` from the user namespace (sandboxed; nothing else is touched)."""
        from odsc_magics.templating import render

        return render(text, self.shell.user_ns)


def check_var_name(name: str | None, user_ns: dict[str, Any] | None = None) -> str | None:
    """Validate an ``-o/--output`` variable name before anything is sent.

    A name that would hide a builtin, or replace a module, class or function of ``user_ns``, is still used,
    with a one-line warning on stderr.
    """
    if name is None:
        return None
    if not name.isidentifier() or keyword.iskeyword(name):
        raise UsageError(f"-o/--output needs a Python variable name, not {name!r}")
    if user_ns is not None:
        hidden = _what_it_replaces(name, user_ns)
        if hidden == "builtin":
            print(f"Warning: -o {name} hides the builtin {name}; `del {name}` brings it back.", file=sys.stderr)
        elif hidden:
            print(f"Warning: -o {name} replaces the {hidden} {name}.", file=sys.stderr)
    return name


def _what_it_replaces(name: str, user_ns: dict[str, Any]) -> str | None:
    """What ``name`` stands for now when it is a builtin, module, class or function; else None."""
    if name not in user_ns:
        return "builtin" if hasattr(builtins, name) else None
    value = user_ns[name]
    if isinstance(value, types.ModuleType):
        return "module"
    if isinstance(value, type):
        return "class"
    return "function" if callable(value) else None


def generation_params(args: argparse.Namespace) -> dict[str, Any]:
    """The generation parameters given on the magic line (only those set)."""
    params: dict[str, Any] = {}
    for name in ("max_tokens", "temperature", "top_p"):
        value = getattr(args, name, None)
        if value is not None:
            params[name] = value
    stop = getattr(args, "stop", None)
    if stop:
        params["stop"] = list(stop)
    for item in getattr(args, "param", None) or []:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--param needs NAME=VALUE, not {item!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        _check_param_type(name, value, item)
        params[name] = value
    if params.get("max_tokens", 1) < 1:
        raise UsageError("--max-tokens must be at least 1")
    if not 0 <= params.get("temperature", 0) <= 2:
        raise UsageError("--temperature must be between 0 and 2")
    if not 0 < params.get("top_p", 1) <= 1:
        raise UsageError("--top-p must be in (0, 1]")
    return params


# The generation parameters whose values are range-checked: the type each needs, as said to the user, and an example.
_NUMERIC_PARAMS = {
    "max_tokens": (int, "an integer", "256"),
    "temperature": (float, "a number", "0.7"),
    "top_p": (float, "a number", "0.9"),
}


def _check_param_type(name: str, value: Any, item: str) -> None:
    """Refuse ``--param max_tokens=abc`` / ``temperature=null`` before the range checks compare them."""
    if name not in _NUMERIC_PARAMS:
        return
    kind, wanted, example = _NUMERIC_PARAMS[name]
    accepted = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, accepted):
        raise UsageError(f"--param {item}: {name} needs {wanted} (e.g. --param {name}={example})")
