"""The endpoint client against the local backend over loopback: requests, streams, retries and errors."""

from __future__ import annotations

import dataclasses

import pytest

from odsc_magics import client as client_module
from odsc_magics.client import CHAT, COMPLETIONS, Endpoint, Result, Stream, connect
from odsc_magics.config import LLMSettings
from odsc_magics.errors import (
    DeploymentNotActiveError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    ServerError,
    StreamInterruptedError,
    ValidationError,
)
from odsc_magics.retry import Retry, RetryPolicy, parse_retry_after, run_with_retries
from odsc_magics.sse import iter_data
from odsc_magics.targets import split_url

UNKNOWN_OCID = (
    "ocid1.datasciencemodeldeployment.oc1.iad.aaaaaaaaunknowndeployment0000000000000000000000000000"
)


def local_settings(backend, **traits) -> LLMSettings:
    return LLMSettings(backend="local", local_dir=str(backend.state_dir), **traits)


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same retry logic, tiny delays (the tests assert behaviour, never timing)."""

    class QuickPolicy(RetryPolicy):
        def __init__(self, max_retries: int = 6, **_: object) -> None:
            super().__init__(max_retries=max_retries, base=0.001, cap=0.005, retry_after_cap=0.01)

    monkeypatch.setattr(client_module, "RetryPolicy", QuickPolicy)


def assert_no_secret(text: str) -> None:
    for marker in ("BEGIN", "PRIVATE KEY", 'algorithm="rsa', "keyId", "authorization"):
        assert marker not in text


# -- requests as built --


def test_build_request_completion_defaults(backend) -> None:
    endpoint = connect(backend.deployment["url"], settings=local_settings(backend))
    request = endpoint.build_request(prompt="Hi")
    assert request["url"] == backend.deployment["url"] + "/predict"
    assert request["route"] == COMPLETIONS
    assert request["headers"]["route"] == COMPLETIONS
    assert "authorization" not in {k.lower() for k in request["headers"]}
    assert request["body"] == {"model": "odsc-llm", "prompt": "Hi", "max_tokens": 512}


def test_build_request_stream_chat_and_settings(backend) -> None:
    settings = local_settings(backend, max_tokens=64, temperature=0.2, model="my-model")
    endpoint = connect(backend.chat_deployment["url"], settings=settings)
    messages = [{"role": "user", "content": "Hi"}]
    request = endpoint.build_request(messages=messages, stream=True, top_p=0.9, temperature=None)
    assert request["url"].endswith("/predictWithResponseStream")
    assert request["route"] == CHAT
    headers = request["headers"]
    assert headers["accept"] == "text/event-stream"
    assert headers["enable-streaming"] == "true"
    body = request["body"]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["model"] == "my-model"
    assert body["max_tokens"] == 64
    assert "temperature" not in body  # an explicit None means "do not send"
    assert body["top_p"] == 0.9
    assert endpoint.build_request(prompt="x")["body"]["temperature"] == 0.2


# -- targets --


def test_split_url_forms() -> None:
    base = (
        "https://modeldeployment.us-ashburn-1.oci.customer-oci.com/ocid1.datasciencemodeldeployment.oc1.iad.x"
    )
    for url in (base, base + "/", base + "/predict", base + "/predictWithResponseStream/v1/chat/completions"):
        assert split_url(url) == (base, "ocid1.datasciencemodeldeployment.oc1.iad.x")


def test_connect_by_ocid_url_predict_url_and_name(backend) -> None:
    settings = local_settings(backend)
    deployment = backend.deployment
    for target in (deployment["id"], deployment["url"], deployment["url"] + "/predict", deployment["name"]):
        endpoint = connect(target, settings=settings)
        assert endpoint.url == deployment["url"].rstrip("/")
        assert endpoint.deployment_id == deployment["id"]
    assert connect(deployment["name"], settings=settings).name == "test-llm"


def test_connect_without_target_uses_setting(backend) -> None:
    endpoint = connect(settings=local_settings(backend, deployment="test-chat"))
    assert endpoint.deployment_id == backend.chat_deployment["id"]


def test_model_ocid_is_refused(backend) -> None:
    with pytest.raises(ValidationError, match="not a model deployment OCID"):
        connect("ocid1.datasciencemodel.oc1.iad.abc", settings=local_settings(backend))


def test_unknown_name_suggests_listing(backend) -> None:
    with pytest.raises(NotFoundError) as info:
        connect("no-such-deployment", settings=local_settings(backend))
    assert "%llm_deploy list" in info.value.hint


def test_ambiguous_name_lists_candidates(backend_factory) -> None:
    running = backend_factory()
    first = running.create_deployment("twin")
    second = running.create_deployment("twin")
    with pytest.raises(ValidationError) as info:
        connect("twin", settings=local_settings(running))
    text = str(info.value)
    assert first["id"] in text and second["id"] in text and "ACTIVE" in text


# -- answers --


def test_complete_result(backend) -> None:
    result = connect("test-llm", settings=local_settings(backend)).complete("Hello there", max_tokens=12)
    assert isinstance(result, Result)
    assert result.text
    assert result.finish_reason == "length"
    assert result.usage["completion_tokens"] == 12
    assert result.route == COMPLETIONS
    assert result.deployment == backend.deployment["id"]
    assert result.params == {"max_tokens": 12}
    assert result.opc_request_id
    assert result.latency_s > 0 and result.ttft_s is None
    assert result.attempts == 1 and not result.interrupted


def test_chat_result(backend) -> None:
    endpoint = connect(backend.chat_deployment["id"], settings=local_settings(backend))
    result = endpoint.chat([{"role": "user", "content": "Hello"}], max_tokens=8)
    assert result.text and result.route == CHAT
    assert result.usage["total_tokens"] == result.usage["prompt_tokens"] + result.usage["completion_tokens"]


def test_stream_complete_yields_deltas_and_usage(backend) -> None:
    stream = connect("test-llm", settings=local_settings(backend)).stream_complete("Tell me", max_tokens=10)
    assert isinstance(stream, Stream)
    deltas = list(stream)
    assert len(deltas) >= 2
    result = stream.result
    assert result is not None and result.text == "".join(deltas)
    assert result.usage["completion_tokens"] == 10 and "estimated" not in result.usage
    assert result.ttft_s is not None and result.ttft_s <= result.latency_s
    assert not result.interrupted


def test_stream_chat(backend) -> None:
    endpoint = connect("test-chat", settings=local_settings(backend))
    with endpoint.stream_chat([{"role": "user", "content": "Hi"}], max_tokens=6) as stream:
        text = "".join(stream)
    assert text == stream.result.text and stream.result.route == CHAT


def test_stream_close_keeps_partial_text(backend) -> None:
    stream = connect("test-llm", settings=local_settings(backend)).stream_complete("Story", max_tokens=40)
    first = next(iter(stream))
    result = stream.close()
    assert result.interrupted and result.text.startswith(first)


def test_wrong_model_name_hint(backend) -> None:
    endpoint = connect("test-llm", settings=local_settings(backend))
    with pytest.raises(NotFoundError) as info:
        endpoint.complete("Hi", model="not-served", max_tokens=2)
    assert "odsc-llm" in info.value.hint


def test_payload_too_large(backend) -> None:
    endpoint = connect("test-llm", settings=local_settings(backend))
    with pytest.raises(PayloadTooLargeError) as info:
        endpoint.complete("x" * (10 * 1024 * 1024 + 10), max_tokens=1)
    assert info.value.status == 413 and "10 MB" in str(info.value)


# -- not found / not active --


def test_unknown_deployment_ocid_gets_404_hint(backend) -> None:
    endpoint = connect(UNKNOWN_OCID, settings=local_settings(backend))
    with pytest.raises(NotFoundError) as info:
        endpoint.complete("Hi", max_tokens=1)
    assert info.value.status == 404
    assert "region" in info.value.hint and "MODEL_DEPLOYMENT_PREDICT" in info.value.hint


def test_unknown_deployment_url_gets_url_hint(backend) -> None:
    url = f"{backend.endpoint}/{UNKNOWN_OCID}/predict"
    with pytest.raises(NotFoundError) as info:
        connect(url, settings=local_settings(backend)).complete("Hi", max_tokens=1)
    assert "OCID in the URL" in info.value.hint


def test_inactive_deployment(backend_factory) -> None:
    running = backend_factory()
    deployment = running.create_deployment("sleepy")
    client = running.data_science_client()
    work_request = client.deactivate_model_deployment(deployment["id"]).headers["opc-work-request-id"]
    running.wait_work_request(work_request)
    endpoint = connect("sleepy", settings=local_settings(running))
    for call in (lambda: endpoint.complete("Hi"), lambda: list(endpoint.stream_complete("Hi"))):
        with pytest.raises(DeploymentNotActiveError) as info:
            call()
        assert info.value.state == "INACTIVE"
        assert "%llm_deploy activate sleepy" in info.value.hint
    from odsc_magics.control_plane import get_deployment

    deployment = get_deployment("sleepy", settings=local_settings(running)).activate()
    assert deployment.state == "ACTIVE"
    assert endpoint.complete("Hi", max_tokens=2).text


# -- retries --


@pytest.mark.parametrize("fault", ["429:0.5", "503:0.5", "500:0.3", "reset:0.5", "cut:0.5"])
def test_faults_are_retried_until_success(backend_factory, fast_retries, fault: str) -> None:
    running = backend_factory("--fault", fault, "--seed", "7")
    deployment = running.create_deployment("flaky")
    endpoint = connect(deployment["id"], settings=local_settings(running))
    results = [endpoint.complete(f"question {i}", max_tokens=4) for i in range(8)]
    assert all(r.text and not r.interrupted for r in results)
    stats = running.deployment_stats(deployment["id"])
    assert sum(stats["faults"].values()) > 0
    assert sum(r.attempts for r in results) == stats["predict_requests"]


@pytest.mark.parametrize("fault", ["429:0.5", "503:0.5", "reset:0.5"])
def test_stream_faults_before_first_token_are_retried(backend_factory, fast_retries, fault: str) -> None:
    running = backend_factory("--fault", fault, "--seed", "3")
    deployment = running.create_deployment("flaky-stream")
    endpoint = connect(deployment["id"], settings=local_settings(running))
    for i in range(6):
        stream = endpoint.stream_complete(f"question {i}", max_tokens=4)
        text = "".join(stream)
        assert text and stream.result.text == text and not stream.result.interrupted
    assert sum(running.deployment_stats(deployment["id"])["faults"].values()) > 0


def test_cut_stream_keeps_partial_text_and_is_not_replayed(backend_factory, fast_retries) -> None:
    running = backend_factory("--fault", "cut:1.0", "--seed", "1")
    deployment = running.create_deployment("cutter")
    stream = connect(deployment["id"], settings=local_settings(running)).stream_complete("Hi", max_tokens=20)
    shown: list[str] = []
    with pytest.raises(StreamInterruptedError) as info:
        for delta in stream:
            shown.append(delta)
    partial = info.value.partial
    assert shown and partial.text == "".join(shown)
    assert partial.interrupted and stream.result is partial
    assert "partial text is kept" in str(info.value)
    assert running.deployment_stats(deployment["id"])["predict_requests"] == 1


def test_rate_limit_after_retries(backend_factory, fast_retries) -> None:
    running = backend_factory("--fault", "429:1.0", "--retry-after", "3")
    deployment = running.create_deployment("busy")
    endpoint = connect(deployment["id"], settings=local_settings(running, max_retries=2))
    with pytest.raises(RateLimitError) as info:
        endpoint.complete("Hi", max_tokens=2)
    assert info.value.status == 429 and info.value.retry_after == 3.0
    with pytest.raises(RateLimitError):
        list(endpoint.stream_complete("Hi", max_tokens=2))
    assert running.deployment_stats(deployment["id"])["predict_requests"] == 6
    with pytest.raises(RateLimitError):
        endpoint.complete("Hi", max_tokens=2, max_retries=0)
    assert running.deployment_stats(deployment["id"])["predict_requests"] == 7


def test_server_error_after_retries(backend_factory, fast_retries) -> None:
    running = backend_factory("--fault", "503:1.0")
    deployment = running.create_deployment("down")
    with pytest.raises(ServerError) as info:
        connect(deployment["id"], settings=local_settings(running, max_retries=1)).complete("Hi")
    assert info.value.status == 503 and "unavailable" in info.value.hint
    assert_no_secret(str(info.value))


# -- units --


def test_retry_policy_delays() -> None:
    policy = RetryPolicy(max_retries=3, base=0.5, cap=2.0, retry_after_cap=5.0)
    for n in range(10):
        assert 0.0 <= policy.delay(n) <= 2.0
    assert policy.delay(0, retry_after=4.0) >= 4.0
    assert policy.delay(0, retry_after=100.0) == 5.0


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_run_with_retries_is_bounded() -> None:
    calls: list[int] = []
    waits: list[float] = []

    def attempt(number: int) -> str:
        calls.append(number)
        raise Retry(ServerError("boom"), retry_after=None)

    with pytest.raises(ServerError):
        run_with_retries(attempt, RetryPolicy(max_retries=2), sleep=waits.append)
    assert calls == [1, 2, 3] and len(waits) == 2
    assert run_with_retries(lambda n: n, RetryPolicy(max_retries=0)) == 1


def test_sse_frames_across_chunk_boundaries() -> None:
    chunks = [b'data: {"a"', b": 1}\n\ndata: [DO", b"NE]\n\n", b"data: partial"]
    assert list(iter_data(chunks)) == [b'{"a": 1}', b"[DONE]"]
    assert list(iter_data([b": comment\nevent: x\ndata:{}\r\n\r\n"])) == [b"{}"]


def test_result_is_a_dataclass_with_text_str() -> None:
    fields = {f.name for f in dataclasses.fields(Result)}
    assert {"text", "finish_reason", "usage", "latency_s", "ttft_s", "opc_request_id", "attempts"} <= fields
    result = Result("hi", None, {}, 0.1, None, None, COMPLETIONS, "x")
    assert str(result) == "hi"


def test_error_frame_mid_stream_keeps_the_partial_text(backend, backend_factory) -> None:
    faulty = backend_factory("--fault", "midstream:1")
    faulty.create_deployment("test-llm")
    prompt = "Tell me about the error frames of a stream"
    stream = connect("test-llm", settings=local_settings(faulty)).stream_complete(prompt, max_tokens=12)
    received: list[str] = []
    with pytest.raises(StreamInterruptedError) as caught:
        for delta in stream:
            received.append(delta)
    error = caught.value
    assert "model server error: EngineCore encountered an issue" in error.message
    assert error.partial.interrupted and error.partial.text == "".join(received) == stream.text
    assert error.opc_request_id
    whole = connect("test-llm", settings=local_settings(backend)).complete(prompt, max_tokens=12).text
    assert received and whole.startswith(error.partial.text) and len(error.partial.text) < len(whole)


def test_endpoint_is_plain_python() -> None:
    import subprocess
    import sys

    code = "import odsc_magics.client, sys; assert not any(m.startswith('IPython') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert Endpoint.__module__ == "odsc_magics.client"
