"""The platform's front end: 500 Service Timeout past 60 s (simulated), 429s on LB bandwidth and tenancy rate."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import oci
import pytest

# The platform's answers, as its documentation words them (model-dep-predict-endpoint.htm,
# model-dep-invoke-throttling.htm; read 2026-11-29).
SERVICE_TIMEOUT = {
    "code": "InternalServerError",
    "message": "Service Timeout: a 60 second timeout for the /predict endpoint exists. This timeout value can't be "
    "changed.",
}
LB_BANDWIDTH = {
    "code": "TooManyRequests",
    "message": "LB bandwidth limit exceeded. Consider increasing the provisioned load balancer bandwidth to avoid "
    "these errors.",
}
TENANCY_RATE = {
    "code": "TooManyRequests",
    "message": "Tenancy request-rate limit exceeded. Please use the OCI Console to submit a support ticket for your "
    "tenancy to increase the request limit.",
}
SCALE = 20.0
# One sequence of a 7B BF16 model on an A10: at most 41.4 tokens/s (14.5 GB of weights read per decode step from
# its 600 GB/s), in practice about 60-75% of that; 25 is a floor.
A10_7B_TOK_S = (25.0, 41.4)


def _body(max_tokens: int, **extra) -> dict:
    return {"model": "odsc-llm", "prompt": "a long answer", "max_tokens": max_tokens, "ignore_eos": True, **extra}


def test_a_predict_whose_queue_wait_and_generation_pass_60_s_gets_500_and_is_aborted(backend_factory):
    backend = backend_factory("--serving", "gpu", "--time-scale", str(SCALE))
    deployment = backend.create_deployment(params="--max-num-seqs 1")
    url = deployment["url"] + "/predict"
    first_tokens = 1200  # 29-48 s simulated: within the limit alone
    second_tokens = 1800  # 43-72 s more, and it waits for the first: past 60 s
    slowest, fastest = A10_7B_TOK_S
    assert first_tokens / slowest < 60 < (first_tokens + second_tokens) / fastest

    def post(max_tokens: int):
        return backend.session().post(url, json=_body(max_tokens))

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, first_tokens)
        time.sleep(0.2)
        second = pool.submit(post, second_tokens)
        first, second = first.result(), second.result()
    assert first.status_code == 200 and first.json()["usage"]["completion_tokens"] == first_tokens
    assert second.status_code == 500 and second.json() == SERVICE_TIMEOUT
    assert second.headers["opc-request-id"]
    stats = backend.deployment_stats(deployment["id"])
    assert stats["timeouts"] == 1 and stats["by_status"] == {"200": 1, "500": 1}
    # The timed-out request was aborted in the engine: it never finished its tokens, and nothing is left.
    assert first_tokens <= stats["generation_tokens"] < first_tokens + second_tokens
    assert stats["running"] == 0 and stats["waiting"] == 0 and stats["kv_cache_usage"] == 0


def test_a_stream_may_outlast_60_s_once_started_but_not_wait_that_long_for_its_first_byte(backend_factory):
    backend = backend_factory("--serving", "gpu", "--time-scale", str(SCALE))
    deployment = backend.create_deployment(params="--max-num-seqs 1")
    client = backend.model_deployment_client()
    long_tokens = 2800  # past 60 s simulated even at the A10's top speed
    assert long_tokens / A10_7B_TOK_S[1] > 60

    def stream(max_tokens: int):
        return client.predict_with_response_stream(deployment["id"], _body(max_tokens, stream=True))

    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(stream, long_tokens)
        time.sleep(0.2)
        queued = pool.submit(stream, 10)
        with pytest.raises(oci.exceptions.ServiceError) as refused:
            queued.result()
        events = [event.data for event in running.result().data.events()]
    assert refused.value.status == 500 and refused.value.message == SERVICE_TIMEOUT["message"]
    assert events[-1] == "[DONE]" and len(events) == long_tokens + 1
    assert backend.deployment_stats(deployment["id"])["timeouts"] == 1


def test_the_tenancy_request_rate_answers_429_across_deployments(backend_factory):
    backend = backend_factory("--tenancy-rps", "5")
    first = backend.create_deployment("first")
    second = backend.create_deployment("second")
    urls = [first["url"] + "/predict", second["url"] + "/predict"] * 10

    sessions = [backend.session() for _ in urls]
    started = time.monotonic()
    with ThreadPoolExecutor(len(urls)) as pool:
        answers = list(pool.map(lambda session, url: session.post(url, json=_body(1)), sessions, urls))
    elapsed = time.monotonic() - started
    refused = [a for a in answers if a.status_code == 429]
    assert all(a.status_code in (200, 429) for a in answers)
    # A burst of 5, then 5 more per second.
    assert len(answers) - len(refused) <= 5 + 5 * elapsed + 1, elapsed
    assert refused and all(a.json() == TENANCY_RATE for a in refused)
    stats = [backend.deployment_stats(d["id"]) for d in (first, second)]
    assert sum(s["throttles"].get("tenancy_rate", 0) for s in stats) == len(refused)
    time.sleep(0.5)
    assert sessions[0].post(urls[0], json=_body(1)).status_code == 200  # the rate refills


def test_the_deployment_bandwidth_answers_429_beyond_bandwidth_mbps(backend_factory):
    backend = backend_factory()
    narrow = backend.create_deployment("narrow", bandwidth_mbps=1)  # 125,000 bytes per second
    wide = backend.create_deployment("wide")  # the default 10 Mbps
    session = backend.session()
    # ~300 kB of request: whitespace is one token for the builtin tokenizer, so the prompt stays short.
    big = _body(1, prompt="a" + " " * 300_000 + "b")
    assert session.post(narrow["url"] + "/predict", json=big).status_code == 200
    refused = session.post(narrow["url"] + "/predict", json=_body(1))
    assert refused.status_code == 429 and refused.json() == LB_BANDWIDTH
    assert backend.deployment_stats(narrow["id"])["throttles"] == {"bandwidth": 1}
    # Another deployment has its own load balancer; the narrow one drains at 125 kB/s.
    assert session.post(wide["url"] + "/predict", json=_body(1)).status_code == 200
    time.sleep(1.8)
    assert session.post(narrow["url"] + "/predict", json=_body(1)).status_code == 200


def test_the_bandwidth_counts_response_bytes(backend_factory):
    backend = backend_factory()
    narrow = backend.create_deployment("narrow", bandwidth_mbps=1)
    session = backend.session()
    # 16 choices of 2,000 tokens: a ~160 kB answer to a ~100 byte request.
    answer = session.post(narrow["url"] + "/predict", json=_body(2000, n=16))
    assert answer.status_code == 200 and len(answer.content) > 125_000
    refused = session.post(narrow["url"] + "/predict", json=_body(1))
    assert refused.status_code == 429 and refused.json() == LB_BANDWIDTH
