"""One retry policy: the client, its streams and batches classify each failure alike and back off alike."""

from __future__ import annotations

import socket
import threading
from types import SimpleNamespace

import pytest
from aiohttp import web
from stub_server import serve_in_thread

from odsc_magics import client as client_module
from odsc_magics import errors
from odsc_magics.auth import Credentials
from odsc_magics.batch.runner import CONNECT_FAILURES_TO_STOP, BatchRunner, Job, Outcome
from odsc_magics.client import Endpoint
from odsc_magics.config import LLMSettings
from odsc_magics.context import Context
from odsc_magics.retry import Failure, RetryPolicy, classify_failure, classify_status, run_with_retries

# The platform's messages, as documented (read 2026-11-29):
# docs.oracle.com/en-us/iaas/Content/data-science/using/model-dep-invoke-throttling.htm
TENANCY_RATE = (
    "Tenancy request-rate limit exceeded. Please use the OCI Console to submit a support ticket for your tenancy "
    "to increase the request limit."
)
BANDWIDTH = (
    "LB bandwidth limit exceeded. Consider increasing the provisioned load balancer bandwidth to avoid these errors."
)
# docs.oracle.com/en-us/iaas/Content/data-science/using/model-dep-predict-endpoint.htm
SERVICE_TIMEOUT = (
    "Service Timeout: a 60 second timeout for the /predict endpoint exists. This timeout value can't be changed."
)

# (status, code, message) the endpoint answers -> (action, kind) every caller must take it for.
ANSWERS = {
    "400": ((400, "InvalidParameter", "max_tokens must be at least 1"), ("final", "bad request")),
    "401": ((401, "NotAuthenticated", "The required information to complete authentication was not provided."),
            ("fatal", "auth")),
    "404": ((404, "NotAuthorizedOrNotFound", "Authorization failed or requested resource not found."),
            ("fatal", "not found")),
    "408": ((408, "RequestTimeout", "Request timed out"), ("retry", "transport")),
    "409": ((409, "IncorrectState", "The model deployment is INACTIVE."), ("fatal", "inactive")),
    "413": ((413, "PayloadTooLarge", "Payload too large"), ("final", "too large")),
    "429 tenancy rate": ((429, "TooManyRequests", TENANCY_RATE), ("throttle", "rate")),
    "429 bandwidth": ((429, "TooManyRequests", BANDWIDTH), ("throttle", "bandwidth")),
    "429 other": ((429, "TooManyRequests", "Too many requests"), ("throttle", "concurrency")),
    "500 service timeout": ((500, "InternalServerError", SERVICE_TIMEOUT), ("throttle", "timeout")),
    "500": ((500, "InternalServerError", "Internal server error"), ("retry", "server")),
    "501": ((501, "NotImplemented", "Not implemented"), ("final", "not implemented")),
    "502": ((502, "BadGateway", "Bad gateway"), ("retry", "server")),
    "503": ((503, "ServiceUnavailable", "Model server unavailable"), ("throttle", "concurrency")),
    "504": ((504, "GatewayTimeout", "Gateway timeout"), ("retry", "server")),
}  # fmt: skip
# Failures without a status: the connection reset before an answer, an answer cut short, nothing listening.
TRANSPORT = {
    "reset": ("retry", "transport"),
    "cut": ("retry", "cut"),
    "refused": ("unreachable", "refused"),
}
EXPECTED = {**{name: expected for name, (_, expected) in ANSWERS.items()}, **TRANSPORT}
ROWS = 5


class Stub:
    """A model deployment's data plane that answers every request with one failure, counting them."""

    def __init__(self, failure: str) -> None:
        self.failure = failure
        self.requests = 0
        self.lock = threading.Lock()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        with self.lock:
            self.requests += 1
        await request.read()
        if self.failure == "reset":
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionResetError("reset by the stub")
        if self.failure == "cut":
            if request.path.endswith("Stream"):
                reply = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await reply.prepare(request)
                await reply.write(b'data: {"choices": [{"te')
                return reply  # the stream ends here, mid-event and without [DONE]
            return web.Response(body=b'{"choices": [{"te', content_type="application/json")
        (status, code, message), _ = ANSWERS[self.failure]
        return web.json_response({"code": code, "message": message}, status=status)


def stub_app(stub: Stub) -> web.Application:
    app = web.Application()
    app.router.add_post("/predict", stub.handle)
    app.router.add_post("/predictWithResponseStream", stub.handle)
    return app


