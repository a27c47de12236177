"""The data plane: predict and streaming through the oci SDK, requests + Signer, routes and errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import oci
import pytest

COMPLETION = {"model": "odsc-llm", "prompt": "what are activation functions?", "max_tokens": 12}
CHAT = {"model": "odsc-llm", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 12}


def _sse_payloads(lines) -> list[str]:
    return [line[len("data: ") :] for line in lines if line.startswith("data: ")]


def test_sdk_predict_and_stream(backend):
    client = backend.model_deployment_client()
    md_id = backend.deployment["id"]
    response = client.predict(md_id, COMPLETION)
    assert response.status == 200 and response.headers["opc-request-id"]
    answer = json.loads(response.data)
    assert answer["object"] == "text_completion" and answer["choices"][0]["text"]
    assert answer["usage"]["completion_tokens"] <= 12

    streamed = client.predict_with_response_stream(md_id, {**COMPLETION, "stream": True})
    assert isinstance(streamed.data, oci._vendor.sseclient.SSEClient)
    events = [event.data for event in streamed.data.events()]
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1] if json.loads(e)["choices"])
    assert text


def test_platform_page_examples_work_unchanged(backend):
    """The two examples of the platform page, typos fixed, with the local profile as ~/.oci/config."""
    oci_dir = Path.home() / ".oci"
    oci_dir.mkdir(exist_ok=True)
    shutil.copy(backend.config_file, oci_dir / "config")
    endpoint = backend.deployment["url"] + "/predict"

    # --- "Using Python SDK (without streaming)" ---
    import requests
    from oci.config import from_file
    from oci.signer import Signer

    config = from_file("~/.oci/config")
    signer = Signer(
        tenancy=config["tenancy"],
        user=config["user"],
        fingerprint=config["fingerprint"],
        private_key_file_location=config["key_file"],
        pass_phrase=config["pass_phrase"],
    )
    body = {
        "model": "odsc-llm",  # this is a constant
        "prompt": "what are activation functions?",
        "max_tokens": 250,
        "temperature": 0.7,
        "top_p": 0.8,
    }
    res = requests.post(endpoint, json=body, auth=signer, headers={}).json()
    assert res["choices"][0]["text"] and res["model"] == "odsc-llm"

    # --- "Using Python SDK (with streaming)" ---
    body = {
        "model": "odsc-llm",  # this is a constant
        "prompt": "what are activation functions?",
        "max_tokens": 250,
        "temperature": 0.7,
        "top_p": 0.8,
        "stream": True,
    }
    sess = requests.Session()
    chunks = []
    with sess.post(
        endpoint,
        auth=signer,
        headers={"enable-streaming": "true"},
        data=json.dumps(body),
        stream=True,
    ) as resp:
        assert resp.headers["content-type"] == "text/event-stream"
        assert resp.headers["transfer-encoding"] == "chunked"
        for chunk in resp.iter_lines():
            chunk = chunk.decode("utf-8")
            chunks.append(chunk)
    payloads = _sse_payloads(chunks)
    assert payloads[-1] == "[DONE]" and len(payloads) > 2


def test_stream_endpoint_headers_and_request_id(backend):
    session = backend.session()
    response = session.post(
        backend.chat_deployment["url"] + "/predictWithResponseStream",
        json={**CHAT, "stream": True},
        headers={"opc-request-id": "MYREQUESTID0001", "accept": "text/event-stream"},
        stream=True,
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.headers["opc-request-id"] == "MYREQUESTID0001"
    payloads = _sse_payloads(line.decode() for line in response.iter_lines())
    assert json.loads(payloads[0])["object"] == "chat.completion.chunk"
    assert payloads[-1] == "[DONE]"


def test_predict_streams_only_with_enable_streaming(backend):
    session = backend.session()
    url = backend.deployment["url"] + "/predict"
    buffered = session.post(url, json={**COMPLETION, "stream": True})
    assert buffered.headers["content-type"] == "text/event-stream"
    assert "transfer-encoding" not in buffered.headers
    assert int(buffered.headers["content-length"]) == len(buffered.content)
    assert _sse_payloads(buffered.text.splitlines())[-1] == "[DONE]"


def test_stream_endpoint_requires_stream_true(backend):
    response = backend.session().post(backend.deployment["url"] + "/predictWithResponseStream", json=COMPLETION)
    assert response.status_code == 409
    assert response.json()["code"] == "ExternalServerIncorrectState"


def test_route_header_and_path_suffix(backend):
    session = backend.session()
    base = backend.deployment["url"]  # a completion deployment: default route /v1/completions
    chat = session.post(base + "/predict", json=CHAT, headers={"route": "/v1/chat/completions"}).json()
    assert chat["object"] == "chat.completion"
    suffixed = session.post(base + "/predict/v1/chat/completions", json=CHAT).json()
    assert suffixed["object"] == "chat.completion"
    models = session.get(base + "/predict/v1/models")
    assert models.status_code == 200 and models.json()["data"][0]["id"] == "odsc-llm"
    streamed = session.post(base + "/predictWithResponseStream/v1/chat/completions", json={**CHAT, "stream": True})
    assert json.loads(_sse_payloads(streamed.text.splitlines())[0])["object"] == "chat.completion.chunk"
    plain_get = session.get(base + "/predict")
    assert plain_get.status_code == 405 and plain_get.json()["code"] == "MethodNotAllowed"


def _create_raw(backend, name: str, env_config: dict | None) -> str:
    """A deployment made by another client: a bare JSON body, maybe without any container settings."""
    config = {
        "deploymentType": "SINGLE_MODEL",
        "modelConfigurationDetails": {
            "modelId": backend.service_model_id("Phi-3-mini-4k-instruct"),
            "instanceConfiguration": {"instanceShapeName": "VM.GPU.A10.1"},
        },
    }
    if env_config is not None:
        config["environmentConfigurationDetails"] = env_config
    body = {
        "displayName": name,
        "compartmentId": backend.compartment_id,
        "projectId": backend.project_id,
        "modelDeploymentConfigurationDetails": config,
    }
    response = backend.session().post(f"{backend.endpoint}/20190101/modelDeployments", json=body)
    assert response.status_code == 200, response.text
    backend.wait_work_request(response.headers["opc-work-request-id"])
    return response.json()["modelDeploymentUrl"]


def test_deployment_with_fewer_settings_still_serves(backend):
    session = backend.session()
    bare = _create_raw(backend, "bare", None)
    assert session.post(bare + "/predict", json=COMPLETION).json()["object"] == "text_completion"
    assert session.post(bare + "/predict", json=CHAT).json()["object"] == "chat.completion"
    minimal = _create_raw(
        backend,
        "minimal-env",
        {
            "environmentConfigurationType": "OCIR_CONTAINER",
            "image": "dsmc://odsc-vllm-serving:latest",
            "environmentVariables": {"MODEL_DEPLOY_PREDICT_ENDPOINT": "/v1/chat/completions"},
        },
    )
    assert session.post(minimal + "/predict", json=CHAT).json()["object"] == "chat.completion"
    # path suffixes need predictApiSpecification: openai
    refused = session.post(minimal + "/predict/v1/chat/completions", json=CHAT)
    assert refused.status_code == 404 and refused.json()["code"] == "NotAuthorizedOrNotFound"


def test_invalid_json_unknown_and_inactive(backend):
    session = backend.session()
    invalid = session.post(
        backend.deployment["url"] + "/predict",
        data=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert invalid.status_code == 400 and invalid.json()["code"] == "CannotParseRequest"
    assert "not valid JSON" in invalid.json()["message"]
    unknown = session.post(f"{backend.endpoint}/ocid1.datasciencemodeldeployment.oc1.iad.nope/predict", json=COMPLETION)
    assert unknown.status_code == 404 and unknown.json()["code"] == "NotAuthorizedOrNotFound"
    assert unknown.headers["opc-request-id"]

    client = backend.data_science_client()
    url = _create_raw(backend, "to-deactivate", None)
    md_id = url.rsplit("/", 1)[1]
    backend.wait_work_request(client.deactivate_model_deployment(md_id).headers["opc-work-request-id"])
    inactive = session.post(url + "/predict", json=COMPLETION)
    assert inactive.status_code == 409
    assert inactive.json() == {
        "code": "IncorrectState",
        "message": f"Model deployment {md_id} is INACTIVE; only an ACTIVE model deployment serves predictions",
    }


def test_payload_too_large(backend):
    huge = {"prompt": "x" * (10 * 1024 * 1024 + 10)}
    response = backend.session().post(backend.deployment["url"] + "/predict", json=huge)
    assert response.status_code == 413 and response.json()["code"] == "PayloadTooLarge"


def test_sdk_sees_errors_as_service_errors(backend):
    client = backend.model_deployment_client()
    with pytest.raises(oci.exceptions.ServiceError) as info:
        client.predict("ocid1.datasciencemodeldeployment.oc1.iad.nope", COMPLETION)
    assert info.value.status == 404 and info.value.code == "NotAuthorizedOrNotFound"


def test_stats_and_access_log(backend):
    session = backend.session()
    md_id = backend.chat_deployment["id"]
    before = backend.deployment_stats(md_id)
    body = {**CHAT, "messages": [{"role": "user", "content": "stats please"}]}
    for _ in range(2):
        assert session.post(backend.chat_deployment["url"] + "/predict", json=body).status_code == 200
    after = backend.deployment_stats(md_id)
    assert after["predict_requests"] == before["predict_requests"] + 2
    assert after["by_status"]["200"] == before["by_status"].get("200", 0) + 2
    assert after["duplicate_successes"] == before["duplicate_successes"] + 1
    import urllib.request

    with urllib.request.urlopen(f"{backend.endpoint}/_emulator/access_logs") as response:
        entries = json.loads(response.read())[md_id]
    assert entries[-1]["method"] == "POST" and entries[-1]["path"] == "/predict" and entries[-1]["status"] == 200
    assert {"time", "latency", "opcRequestId"} <= set(entries[-1])
