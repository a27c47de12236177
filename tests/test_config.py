"""Settings: one precedence (argument > %config > env > derived > default), sources, describe(), targets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from traitlets import TraitError
from traitlets.config import Config

from odsc_magics import config
from odsc_magics.config import (
    SETTING_NAMES,
    LLMSettings,
    current_settings,
    default_target,
    describe,
    resolve,
    set_default_target,
    use_settings,
)
from odsc_magics.errors import ConfigurationError


@pytest.fixture(autouse=True)
def _isolated_globals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "_registered", None)
    monkeypatch.setattr(config, "_module_default", None)
    monkeypatch.setattr(config, "_runtime_target", None)


@pytest.fixture
def profile_file(tmp_path: Path) -> Path:
    path = tmp_path / "config"
    path.write_text(
        "[DEFAULT]\nregion=eu-frankfurt-1\ntenancy=ocid1.tenancy.oc1..tenant\n"
        "[OTHER]\nregion=us-phoenix-1\ntenancy=ocid1.tenancy.oc1..other\n"
    )
    return path


def test_defaults() -> None:
    settings = LLMSettings(config_file="/nonexistent/config")
    assert resolve("backend", settings=settings) == ("oci", "default")
    assert resolve("auth", settings=settings) == ("api_key", "default")
    assert resolve("model", settings=settings) == ("odsc-llm", "default")
    assert resolve("max_tokens", settings=settings) == (512, "default")
    assert resolve("max_retries", settings=settings) == (6, "default")
    assert resolve("timeout", settings=settings) == (60.0, "default")
    assert resolve("temperature", settings=settings) == (None, "default")
    assert resolve("profile", settings=settings) == ("DEFAULT", "default")
    assert resolve("local_dir", settings=settings)[0].endswith(str(Path(".odsc_magics", "local")))


def test_precedence_argument_config_env_default(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = LLMSettings()
    assert resolve("max_tokens", settings=settings) == (512, "default")
    monkeypatch.setenv("ODSC_MAGICS_MAX_TOKENS", "100")
    assert resolve("max_tokens", settings=settings) == (100, "env ODSC_MAGICS_MAX_TOKENS")
    settings.max_tokens = 50
    assert resolve("max_tokens", settings=settings) == (50, "%config")
    assert resolve("max_tokens", 7, settings=settings) == (7, "argument")
    settings.max_tokens = None
    assert resolve("max_tokens", settings=settings)[1] == "env ODSC_MAGICS_MAX_TOKENS"


def test_config_object_counts_as_percent_config() -> None:
    class LLMMagics(LLMSettings):
        pass

    settings = LLMMagics(config=Config({"LLMMagics": {"temperature": 0.3, "backend": "local"}}))
    assert resolve("temperature", settings=settings) == (0.3, "%config")
    assert resolve("backend", settings=settings) == ("local", "%config")


def test_env_values_are_typed_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = LLMSettings()
    monkeypatch.setenv("ODSC_MAGICS_TEMPERATURE", "0.5")
    monkeypatch.setenv("ODSC_MAGICS_TIMEOUT", "30")
    assert resolve("temperature", settings=settings)[0] == 0.5
    assert resolve("timeout", settings=settings)[0] == 30.0
    monkeypatch.setenv("ODSC_MAGICS_MAX_RETRIES", "many")
    with pytest.raises(ConfigurationError, match="ODSC_MAGICS_MAX_RETRIES"):
        resolve("max_retries", settings=settings)
    monkeypatch.setenv("ODSC_MAGICS_BACKEND", "cloud")
    with pytest.raises(ConfigurationError, match="oci, local"):
        resolve("backend", settings=settings)


def test_traits_are_validated() -> None:
    with pytest.raises(TraitError):
        LLMSettings(backend="cloud")
    with pytest.raises(TraitError):
        LLMSettings(auth="password")


def test_unknown_setting() -> None:
    with pytest.raises(ConfigurationError):
        resolve("colour")


def test_region_and_compartment_from_profile(profile_file: Path) -> None:
    settings = LLMSettings(config_file=str(profile_file))
    assert resolve("region", settings=settings) == ("eu-frankfurt-1", "profile")
    assert resolve("compartment_id", settings=settings) == ("ocid1.tenancy.oc1..tenant", "profile")
    settings.profile = "OTHER"
    assert resolve("region", settings=settings) == ("us-phoenix-1", "profile")
    settings.region = "ap-tokyo-1"
    assert resolve("region", settings=settings) == ("ap-tokyo-1", "%config")


def test_notebook_session_defaults(monkeypatch: pytest.MonkeyPatch, profile_file: Path) -> None:
    """In an OCI notebook session resource principal is the default; no IMDS or token call is made."""
    monkeypatch.setenv("OCI_RESOURCE_PRINCIPAL_VERSION", "2.2")
    monkeypatch.setenv("OCI_RESOURCE_PRINCIPAL_REGION", "us-ashburn-1")
    monkeypatch.setenv("PROJECT_COMPARTMENT_OCID", "ocid1.compartment.oc1..nb")
    monkeypatch.setenv("PROJECT_OCID", "ocid1.datascienceproject.oc1.iad.nb")
    settings = LLMSettings(config_file=str(profile_file))
    assert resolve("auth", settings=settings) == ("resource_principal", "notebook session")
    assert resolve("region", settings=settings) == ("us-ashburn-1", "notebook session")
    assert resolve("compartment_id", settings=settings) == ("ocid1.compartment.oc1..nb", "notebook session")
    assert resolve("project_id", settings=settings) == (
        "ocid1.datascienceproject.oc1.iad.nb",
        "notebook session",
    )
    settings.auth = "api_key"
    assert resolve("auth", settings=settings) == ("api_key", "%config")
    assert resolve("region", settings=settings) == ("eu-frankfurt-1", "profile")


def test_without_notebook_session_api_key_is_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCI_RESOURCE_PRINCIPAL_VERSION", raising=False)
    assert resolve("auth", settings=LLMSettings()) == ("api_key", "default")


def test_local_backend_values(backend) -> None:
    settings = LLMSettings(backend="local", local_dir=str(backend.state_dir))
    assert resolve("config_file", settings=settings) == (backend.config_file, "local backend")
    assert resolve("profile", settings=settings) == (backend.profile, "local backend")
    assert resolve("compartment_id", settings=settings) == (backend.compartment_id, "local backend")
    assert resolve("project_id", settings=settings) == (backend.project_id, "local backend")
    assert resolve("region", settings=settings) == (backend.region, "local backend")
    assert resolve("auth", settings=settings) == ("api_key", "local backend")


def test_local_backend_from_env(backend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODSC_MAGICS_BACKEND", "local")
    monkeypatch.setenv("ODSC_MAGICS_LOCAL_DIR", str(backend.state_dir))
    settings = LLMSettings()
    assert resolve("backend", settings=settings) == ("local", "env ODSC_MAGICS_BACKEND")
    assert resolve("compartment_id", settings=settings) == (backend.compartment_id, "local backend")


def test_describe_lists_every_setting_with_source(
    profile_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ODSC_MAGICS_MODEL", "served")
    rows = describe(LLMSettings(config_file=str(profile_file), max_tokens=42))
    assert [name for name, _, _ in rows] == list(SETTING_NAMES)
    table = {name: (shown, source) for name, shown, source in rows}
    assert table["max_tokens"] == ("42", "%config")
    assert table["model"] == ("served", "env ODSC_MAGICS_MODEL")
    assert table["region"] == ("eu-frankfurt-1", "profile")
    assert table["temperature"] == ("(not set)", "default")


def test_describe_never_shows_a_secret(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    armour = "PRIVATE " + "KEY-----"  # a fake key: no key header literal in the repository
    key.write_text(f"-----BEGIN {armour}\nTOPSECRETKEYMATERIAL\n-----END {armour}\n")
    cfg = tmp_path / "config"
    cfg.write_text(
        f"[DEFAULT]\nuser=ocid1.user.oc1..u\ntenancy=ocid1.tenancy.oc1..t\nfingerprint=aa:bb\n"
        f"key_file={key}\npass_phrase=hunter2-pass\nregion=us-ashburn-1\n"
    )
    text = repr(describe(LLMSettings(config_file=str(cfg))))
    for secret in ("TOPSECRETKEYMATERIAL", "hunter2-pass", "BEGIN"):
        assert secret not in text


def test_describe_does_not_start_a_local_backend(tmp_path: Path) -> None:
    rows = dict(
        (name, source) for name, _, source in describe(LLMSettings(backend="local", local_dir=str(tmp_path)))
    )
    assert rows["backend"] == "%config"
    assert not (tmp_path / "start.json").exists()


def test_resolving_local_settings_starts_nothing(tmp_path: Path) -> None:
    settings = LLMSettings(backend="local", local_dir=str(tmp_path))
    for name in SETTING_NAMES:
        resolve(name, settings=settings)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_describe_shows_what_an_unstarted_local_backend_will_use(tmp_path: Path) -> None:
    from odsc_magics.local.testing import start_backend

    state_dir = tmp_path / "state"
    settings = LLMSettings(backend="local", local_dir=str(state_dir))
    before = {name: (shown, source) for name, shown, source in describe(settings)}
    assert not state_dir.exists()
    running = start_backend(state_dir, "--deploy-seconds", "0.2")
    try:
        assert before["config_file"] == (running.config_file, "local backend")
        assert before["region"] == (running.region, "local backend")
        assert before["profile"] == (running.profile, "local backend")
        assert before["auth"] == ("api_key", "local backend")
        after = {name: (shown, source) for name, shown, source in describe(settings)}
        assert after["compartment_id"] == (running.compartment_id, "local backend")
        assert after["project_id"] == (running.project_id, "local backend")
    finally:
        running.stop()
    assert {name: shown for name, shown, _ in describe(settings)}["config_file"] == running.config_file


def test_use_settings_and_current_settings() -> None:
    first = current_settings()
    assert current_settings() is first
    mine = LLMSettings(max_tokens=9)
    use_settings(mine)
    assert current_settings() is mine
    assert resolve("max_tokens") == (9, "%config")


def test_default_target() -> None:
    settings = LLMSettings()
    assert default_target(settings) is None
    set_default_target("ocid1.datasciencemodeldeployment.oc1.iad.x")
    assert default_target(settings) == "ocid1.datasciencemodeldeployment.oc1.iad.x"
    rows = {name: (shown, source) for name, shown, source in describe(settings)}
    assert rows["deployment"][0] == "ocid1.datasciencemodeldeployment.oc1.iad.x"
    settings.deployment = "my-llm"
    assert default_target(settings) == "my-llm"


def test_config_module_imports_stay_light() -> None:
    code = (
        "import sys, odsc_magics.config; "
        "heavy = [m for m in ('oci', 'requests', 'pandas', 'urllib3') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("timeout", 0, "a number of seconds above 0"),
        ("timeout", -5.0, "a number of seconds above 0"),
        ("timeout", float("inf"), "a number of seconds above 0"),
        ("max_retries", -1, "a whole number of 0 or more"),
        ("max_tokens", 0, "a whole number of 1 or more"),
        ("temperature", -0.1, "a number of 0 or more"),
    ],
)
def test_numeric_settings_out_of_range_are_refused_when_set(name: str, value: float, allowed: str) -> None:
    settings = LLMSettings(**{name: None})
    with pytest.raises(TraitError) as info:
        setattr(settings, name, value)
    assert str(info.value).startswith(f"LLMSettings.{name} must be {allowed}, not ")
    assert getattr(settings, name) is None  # unchanged
    with pytest.raises(TraitError, match=name):
        LLMSettings(**{name: value})


def test_numeric_settings_in_range_are_kept() -> None:
    settings = LLMSettings(timeout=0.5, max_retries=0, max_tokens=1, temperature=0.0)
    assert (settings.timeout, settings.max_retries, settings.max_tokens, settings.temperature) == (0.5, 0, 1, 0.0)
    settings.timeout = None  # back to "not set here"
    assert settings.timeout is None


def test_percent_config_with_an_out_of_range_timeout_names_the_setting(tmp_path) -> None:
    # Given IPython with the extension loaded, when the user sets a zero timeout with %config
    script = tmp_path / "cells.ipy"
    script.write_text(
        "%load_ext odsc_magics\n"
        "%config LLMMagics.timeout = 5\n"
        "%config LLMMagics.timeout = 0\n"
        "print('timeout is', get_ipython().find_magic('llm_config').__self__.timeout)\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Then one line names the setting and its range, without a traceback, and the old value stays
    output = done.stdout + done.stderr
    assert "LLMMagics.timeout must be a number of seconds above 0, not 0.0" in output
    assert "Traceback" not in output
    assert "timeout is 5.0" in done.stdout


@pytest.mark.parametrize(
    ("variable", "raw", "allowed"),
    [
        ("ODSC_MAGICS_TIMEOUT", "0", "above 0"),
        ("ODSC_MAGICS_TIMEOUT", "-5", "above 0"),
        ("ODSC_MAGICS_MAX_RETRIES", "-1", "0 or more"),
        ("ODSC_MAGICS_MAX_TOKENS", "0", "1 or more"),
        ("ODSC_MAGICS_TEMPERATURE", "-0.1", "0 or more"),
    ],
)
def test_an_environment_value_out_of_range_is_refused_like_percent_config(monkeypatch, variable, raw, allowed) -> None:
    monkeypatch.setenv(variable, raw)
    name = variable.removeprefix("ODSC_MAGICS_").lower()
    with pytest.raises(ConfigurationError, match=f"{variable}='{raw}' is out of range.*{allowed}"):
        resolve(name, settings=LLMSettings())
