"""Signature verification against requests signed by the oci SDK's own signer (no server involved)."""

from __future__ import annotations

import email.utils
import time

import oci
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from odsc_magics.local.identity import fingerprint_of, load_or_create, load_public_key
from odsc_magics.local.signing import SignatureError, Verifier, parse_authorization


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    state = tmp_path_factory.mktemp("identity")
    identity = load_or_create(state)
    verifier = Verifier(load_public_key(state), identity.key_id)
    signer = oci.signer.Signer.from_config(oci.config.from_file(identity.config_file))
    return identity, verifier, signer, state


def _signed(signer, method: str, url: str, **kwargs) -> requests.PreparedRequest:
    prepared = requests.Request(method, url, **kwargs).prepare()
    signer(prepared)
    return prepared


def _verify(verifier: Verifier, prepared: requests.PreparedRequest, **kwargs) -> None:
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode()
    verifier.verify(prepared.method, prepared.path_url, prepared.headers, body, **kwargs)


def test_identity_is_stable_and_valid(profile):
    identity, _, _, state = profile
    assert load_or_create(state) == identity
    config = oci.config.from_file(identity.config_file)
    oci.config.validate_config(config)
    assert config["fingerprint"] == identity.fingerprint
    assert fingerprint_of(load_public_key(state)) == identity.fingerprint
    assert identity.tenancy.startswith("ocid1.tenancy.oc1..")


def test_sdk_signatures_verify(profile):
    _, verifier, signer, _ = profile
    _verify(verifier, _signed(signer, "GET", "http://127.0.0.1:9/20190101/models?compartmentId=x&limit=2"))
    _verify(verifier, _signed(signer, "POST", "http://127.0.0.1:9/ocid1.x/predict", json={"prompt": "hi"}))
    _verify(verifier, _signed(signer, "DELETE", "http://127.0.0.1:9/20190101/modelDeployments/ocid1.x"))
    _verify(verifier, _signed(signer, "PUT", "http://127.0.0.1:9/20190101/modelDeployments/ocid1.x", data="{}"))


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: p.headers.pop("authorization"), "not signed"),
        (lambda p: p.headers.__setitem__("authorization", "Bearer abc"), "Signature scheme"),
        (lambda p: p.headers.__setitem__("host", "127.0.0.1:10"), "does not verify"),
        (lambda p: setattr(p, "body", b'{"prompt": "other"}'), "x-content-sha256"),
        (lambda p: p.headers.__setitem__("x-content-sha256", "AAAA"), "x-content-sha256"),
        (lambda p: p.headers.pop("content-type"), "absent"),
    ],
)
def test_altered_requests_fail(profile, mutate, reason):
    _, verifier, signer, _ = profile
    prepared = _signed(signer, "POST", "http://127.0.0.1:9/ocid1.x/predict", json={"prompt": "hi"})
    mutate(prepared)
    with pytest.raises(SignatureError, match=reason):
        _verify(verifier, prepared)


def test_date_window(profile):
    _, verifier, signer, _ = profile
    prepared = _signed(signer, "GET", "http://127.0.0.1:9/20190101/projects")
    _verify(verifier, prepared, now=time.time() + 290)
    with pytest.raises(SignatureError, match="clock"):
        _verify(verifier, prepared, now=time.time() + 310)
    old = _signed(
        signer,
        "GET",
        "http://127.0.0.1:9/x",
        headers={"date": email.utils.formatdate(time.time() - 400, usegmt=True)},
    )
    with pytest.raises(SignatureError, match="clock"):
        _verify(verifier, old)


def test_other_key_and_key_id(profile, tmp_path):
    identity, verifier, _, _ = profile
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    same_id = oci.signer.Signer(identity.tenancy, identity.user, identity.fingerprint, None, private_key_content=pem)
    with pytest.raises(SignatureError, match="does not verify"):
        _verify(verifier, _signed(same_id, "GET", "http://127.0.0.1:9/x"))
    other_id = oci.signer.Signer(identity.tenancy, identity.user, "aa:bb", None, private_key_content=pem)
    with pytest.raises(SignatureError, match="keyId"):
        _verify(verifier, _signed(other_id, "GET", "http://127.0.0.1:9/x"))


def test_parse_authorization():
    params = parse_authorization(
        'Signature version="1",keyId="a/b/c",algorithm="rsa-sha256",headers="date host",signature="xyz="'
    )
    assert params["keyid"] == "a/b/c" and params["headers"] == "date host" and params["signature"] == "xyz="
