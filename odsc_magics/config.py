"""Settings of odsc-magics: one traitlets Configurable and one precedence for every value.

Precedence, for every setting: explicit argument > ``%config LLMMagics.<name>`` (a trait set on the
instance) > environment ``ODSC_MAGICS_<NAME>`` > derived (the local backend's state dir, the OCI
notebook-session environment, the OCI config profile) > built-in default.

This module is on the ``%load_ext`` path: it imports only traitlets at module level.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from traitlets import Dict, Enum, Float, Int, TraitError, Unicode, validate
from traitlets.config import Configurable

from odsc_magics.errors import ConfigurationError

__all__ = [
    "AUTH_MODES",
    "BACKENDS",
    "SETTING_NAMES",
    "LLMSettings",
    "current_settings",
    "default_target",
    "describe",
    "resolve",
    "set_default_target",
    "use_settings",
]

BACKENDS = ("oci", "local")
AUTH_MODES = ("api_key", "security_token", "instance_principal", "resource_principal")

DEFAULTS: dict[str, Any] = {
    "backend": "oci",
    "local_dir": os.path.join("~", ".odsc_magics", "local"),
    "auth": "api_key",
    "config_file": os.path.join("~", ".oci", "config"),
    "profile": "DEFAULT",
    "region": None,
    "compartment_id": None,
    "project_id": None,
    "deployment": None,
    "model": "odsc-llm",
    "max_tokens": 512,
    "temperature": None,
    "timeout": 60.0,
    "max_retries": 6,
    "gpu_prices": None,
}
SETTING_NAMES = tuple(DEFAULTS)

# Settings the local backend's state dir provides when backend == "local".
_LOCAL_KEYS = ("config_file", "profile", "region", "compartment_id", "project_id")


class LLMSettings(Configurable):
    """Settings shared by the Python API and the magics; ``None`` means "not set here"."""

    backend = Enum(
        list(BACKENDS),
        default_value=None,
        allow_none=True,
        help='"oci" (the OCI service) or "local" (the local emulator in local_dir). Default "oci".',
    ).tag(config=True)
    local_dir = Unicode(
        None, allow_none=True, help="State directory of the local backend. Default ~/.odsc_magics/local."
    ).tag(config=True)
    auth = Enum(
        list(AUTH_MODES),
        default_value=None,
        allow_none=True,
        help="OCI auth mode. Default: resource_principal in an OCI notebook session, else api_key.",
    ).tag(config=True)
    config_file = Unicode(None, allow_none=True, help="OCI config file. Default ~/.oci/config.").tag(
        config=True
    )
    profile = Unicode(None, allow_none=True, help="Profile in the OCI config file. Default DEFAULT.").tag(
        config=True
    )
    region = Unicode(None, allow_none=True, help="OCI region. Default: from the profile or session.").tag(
        config=True
    )
    compartment_id = Unicode(
        None, allow_none=True, help="Compartment OCID. Default: the notebook session's, else the tenancy."
    ).tag(config=True)
    project_id = Unicode(
        None, allow_none=True, help="Data Science project OCID. Default: the session's."
    ).tag(config=True)
    deployment = Unicode(
        None, allow_none=True, help="Default target: a model deployment OCID, URL or display name."
    ).tag(config=True)
    model = Unicode(None, allow_none=True, help='The request\'s "model". Default "odsc-llm".').tag(
        config=True
    )
    max_tokens = Int(None, allow_none=True, help="Default max_tokens of a request. Default 512.").tag(
        config=True
    )
    temperature = Float(None, allow_none=True, help="Default temperature (not sent when unset).").tag(
        config=True
    )
    timeout = Float(
        None, allow_none=True, help="Read timeout in seconds (per chunk for streams). Default 60."
    ).tag(config=True)
    max_retries = Int(None, allow_none=True, help="Retries on 429/5xx/connection errors. Default 6.").tag(
        config=True
    )

    gpu_prices = Dict(
        default_value=None,
        allow_none=True,
        help='USD per GPU-hour by GPU name, over OCI\'s list prices (odsc_magics.prices), e.g. {"A10": 1.6}.',
    ).tag(config=True)

    @validate("gpu_prices")
    def _check_prices(self, proposal: Any) -> Any:
        """Refuse a price table that is not {known GPU name: number >= 0}, naming the setting."""
        from odsc_magics.prices import check_gpu_prices

        if proposal["value"] is None:
            return None
        try:
            return check_gpu_prices(proposal["value"])
        except ValueError as exc:
            owner = type(self).__name__
            raise TraitError(f"{owner}.gpu_prices must be {exc}; {owner}.gpu_prices is unchanged.") from None

    @validate("max_tokens", "temperature", "timeout", "max_retries")
    def _check_range(self, proposal: Any) -> Any:
        """Refuse a value out of range when it is set (``%config LLMMagics.timeout = 0``), naming the setting."""
        from odsc_magics.arguments import setting_problem

        value, name = proposal["value"], proposal["trait"].name
        if value is not None:
            problem = setting_problem(name, value)
            if problem is not None:
                owner = type(self).__name__
                raise TraitError(f"{owner}.{name} must be {problem}, not {value!r}; {owner}.{name} is unchanged.")
        return value


_lock = threading.Lock()
_registered: LLMSettings | None = None
_module_default: LLMSettings | None = None
_runtime_target: str | None = None


def use_settings(settings: LLMSettings) -> None:
    """Make ``settings`` the instance every API call reads (the magics register themselves)."""
    global _registered
    _registered = settings


def current_settings() -> LLMSettings:
    """The registered settings instance, else a module-wide default instance."""
    global _module_default
    if _registered is not None:
        return _registered
    with _lock:
        if _module_default is None:
            _module_default = LLMSettings()
        return _module_default


def _env_name(name: str) -> str:
    return f"ODSC_MAGICS_{name.upper()}"


def _coerce_env(name: str, raw: str) -> Any:
    trait = LLMSettings.class_traits()[name]
    env = _env_name(name)
    text = raw.strip()
    try:
        if isinstance(trait, Dict):
            return _coerce_prices(env, text)
        if isinstance(trait, Int):
            value: Any = int(text)
        elif isinstance(trait, Float):
            value = float(text)
        else:
            value = None
    except ValueError:
        raise ConfigurationError(
            f"{env}={raw!r} is not a number.", hint=f"Set {env} to a number or unset it."
        ) from None
    if value is not None:
        from odsc_magics.arguments import SETTING_RANGES, setting_problem

        problem = setting_problem(name, value) if name in SETTING_RANGES else None
        if problem is not None:
            raise ConfigurationError(
                f"{env}={raw!r} is out of range: it must be {problem}.", hint=f"Fix {env} or unset it."
            )
        return value
    if isinstance(trait, Enum) and text not in trait.values:
        allowed = ", ".join(str(v) for v in trait.values if v is not None)
        raise ConfigurationError(
            f"{env}={raw!r} is not one of {allowed}.", hint=f"Set {env} to one of {allowed}."
        )
    return text


def _coerce_prices(env: str, text: str) -> dict:
    import json

    from odsc_magics.prices import check_gpu_prices

    try:
        return check_gpu_prices(json.loads(text))
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise ConfigurationError(
            f"{env} must be a JSON object of GPU name to USD per GPU-hour: {exc}.",
            hint=f"e.g. {env}='{{\"A10\": 1.6}}', or unset it.",
        ) from None


def _configured(name: str, settings: LLMSettings) -> tuple[Any, str] | None:
    """The first of argument-free levels that sets ``name``: %config, then the environment."""
    value = getattr(settings, name)
    if value is not None:
        return value, "%config"
    raw = os.environ.get(_env_name(name))
    if raw is not None and raw.strip() != "":
        return _coerce_env(name, raw), f"env {_env_name(name)}"
    return None


def _value(name: str, settings: LLMSettings) -> Any:
    return _resolve(name, None, settings)[0]


def _local_values(settings: LLMSettings) -> dict:
    """What the local backend of the ``local_dir`` setting uses, read from its state dir (starts nothing)."""
    from pathlib import Path

    from odsc_magics.local.identity import planned

    return planned(Path(_value("local_dir", settings)).expanduser().resolve())


def _profile_value(settings: LLMSettings, key: str) -> Any:
    from odsc_magics.auth import profile_value

    return profile_value(_value("config_file", settings), _value("profile", settings), key)


def _derived(name: str, settings: LLMSettings) -> tuple[Any, str] | None:
    """Values that come from the local backend's state dir, the notebook session or the OCI profile."""
    if name in ("backend", "local_dir"):
        return None
    backend = _value("backend", settings)
    if backend == "local":
        if name == "auth":
            return "api_key", "local backend"
        if name in _LOCAL_KEYS:
            value = _local_values(settings).get(name)
            if value:
                return value, "local backend"
        return None
    if name == "auth" and os.environ.get("OCI_RESOURCE_PRINCIPAL_VERSION"):
        return "resource_principal", "notebook session"
    if name == "compartment_id" and os.environ.get("PROJECT_COMPARTMENT_OCID"):
        return os.environ["PROJECT_COMPARTMENT_OCID"], "notebook session"
    if name == "project_id" and os.environ.get("PROJECT_OCID"):
        return os.environ["PROJECT_OCID"], "notebook session"
    if name in ("region", "compartment_id"):
        auth = _value("auth", settings)
        if (
            name == "region"
            and auth == "resource_principal"
            and os.environ.get("OCI_RESOURCE_PRINCIPAL_REGION")
        ):
            return os.environ["OCI_RESOURCE_PRINCIPAL_REGION"], "notebook session"
        if auth in ("api_key", "security_token"):
            value = _profile_value(settings, "region" if name == "region" else "tenancy")
            if value:
                return value, "profile"
    return None


