"""Only requests signed with the local profile's key, unaltered and recent, get through."""

from __future__ import annotations

import email.utils
import json
import time
import urllib.request

import oci
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

COMPLETION = {"model": "odsc-llm", "prompt": "hello", "max_tokens": 4}


def _assert_401(response: requests.Response) -> str:
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "NotAuthenticated"
    assert response.headers["opc-request-id"]
    assert "Signature" not in body["message"] or "keyId=" not in body["message"]
    return body["message"]


def test_unsigned_requests_are_refused(backend):
    _assert_401(requests.post(backend.deployment["url"] + "/predict", json=COMPLETION))
    message = _assert_401(
        requests.get(f"{backend.endpoint}/20190101/models", params={"compartmentId": backend.compartment_id})
    )
    assert "not signed" in message


def test_tampered_body_is_refused(backend):
    request = requests.Request("POST", backend.deployment["url"] + "/predict", json=COMPLETION).prepare()
    backend.signer()(request)
    request.body = json.dumps({**COMPLETION, "prompt": "something else"}).encode()
    request.headers["content-length"] = str(len(request.body))
    message = _assert_401(requests.Session().send(request))
    assert "x-content-sha256" in message


def test_tampered_signed_header_is_refused(backend):
    url = f"{backend.endpoint}/20190101/modelDeployments?compartmentId={backend.compartment_id}"
    request = requests.Request("GET", url).prepare()
    backend.signer()(request)
    request.url = url + "&lifecycleState=ACTIVE"  # the (request-target) no longer matches
    _assert_401(requests.Session().send(request))


def test_wrong_key_is_refused(backend, tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "other.pem"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    config = backend.oci_config()
    forged = oci.signer.Signer(config["tenancy"], config["user"], config["fingerprint"], str(key_file))
    message = _assert_401(requests.post(backend.deployment["url"] + "/predict", json=COMPLETION, auth=forged))
    assert "does not verify" in message
    other_id = oci.signer.Signer(config["tenancy"], config["user"], "00:11:22", str(key_file))
    _assert_401(requests.post(backend.deployment["url"] + "/predict", json=COMPLETION, auth=other_id))


def test_sdk_with_wrong_key_gets_service_error(backend, tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "other.pem"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    config = {**backend.oci_config(), "key_file": str(key_file)}
    client = oci.data_science.DataScienceClient(
        config, service_endpoint=backend.endpoint, retry_strategy=oci.retry.NoneRetryStrategy()
    )
    with pytest.raises(oci.exceptions.ServiceError) as info:
        client.list_models(compartment_id=backend.compartment_id)
    assert (info.value.status, info.value.code) == (401, "NotAuthenticated")


def test_stale_date_is_refused(backend):
    stale = email.utils.formatdate(time.time() - 600, usegmt=True)
    response = requests.post(
        backend.deployment["url"] + "/predict",
        json=COMPLETION,
        auth=backend.signer(),
        headers={"date": stale},
    )
    assert "clock" in _assert_401(response)


def test_body_headers_must_be_signed(backend):
    signer = backend.signer().without_content_headers  # signs only date (request-target) host
    response = requests.post(backend.deployment["url"] + "/predict", json=COMPLETION, auth=signer)
    assert "x-content-sha256" in _assert_401(response)


def test_emulator_endpoints_need_no_signature(backend):
    with urllib.request.urlopen(f"{backend.endpoint}/_emulator/stats") as response:
        assert "deployments" in json.loads(response.read())
