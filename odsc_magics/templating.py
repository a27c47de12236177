"""Prompt templating: only ``{{ expression }}`` is special, rendered with Jinja2's immutable sandbox."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from odsc_magics.errors import TemplateError

__all__ = ["render", "variables"]

# Block and comment tags are set to strings that cannot occur in text, so `{% ... %}`, `{# ... #}`,
# single braces, JSON and code all pass through verbatim; only `{{ ... }}` is an expression.
_NEVER = "\x00\x01odsc-never\x01\x00"


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # Immutable: a template reads the notebook's objects but cannot change them (`{{ xs.append(1) }}`).
    return ImmutableSandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        block_start_string=_NEVER + "b",
        block_end_string=_NEVER + "B",
        comment_start_string=_NEVER + "c",
        comment_end_string=_NEVER + "C",
        line_statement_prefix=None,
        line_comment_prefix=None,
    )


@functools.lru_cache(maxsize=256)
def _compile(template: str) -> tuple[Any, tuple[str, ...]]:
    """Parse once: the compiled template and the free names it reads, in order of appearance."""
    from jinja2 import TemplateSyntaxError, meta

    env = _environment()
    try:
        ast = env.parse(template)
        compiled = env.from_string(ast)
    except TemplateSyntaxError as exc:
        raise TemplateError(
            f"bad {{{{ ... }}}} expression in the prompt template (line {exc.lineno}): {exc.message}",
            hint="Only `{{ name }}` is special in a prompt; check the braces around that line.",
        ) from None
    names = tuple(sorted(meta.find_undeclared_variables(ast), key=template.find))
    return compiled, names


def variables(template: str) -> tuple[str, ...]:
    """The names a template reads (empty when it has no ``{{ }}``)."""
    if "{{" not in template:
        return ()
    return _compile(template)[1]


def render(template: str, variables: Mapping[str, Any]) -> str:
    """Fill every ``{{ expression }}`` from ``variables``; everything else is returned untouched.

    Raises ``TemplateError`` for an undefined name (naming it), a refused attribute (sandbox) or bad syntax.
    """
    if "{{" not in template:
        return template
    from jinja2 import UndefinedError
    from jinja2.exceptions import SecurityError

    compiled, names = _compile(template)
    missing = [name for name in names if name not in variables]
    if missing:
        listed = ", ".join(repr(name) for name in missing)
        plural = "names" if len(missing) > 1 else "name"
        raise TemplateError(
            f"undefined {plural} {listed} in the prompt template",
            hint=f"Define {listed} in the notebook first, or drop the {{{{ }}}} to send the text literally.",
        )
    try:
        return compiled.render({name: variables[name] for name in names})
    except SecurityError as exc:
        raise TemplateError(
            f"refused: {exc}",
            hint="Templates may read values and their public attributes only; they cannot change an object "
            "(no append, update, pop, ...). Compute the value in a cell first, then use {{ name }}.",
        ) from None
    except UndefinedError as exc:
        raise TemplateError(
            f"undefined value in the prompt template: {exc.message}",
            hint="Check the attribute or key used inside {{ }}.",
        ) from None
    except Exception as exc:  # an error raised by the user's own object while rendering
        raise TemplateError(
            f"the prompt template could not be rendered: {type(exc).__name__}: {exc}",
            hint="Check the expression inside {{ }}.",
        ) from None