def endpoint_at(url: str, max_retries: int = 1) -> Endpoint:
    credentials = Credentials("api_key", lambda request: request, region="us-ashburn-1", description="test",
                              oci_config={})  # fmt: skip
    context = Context(backend="oci", region="us-ashburn-1", compartment_id=None, project_id=None,
                      credentials=credentials)  # fmt: skip
    return Endpoint(url, context=context, settings=LLMSettings(max_retries=max_retries, timeout=10.0))


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The client's waits between attempts (each is one retry), all made zero."""
    waited: list[int] = []

    class Recorded(RetryPolicy):
        def delay(self, retry_number: int, retry_after: float | None = None) -> float:
            waited.append(retry_number)
            return 0.0

    monkeypatch.setattr(client_module, "RetryPolicy", Recorded)
    return waited


def client_sees(endpoint: Endpoint, waits: list[int], *, stream: bool) -> tuple[int, Failure]:
    """How many retries one call made, and how the error it raised in the end is classified."""
    before = len(waits)
    with pytest.raises(errors.OdscMagicsError) as raised:
        if stream:
            list(endpoint.stream_complete("hi", max_tokens=4))
        else:
            endpoint.complete("hi", max_tokens=4)
    return len(waits) - before, classify_failure(raised.value)


def batch_of(endpoint: Endpoint) -> tuple[BatchRunner, dict[int, Outcome]]:
    """A batch as predict_frame runs it: one attempt per client call, the runner deciding about retries."""
    delivered: dict[int, Outcome] = {}
    runner = BatchRunner(lambda job: endpoint.complete(job.request, max_retries=0, max_tokens=4),
                         lambda job, outcome: delivered.setdefault(job.position, outcome),
                         concurrency=1, max_retries=1)  # fmt: skip
    runner.retry_policy = RetryPolicy(max_retries=1, base=0.0, cap=0.0, retry_after_cap=0.0)
    runner.run(Job(i, f"q{i}") for i in range(ROWS))
    return runner, delivered


@pytest.mark.parametrize("name", list(EXPECTED))
def test_the_client_the_stream_and_the_batch_classify_each_failure_alike(waits, name: str) -> None:
    action, kind = EXPECTED[name]
    retried = action in ("throttle", "retry")
    retried_alone = retried and kind != "timeout"  # a single call does not wait out another 60 s
    if name in ANSWERS:
        (status, code, message), _ = ANSWERS[name]
        failure = classify_status(status, message, code=code)
        assert (failure.action, failure.kind) == (action, kind)
    stub = Stub(name)
    with serve_in_thread(stub_app(stub)) as url:
        endpoint = endpoint_at(closed_port_url() if name == "refused" else url)

        retries, failure = client_sees(endpoint, waits, stream=False)
        assert (failure.action, failure.kind) == (action, kind)
        assert retries == (1 if retried_alone else 0)

        retries, failure = client_sees(endpoint, waits, stream=True)
        assert (failure.action, failure.kind) == (action, kind)
        assert retries == (1 if retried_alone else 0)
        if name != "refused":
            assert stub.requests == (4 if retried_alone else 2)

        stub.requests = 0
        runner, delivered = batch_of(endpoint)
    attempts = [delivered[i].attempts for i in sorted(delivered)]
    if action == "fatal":  # the batch stops at once: the other rows are not sent
        assert classify_failure(runner.fatal) == Failure(action, kind)
        assert runner.tally.requests == 1 and attempts == [1]
        return
    assert sorted(delivered) == list(range(ROWS))
    if action == "unreachable":
        assert runner.unreachable is not None and runner.tally.requests == CONNECT_FAILURES_TO_STOP
    else:
        assert runner.fatal is None and runner.unreachable is None
        assert attempts == [2 if retried else 1] * ROWS
        assert stub.requests == sum(attempts)
        assert runner.tally.throttled == (sum(attempts) if action == "throttle" else 0)


def test_501_is_retried_by_nobody(waits) -> None:
    stub = Stub("501")
    with serve_in_thread(stub_app(stub)) as url:
        endpoint = endpoint_at(url, max_retries=3)
        with pytest.raises(errors.ServerError) as raised:
            endpoint.complete("hi")
        assert raised.value.status == 501 and stub.requests == 1
        with pytest.raises(errors.ServerError):
            list(endpoint.stream_complete("hi"))
        assert stub.requests == 2 and waits == []
        _, delivered = batch_of(endpoint)
    assert [delivered[i].attempts for i in range(ROWS)] == [1] * ROWS
    assert all("HTTP 501" in (delivered[i].error or "") for i in range(ROWS))
    assert stub.requests == 2 + ROWS


def test_408_request_timeout_is_retried_by_everyone(waits) -> None:
    stub = Stub("408")
    with serve_in_thread(stub_app(stub)) as url:
        endpoint = endpoint_at(url, max_retries=2)
        with pytest.raises(errors.BadRequestError):
            endpoint.complete("hi")
        assert stub.requests == 3 and len(waits) == 2


