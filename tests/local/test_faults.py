"""``--fault`` kinds happen at about their rates and are counted; ``--capacity`` answers 429 beyond N."""

from __future__ import annotations

import json
import time
from collections import Counter

import requests

COMPLETION = {"model": "odsc-llm", "prompt": "tell me about faults", "max_tokens": 8}
N = 400


def _observe_json(session: requests.Session, url: str) -> str:
    try:
        response = session.post(url, json=COMPLETION)
    except requests.exceptions.ChunkedEncodingError:
        return "cut"
    except requests.exceptions.ConnectionError:
        return "reset"
    if response.status_code == 200:
        json.loads(response.content)
        return "ok"
    assert response.headers["opc-request-id"]
    if response.status_code == 500 and response.json().get("object") == "error":
        return "midstream"  # the model server's own 500 (vLLM's body), not the platform's
    return str(response.status_code)


def _observe_stream(session: requests.Session, url: str) -> str:
    try:
        response = session.post(url, json={**COMPLETION, "stream": True}, stream=True)
        if response.status_code != 200:
            return str(response.status_code)
        lines = [line for line in response.iter_lines() if line]
    except requests.exceptions.ChunkedEncodingError:
        return "cut"
    except requests.exceptions.ConnectionError:
        return "reset"
    if any(line.startswith(b'data: {"error"') for line in lines):
        return "midstream"
    return "ok" if lines and lines[-1] == b"data: [DONE]" else "cut"


def test_each_fault_kind_at_its_rate_and_counted(backend_factory):
    rates = {"429": 0.1, "500": 0.1, "503": 0.1, "reset": 0.1, "cut": 0.1, "midstream": 0.1}
    flags = [arg for kind, rate in rates.items() for arg in ("--fault", f"{kind}:{rate}")]
    # As fast as the client goes: far above the tenancy's 150 requests/s, whose 429s are not faults.
    backend = backend_factory(*flags, "--seed", "11", "--retry-after", "2", "--tenancy-rps", "100000")
    deployment = backend.create_deployment()
    session = backend.session()
    seen = Counter()
    for i in range(N):
        if i % 2:
            seen[_observe_stream(session, deployment["url"] + "/predictWithResponseStream")] += 1
        else:
            seen[_observe_json(session, deployment["url"] + "/predict")] += 1
    stats = backend.deployment_stats(deployment["id"])
    assert stats["predict_requests"] == N
    for kind, rate in rates.items():
        # binomial(400, 0.1): mean 40, sd 6; a seeded run, so this only guards against a wrong rate
        assert abs(seen[kind] - N * rate) < 25, (kind, seen)
        assert stats["faults"][kind] == seen[kind]
    for status in ("429", "503"):
        assert stats["by_status"][status] == seen[status]
    streamed_midstream = stats["faults"]["midstream"] - stats["by_status"]["500"] + seen["500"]
    assert stats["succeeded"] == seen["ok"]
    # cut and mid-stream failing streams did send their 200
    assert stats["by_status"]["200"] == seen["ok"] + seen["cut"] + streamed_midstream


def test_fault_error_bodies(backend_factory):
    backend = backend_factory("--fault", "503:1", "--retry-after", "3")
    deployment = backend.create_deployment()
    response = backend.session().post(deployment["url"] + "/predict", json=COMPLETION)
    assert response.status_code == 503
    assert response.json() == {"code": "ServiceUnavailable", "message": "Model server unavailable"}
    assert response.headers["retry-after"] == "3"


def test_capacity_answers_429_beyond_n_in_flight(backend_factory):
    backend = backend_factory("--capacity", "2", "--tokens-per-s", "4")
    deployment = backend.create_deployment()
    stream_url = deployment["url"] + "/predictWithResponseStream"
    held = []
    for _ in range(2):  # two slow streams hold both slots (a dropped reader or session would close its stream)
        holder = backend.session()
        response = holder.post(stream_url, json={**COMPLETION, "max_tokens": 200, "stream": True}, stream=True)
        assert response.status_code == 200
        lines = response.iter_lines()
        next(lines)
        held.append((holder, response, lines))
    session = backend.session()
    for _ in range(3):
        refused = session.post(deployment["url"] + "/predict", json=COMPLETION)
        assert refused.status_code == 429
        assert refused.json() == {
            "code": "TooManyRequests",
            "message": "Too many requests: the model deployment's capacity (2 concurrent) is exceeded",
        }
    stats = backend.deployment_stats(deployment["id"])
    assert stats["by_status"]["429"] == 3 and not stats["faults"]
    assert stats["throttles"] == {"capacity": 3}
    for holder, response, _ in held:
        response.close()
        holder.close()
    # once the server notices the closed streams, the slots are free again
    deadline = time.monotonic() + 30
    while session.post(deployment["url"] + "/predict", json=COMPLETION).status_code != 200:
        assert time.monotonic() < deadline, "capacity was not released after the streams closed"
        time.sleep(0.05)


def _events(response: requests.Response) -> list:
    return [
        line[len(b"data: ") :] if line == b"data: [DONE]" else json.loads(line[len(b"data: ") :])
        for line in response.iter_lines()
        if line
    ]


def test_midstream_fault_sends_an_error_event_after_some_tokens(backend_factory, backend):
    faulty = backend_factory("--fault", "midstream:1")
    deployment = faulty.create_deployment()
    stream_request = {**COMPLETION, "max_tokens": 12, "stream": True}
    response = faulty.session().post(deployment["url"] + "/predictWithResponseStream", json=stream_request)
    assert response.status_code == 200
    events = _events(response)
    assert events[-1] == b"[DONE]"
    error = events[-2]
    assert set(error) == {"error"}
    assert error["error"]["object"] == "error" and error["error"]["message"]
    assert error["error"]["type"] == "BadRequestError" and error["error"]["code"] == 400
    tokens = events[:-2]
    assert tokens and all("choices" in event and "error" not in event for event in tokens)
    partial = "".join(event["choices"][0]["text"] for event in tokens)
    # The same request to a healthy backend: the partial text is a strict prefix of the whole answer.
    healthy = backend.session().post(backend.deployment["url"] + "/predict", json=COMPLETION | {"max_tokens": 12})
    whole = healthy.json()["choices"][0]["text"]
    assert partial and whole.startswith(partial) and len(partial) < len(whole)

    plain = faulty.session().post(deployment["url"] + "/predict", json=COMPLETION)
    assert plain.status_code == 500
    assert plain.json()["object"] == "error" and plain.json()["type"] == "InternalServerError"

    stats = faulty.deployment_stats(deployment["id"])
    assert stats["faults"] == {"midstream": 2}
    assert stats["succeeded"] == 0
    assert stats["by_status"] == {"200": 1, "500": 1}
