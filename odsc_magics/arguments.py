"""Checks of the public API's arguments: a wrong type or range is a ValidationError naming the argument.

Also the allowed ranges of the numeric settings, which the settings' validators and the per-call
overrides (``complete(timeout=...)``) share. Imports nothing heavy: the settings module uses it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from odsc_magics.errors import ValidationError

__all__ = [
    "SETTING_RANGES",
    "flag",
    "mapping",
    "number",
    "setting",
    "setting_problem",
    "settings",
    "strings",
    "text",
    "whole",
]

# Numeric setting -> (whole number?, lowest value, lowest value allowed?, what is allowed, in words)
SETTING_RANGES: dict[str, tuple[bool, float, bool, str]] = {
    "max_tokens": (True, 1, True, "a whole number of 1 or more"),
    "temperature": (False, 0, True, "a number of 0 or more"),
    "timeout": (False, 0, False, "a number of seconds above 0"),
    "max_retries": (True, 0, True, "a whole number of 0 or more"),
}


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def setting_problem(name: str, value: Any) -> str | None:
    """What ``value`` must be for the numeric setting ``name`` when it is not allowed; None when it is."""
    is_whole, lowest, inclusive, allowed = SETTING_RANGES[name]
    if not (_is_whole(value) if is_whole else _is_number(value)):
        return allowed
    if value < lowest or (value == lowest and not inclusive):
        return allowed
    return None


def setting(name: str, value: Any) -> Any:
    """A per-call value of a numeric setting (``timeout=``, ``max_retries=``, ...), checked."""
    problem = setting_problem(name, value)
    if problem is not None:
        raise ValidationError(
            f"{name} must be {problem}, not {value!r}.",
            hint=f"Pass {name}= within that range, or leave it out to use `%config LLMMagics.{name}`.",
            target=name,
        )
    return value


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def text(name: str, value: Any, *, optional: bool = False, what: str = "a str") -> str | None:
    """A non-empty str (or, when ``optional``, None or "": not given)."""
    if optional and (value is None or value == ""):
        return value
    if not isinstance(value, str) or not value.strip():
        shown = repr(value) if isinstance(value, str) else _type_name(value)
        raise ValidationError(f"{name} must be {what}, not {shown}.", target=name)
    return value


def whole(name: str, value: Any, *, minimum: int, optional: bool = False, hint: str | None = None) -> int | None:
    """An int (not a bool) of at least ``minimum`` (or None when ``optional``)."""
    if value is None and optional:
        return None
    if not _is_whole(value):
        raise ValidationError(f"{name} must be a whole number (an int), not {value!r}.", hint=hint, target=name)
    if value < minimum:
        raise ValidationError(f"{name} must be at least {minimum}, not {value!r}.", hint=hint, target=name)
    return value


def number(
    name: str, value: Any, *, minimum: float, exclusive: bool = False, optional: bool = False
) -> float | None:
    """A finite int or float of at least ``minimum`` (above it when ``exclusive``; or None when ``optional``)."""
    if value is None and optional:
        return None
    if not _is_number(value) or value < minimum or (exclusive and value == minimum):
        allowed = f"above {minimum:g}" if exclusive else f"of {minimum:g} or more"
        raise ValidationError(f"{name} must be a number {allowed}, not {value!r}.", target=name)
    return value


def settings(value: Any) -> Any:
    """None (the current settings) or an LLMSettings (the magics are one)."""
    from odsc_magics.config import LLMSettings

    if value is not None and not isinstance(value, LLMSettings):
        raise ValidationError(
            f"settings must be an LLMSettings (or None for the current settings), not {_type_name(value)}.",
            hint="e.g. settings=LLMSettings(backend='local'), or leave it out.",
            target="settings",
        )
    return value


def flag(name: str, value: Any) -> bool:
    """True or False, not something merely truthy ("no" is truthy)."""
    if not isinstance(value, bool):
        raise ValidationError(f"{name} must be True or False, not {value!r}.", target=name)
    return value


def mapping(name: str, value: Any, *, optional: bool = True) -> Mapping | None:
    if value is None and optional:
        return None
    if not isinstance(value, Mapping):
        raise ValidationError(f"{name} must be a dict, not {_type_name(value)}.", target=name)
    return value


def strings(name: str, value: Any) -> str | Sequence[str] | None:
    """None, a str, or a list/tuple of str."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return value
    raise ValidationError(f"{name} must be a str or a list of str, not {_type_name(value)}.", target=name)