class Flaky:
    """Fails the first ``failures`` requests with a 503, then streams an answer."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        await request.read()
        if self.requests <= self.failures:
            return web.json_response({"code": "ServiceUnavailable", "message": "Model server unavailable"},
                                     status=503)  # fmt: skip
        reply = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await reply.prepare(request)
        for text in ("Hel", "lo"):
            await reply.write(f'data: {{"choices": [{{"index": 0, "text": "{text}"}}]}}\n\n'.encode())
        await reply.write(b'data: {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}\n\n')
        await reply.write(b"data: [DONE]\n\n")
        return reply


def test_a_stream_failing_before_its_first_token_is_retried_through_the_shared_policy(monkeypatch) -> None:
    calls: list[RetryPolicy] = []
    delays: list[tuple[int, float | None]] = []

    def shared(attempt, policy, **options):
        calls.append(policy)
        return run_with_retries(attempt, policy, sleep=lambda seconds: None, **options)

    class Recorded(RetryPolicy):
        def delay(self, retry_number: int, retry_after: float | None = None) -> float:
            delays.append((retry_number, retry_after))
            return 0.0

    monkeypatch.setattr(client_module, "run_with_retries", shared)
    monkeypatch.setattr(client_module, "RetryPolicy", Recorded)
    flaky = Flaky(failures=2)
    app = web.Application()
    app.router.add_post("/predictWithResponseStream", flaky.handle)
    with serve_in_thread(app) as url:
        stream = endpoint_at(url, max_retries=4).stream_complete("hi", max_tokens=4)
        assert "".join(stream) == "Hello"
    assert len(calls) == 1 and calls[0].max_retries == 4
    assert delays == [(0, None), (1, None)]
    assert flaky.requests == 3 and stream.result.attempts == 3 and not stream.result.interrupted


def test_the_batch_waits_as_the_shared_policy_says(monkeypatch) -> None:
    asked: list[tuple[int, float | None]] = []

    class Recorded(RetryPolicy):
        def delay(self, retry_number: int, retry_after: float | None = None) -> float:
            asked.append((retry_number, retry_after))
            return 0.0

    def send(job: Job):
        if job.attempts < 3:
            raise errors.RateLimitError("429 TooManyRequests: " + TENANCY_RATE, status=429, retry_after=0.01)
        return SimpleNamespace(text="ok", finish_reason="stop", usage={}, latency_s=0.0)

    runner = BatchRunner(send, lambda job, outcome: None, concurrency=1, max_retries=5)
    runner.retry_policy = Recorded(max_retries=5)
    runner.run([Job(0, "q")])
    assert asked == [(0, 0.01), (1, 0.01)]
    assert runner.tally.done == 1


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (errors.RateLimitError("429 TooManyRequests: " + BANDWIDTH, status=429, retry_after=2.0),
         Failure("throttle", "bandwidth", 2.0)),
        (errors.ServerError("500 InternalServerError: " + SERVICE_TIMEOUT, status=500), Failure("throttle", "timeout")),
        (errors.DeploymentNotActiveError("not ACTIVE", status=404, state="INACTIVE"), Failure("fatal", "inactive")),
        (errors.ConfigurationError("no profile"), Failure("fatal", "configuration")),
        (errors.StreamInterruptedError("cut after 3 deltas"), Failure("retry", "cut")),
        (errors.ValidationError("prompt must be a str"), Failure("final", "bad request")),
        (ConnectionResetError(104, "Connection reset by peer"), Failure("retry", "transport")),
        (ConnectionRefusedError(111, "Connection refused"), Failure("unreachable", "refused")),
        (socket.gaierror(-2, "Name or service not known"), Failure("unreachable", "unknown host")),
        (TimeoutError("timed out"), Failure("throttle", "timeout")),
        (KeyError("text"), Failure("final", "error")),
    ],
)  # fmt: skip
def test_errors_without_an_http_answer_are_classified_too(error, expected) -> None:
    assert classify_failure(error) == expected


def test_a_retry_after_reaches_the_classification_of_any_throttle(waits) -> None:
    class Busy:
        requests = 0

        async def handle(self, request: web.Request) -> web.Response:
            self.requests += 1
            return web.json_response({"code": "ServiceUnavailable", "message": "Model server unavailable"},
                                     status=503, headers={"Retry-After": "7"})  # fmt: skip

    busy = Busy()
    app = web.Application()
    app.router.add_post("/predict", busy.handle)
    with serve_in_thread(app) as url, pytest.raises(errors.ServerError) as raised:
        endpoint_at(url).complete("hi", max_retries=0)
    assert classify_failure(raised.value) == Failure("throttle", "concurrency", 7.0)
