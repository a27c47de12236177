"""Auth: signer per mode, configuration errors, the 401 message, token refresh on 401, no secrets."""

from __future__ import annotations

import configparser
import logging
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from odsc_magics.auth import Credentials, load_credentials
from odsc_magics.client import Endpoint, connect
from odsc_magics.config import LLMSettings
from odsc_magics.context import Context, get_context
from odsc_magics.errors import AuthenticationError, ConfigurationError

PASS_PHRASE = "correct-horse-battery-staple"


def local_settings(backend, **traits) -> LLMSettings:
    return LLMSettings(backend="local", local_dir=str(backend.state_dir), **traits)


def write_key(path: Path, pass_phrase: str | None = None) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encryption = (
        serialization.BestAvailableEncryption(pass_phrase.encode())
        if pass_phrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    path.write_bytes(pem)
    return pem.decode()


def write_profile(backend, tmp_path: Path, profile: str, **overrides: str) -> Path:
    """A config file whose `profile` copies the backend's DEFAULT profile with some entries replaced."""
    source = configparser.ConfigParser(interpolation=None)
    source.read(backend.config_file)
    entries = dict(source[backend.profile])
    entries.update(overrides)
    path = tmp_path / "config"
    target = configparser.ConfigParser(interpolation=None)
    target[profile] = entries
    with path.open("w") as fh:
        target.write(fh)
    return path


def assert_clean(text: str, *secrets: str) -> None:
    for marker in ("BEGIN", "PRIVATE KEY", 'algorithm="rsa', "keyId=", "authorization:", *secrets):
        assert marker not in text, marker


def test_api_key_credentials_describe_profile(backend) -> None:
    credentials = load_credentials("api_key", config_file=backend.config_file, profile=backend.profile)
    assert credentials.description == f"api_key (profile {backend.profile} of {backend.config_file})"
    assert credentials.region == backend.region
    assert not credentials.refreshable and credentials.refresh() is False
    assert_clean(repr(credentials))


def test_context_describes_auth_without_secrets(backend) -> None:
    context = get_context(local_settings(backend))
    assert context.auth_description.startswith("api_key (profile ")
    assert context.refresh_signer() is False
    assert_clean(repr(context) + context.auth_description)
    assert context.http.adapters["http://"]._pool_maxsize >= 256


def test_wrong_key_gets_the_401_message(backend, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key_text = write_key(tmp_path / "wrong.pem", PASS_PHRASE)
    config = write_profile(
        backend, tmp_path, "WRONG", key_file=str(tmp_path / "wrong.pem"), pass_phrase=PASS_PHRASE
    )
    settings = local_settings(backend, config_file=str(config), profile="WRONG")
    endpoint = Endpoint(backend.deployment["url"], deployment_id=backend.deployment["id"], settings=settings)
    with pytest.raises(AuthenticationError) as info:
        endpoint.complete("Hi", max_tokens=2)
    error = info.value
    assert error.status == 401
    assert f"api_key (profile WRONG of {config})" in error.hint
    assert "key file and fingerprint" in error.hint
    body = key_text.splitlines()[1]
    assert_clean(str(error) + error.short() + repr(error.__dict__) + caplog.text, PASS_PHRASE, body)
    # The control plane says the same when a display name is resolved.
    with pytest.raises(AuthenticationError) as info:
        connect("test-llm", settings=settings)
    assert "api_key (profile WRONG" in info.value.hint
    assert_clean(str(info.value) + caplog.text, PASS_PHRASE, body)


def test_stream_with_wrong_key(backend, tmp_path: Path) -> None:
    write_key(tmp_path / "wrong.pem")
    config = write_profile(backend, tmp_path, "DEFAULT", key_file=str(tmp_path / "wrong.pem"))
    settings = local_settings(backend, config_file=str(config))
    endpoint = Endpoint(backend.deployment["url"], deployment_id=backend.deployment["id"], settings=settings)
    with pytest.raises(AuthenticationError):
        list(endpoint.stream_complete("Hi", max_tokens=2))


def test_missing_file_profile_and_pass_phrase(backend, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not found"):
        load_credentials("api_key", config_file=str(tmp_path / "nope"), profile="DEFAULT")
    with pytest.raises(ConfigurationError, match="Profile NOPE not found"):
        load_credentials("api_key", config_file=backend.config_file, profile="NOPE")
    write_key(tmp_path / "locked.pem", PASS_PHRASE)
    config = write_profile(backend, tmp_path, "LOCKED", key_file=str(tmp_path / "locked.pem"))
    with pytest.raises(ConfigurationError, match="pass_phrase") as info:
        load_credentials("api_key", config_file=str(config), profile="LOCKED")
    assert_clean(str(info.value), PASS_PHRASE)
    config = write_profile(
        backend, tmp_path, "BADPASS", key_file=str(tmp_path / "locked.pem"), pass_phrase="not-" + PASS_PHRASE
    )
    with pytest.raises(ConfigurationError) as info:
        load_credentials("api_key", config_file=str(config), profile="BADPASS")
    assert_clean(str(info.value), PASS_PHRASE)


def test_security_token_profile(backend, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("header.payload.sig")
    config = write_profile(backend, tmp_path, "SESSION", security_token_file=str(token))
    credentials = load_credentials("security_token", config_file=str(config), profile="SESSION")
    assert credentials.refreshable
    assert credentials.description == f"security_token (profile SESSION of {config})"
    first = credentials.signer
    token.write_text("header.payload.renewed")
    assert credentials.refresh() is True
    assert credentials.signer is not first and credentials.generation == 1
    # Another caller that saw the same 401 shares the renewal instead of renewing again.
    assert credentials.refresh(seen_generation=0) is True and credentials.generation == 1
    missing = write_profile(backend, tmp_path, "NOTOKEN")
    with pytest.raises(ConfigurationError, match="security_token_file"):
        load_credentials("security_token", config_file=str(missing), profile="NOTOKEN")


class _SwapOnRefresh(Credentials):
    """A token-based mode whose first signer is rejected; refresh() brings the right one."""

    def __init__(self, bad, good, region: str) -> None:
        super().__init__(
            "security_token", bad, region=region, description="security_token (test)", oci_config={}
        )
        self._good = good
        self.refreshes = 0

    def refresh(self, seen_generation: int | None = None) -> bool:
        self.refreshes += 1
        self.signer = self._good
        self.generation += 1
        return True


def test_401_with_token_signer_refreshes_once_and_retries(backend, tmp_path: Path) -> None:
    import oci

    write_key(tmp_path / "wrong.pem")
    wrong = oci.signer.Signer.from_config({**backend.oci_config(), "key_file": str(tmp_path / "wrong.pem")})
    credentials = _SwapOnRefresh(wrong, backend.signer(), backend.region)
    context = Context(
        backend="local",
        region=backend.region,
        compartment_id=backend.compartment_id,
        project_id=backend.project_id,
        credentials=credentials,
    )
    endpoint = Endpoint(backend.deployment["url"], deployment_id=backend.deployment["id"], context=context)
    assert endpoint.complete("Hi", max_tokens=2).text
    assert credentials.refreshes == 1
    assert "".join(endpoint.stream_complete("Hi", max_tokens=2))
    assert credentials.refreshes == 1  # the renewed signer keeps working


def test_resource_principal_errors_are_configuration_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the resource principal variables the SDK refuses; we say what to do (no network call)."""
    monkeypatch.delenv("OCI_RESOURCE_PRINCIPAL_VERSION", raising=False)
    with pytest.raises(ConfigurationError, match="Resource principal"):
        load_credentials("resource_principal", config_file="~/.oci/config", profile="DEFAULT")


def test_unknown_mode() -> None:
    with pytest.raises(ConfigurationError, match="Unknown auth mode"):
        load_credentials("password", config_file="~/.oci/config", profile="DEFAULT")


def test_a_session_token_that_cannot_be_renewed_says_why(backend, tmp_path: Path) -> None:
    # Given a security_token profile whose token file is gone by the time the token must be renewed
    token = tmp_path / "token"
    token.write_text("header.payload.sig-that-is-secret")
    config = write_profile(backend, tmp_path, "SESSION", security_token_file=str(token))
    credentials = load_credentials("security_token", config_file=str(config), profile="SESSION")
    token.unlink()
    # When a 401 asks for a renewal
    with pytest.raises(AuthenticationError) as info:
        credentials.refresh()
    # Then the error says the renewal failed and how to get a new session, without the token
    assert "could not be renewed" in info.value.message
    assert "oci session authenticate --profile-name SESSION" in info.value.hint
    assert_clean(str(info.value) + info.value.hint, "sig-that-is-secret")
    assert credentials.generation == 0


class _FailingTokenSigner:
    """A principal signer whose token service fails with a message that must not be shown."""

    def __init__(self, signer) -> None:
        self._signer = signer

    def __call__(self, request):
        return self._signer(request)

    def refresh_security_token(self) -> None:
        raise RuntimeError("federation answered token=eyJsecret")


def test_a_401_whose_token_renewal_fails_raises_the_renewal_error(backend, tmp_path: Path) -> None:
    import oci

    # Given an instance-principal-like signer that is rejected and whose renewal fails
    write_key(tmp_path / "wrong.pem")
    wrong = oci.signer.Signer.from_config({**backend.oci_config(), "key_file": str(tmp_path / "wrong.pem")})
    credentials = Credentials(
        "instance_principal", _FailingTokenSigner(wrong), region=backend.region, description="instance_principal",
        oci_config={"region": backend.region},
    )  # fmt: skip
    context = Context(
        backend="local",
        region=backend.region,
        compartment_id=backend.compartment_id,
        project_id=backend.project_id,
        credentials=credentials,
    )
    endpoint = Endpoint(backend.deployment["url"], deployment_id=backend.deployment["id"], context=context)
    # When a prediction gets a 401
    with pytest.raises(AuthenticationError) as info:
        endpoint.complete("Hi", max_tokens=2)
    # Then the error names the failed renewal and the next step, not the token service's words
    assert "renewing the instance_principal token failed (RuntimeError)" in info.value.message
    assert "dynamic group" in info.value.hint
    assert "eyJsecret" not in str(info.value) + info.value.hint
