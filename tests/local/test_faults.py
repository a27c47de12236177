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
    return "ok" if lines and lines[-1] == b"data: [DONE]" else "cut"


def test_each_fault_kind_at_its_rate_and_counted(backend_factory):
    rates = {"429": 0.1, "500": 0.1, "503": 0.1, "reset": 0.1, "cut": 0.1}
    flags = [arg for kind, rate in rates.items() for arg in ("--fault", f"{kind}:{rate}")]
    backend = backend_factory(*flags, "--seed", "11", "--retry-after", "2")
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
    for status in ("429", "500", "503"):
        assert stats["by_status"][status] == seen[status]
    assert stats["succeeded"] == seen["ok"]
    assert stats["by_status"]["200"] == seen["ok"] + seen["cut"]  # a cut answer did send its 200


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
    for _ in range(2):  # two slow streams hold both slots
        response = backend.session().post(
            stream_url, json={**COMPLETION, "max_tokens": 200, "stream": True}, stream=True
        )
        assert response.status_code == 200
        next(response.iter_lines())
        held.append(response)
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
    for response in held:
        response.close()
    # once the server notices the closed streams (at its next token write), the slots are free again
    deadline = time.monotonic() + 30
    while session.post(deployment["url"] + "/predict", json=COMPLETION).status_code != 200:
        assert time.monotonic() < deadline, "capacity was not released after the streams closed"
        time.sleep(0.05)