def _resolve(name: str, explicit: Any, settings: LLMSettings | None) -> tuple[Any, str]:
    if name not in DEFAULTS:
        raise ConfigurationError(f"Unknown setting {name!r}.", hint=f"Settings: {', '.join(SETTING_NAMES)}.")
    if explicit is not None:
        return explicit, "argument"
    settings = settings if settings is not None else current_settings()
    found = _configured(name, settings) or _derived(name, settings)
    if found is not None:
        return found
    return DEFAULTS[name], "default"


def resolve(name: str, explicit: Any = None, settings: LLMSettings | None = None) -> tuple[Any, str]:
    """The effective value of setting ``name`` and where it came from; reads, never starts anything.

    Sources: "argument", "%config", "env ODSC_MAGICS_<NAME>", "local backend", "notebook session",
    "profile", "default". With backend "local" the values come from its state dir, whether it runs or not
    (context.get_context starts it).
    """
    return _resolve(name, explicit, settings)


def configured_key(settings: LLMSettings | None = None) -> tuple:
    """What decides a connection context, without deriving anything (cheap; used as a cache key)."""
    settings = settings if settings is not None else current_settings()
    names = (
        "backend",
        "local_dir",
        "auth",
        "config_file",
        "profile",
        "region",
        "compartment_id",
        "project_id",
    )
    configured = tuple((_configured(n, settings) or (None, ""))[0] for n in names)
    env = tuple(
        os.environ.get(v)
        for v in (
            "OCI_RESOURCE_PRINCIPAL_VERSION",
            "OCI_RESOURCE_PRINCIPAL_REGION",
            "PROJECT_COMPARTMENT_OCID",
            "PROJECT_OCID",
        )
    )
    return configured + env


def _shown(value: Any) -> str:
    if value is None:
        return "(not set)"
    return str(value)


def describe(settings: LLMSettings | None = None) -> list[tuple[str, str, str]]:
    """(name, shown value, source) for every setting; never shows a secret and never starts anything."""
    settings = settings if settings is not None else current_settings()
    rows = []
    for name in SETTING_NAMES:
        try:
            value, source = _resolve(name, None, settings)
        except ConfigurationError as exc:
            value, source = f"(unusable: {exc.message})", "error"
        rows.append((name, _shown(value), source))
    target = _runtime_target if _configured("deployment", settings) is None else None
    if target:
        rows[SETTING_NAMES.index("deployment")] = ("deployment", target, "last deploy/use")
    return rows


def set_default_target(target: str | None) -> None:
    """Set the runtime default target (deploy() and `%llm_deploy use` call this)."""
    global _runtime_target
    _runtime_target = target


def default_target(settings: LLMSettings | None = None) -> str | None:
    """The default target: the `deployment` setting if set, else the last one deploy()/use set."""
    value, _ = resolve("deployment", None, settings)
    return value if value is not None else _runtime_target
