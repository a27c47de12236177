"""The endpoint client: completions and chat over /predict and /predictWithResponseStream, with retries.

Plain Python: imports no IPython. A stream is retried only before its first text delta; once text has
been yielded it is never replayed: a cut keeps the partial text and is reported as interrupted.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from odsc_magics import arguments
from odsc_magics.config import LLMSettings, current_settings, default_target, resolve
from odsc_magics.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    DeploymentNotActiveError,
    EndpointUnreachableError,
    NotFoundError,
    OdscMagicsError,
    PayloadTooLargeError,
    RateLimitError,
    ServerError,
    StreamInterruptedError,
    ValidationError,
)
from odsc_magics.predict_limits import TENANCY_RPS
from odsc_magics.retry import (
    Failure,
    Retry,
    RetryPolicy,
    classify_failure,
    classify_status,
    parse_retry_after,
    run_with_retries,
)
from odsc_magics.sse import DONE, iter_data, raw_chunks
from odsc_magics.vllm_container import BANDWIDTH_MBPS

__all__ = ["CHAT", "COMPLETIONS", "Endpoint", "Result", "Stream", "connect"]

log = logging.getLogger(__name__)

COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"
CONNECT_TIMEOUT = 10.0
PREDICT_POLICY = "allow group <your-group> to {MODEL_DEPLOYMENT_PREDICT} in compartment <compartment>"
_CLIENT_OPTIONS = ("timeout", "max_retries")
_STATES = ("CREATING", "ACTIVE", "DELETING", "FAILED", "INACTIVE", "UPDATING", "DELETED", "NEEDS_ATTENTION")
_STATE_RE = re.compile(r"\b(" + "|".join(_STATES) + r")\b")


@dataclass
class Result:
    """One answer: text, why it ended, token usage, timings and where it came from."""

    text: str
    finish_reason: str | None
    usage: dict
    latency_s: float
    ttft_s: float | None
    opc_request_id: str | None
    route: str
    deployment: str
    params: dict = field(default_factory=dict)
    interrupted: bool = False
    attempts: int = 1
    parsed: Any = None  # the typed value of a structured answer (odsc_magics.structured_output)

    def __str__(self) -> str:
        return self.text


def _not_active_hint(state: str | None, name: str) -> str:
    from shlex import quote

    name = quote(name)  # the hints are commands to copy: a name with spaces stays one argument
    if state in ("CREATING", "UPDATING"):
        return f"It is {state}: wait until it is ACTIVE (Deployment.wait(), or `%llm_deploy status {name}`)."
    if state in ("FAILED", "NEEDS_ATTENTION"):
        return f"It is {state}: see its work request errors and logs, then deploy again."
    if state in ("DELETING", "DELETED"):
        return "It is being deleted or is gone: deploy the model again (odsc_magics.deploy or `%llm_deploy`)."
    return f"Activate it with `%llm_deploy activate {name}` (or Deployment.activate())."


def _error_body(resp: Any) -> tuple[str | None, str]:
    """(code, message) of an error reply: OCI {"code","message"}, vLLM {"object":"error"} / {"error":{}}."""
    try:
        body = resp.json()
    except ValueError:
        return None, (resp.text or resp.reason or "").strip()[:500]
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        code = inner.get("code") if isinstance(inner.get("code"), str) else inner.get("type")
        message = inner.get("message") or inner.get("detail") or json.dumps(body)[:500]
        return code, str(message)
    return None, str(body)[:500]


class Endpoint:
    """A model deployment's data plane; create it with :func:`connect`."""

    def __init__(
        self,
        url: str,
        *,
        deployment_id: str | None = None,
        name: str | None = None,
        context: Any = None,
        settings: LLMSettings | None = None,
        kind: str = "url",
    ) -> None:
        from odsc_magics.context import get_context

        self.url = arguments.text("url", url, what="a model deployment URL (a str)").rstrip("/")
        self.deployment_id = deployment_id
        self.name = name
        self.kind = kind
        self.settings = settings if settings is not None else current_settings()
        self.context = context if context is not None else get_context(self.settings)

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"<Endpoint{label} {self.deployment_id or self.url}>"

    @property
    def label(self) -> str:
        """How errors name this endpoint."""
        return self.name or self.deployment_id or self.url

    # -- requests --

    def _setting(self, name: str, explicit: Any = None) -> Any:
        return resolve(name, explicit, self.settings)[0]

    def build_request(
        self,
        *,
        prompt: str | None = None,
        messages: list | None = None,
        stream: bool = False,
        **params: Any,
    ) -> dict:
        """The request as it would be sent (no authorization header): {"url", "route", "headers", "body"}."""
        _check_input(prompt, messages)
        for name in (*_CLIENT_OPTIONS, "max_tokens", "temperature"):
            if params.get(name) is not None:
                arguments.setting(name, params[name])
        params = {k: v for k, v in params.items() if k not in _CLIENT_OPTIONS}
        route = arguments.text("route", params.pop("route", None), optional=True, what="a path such as /v1/completions")
        route = route or (CHAT if messages is not None else COMPLETIONS)
        body: dict[str, Any] = {"model": self._setting("model", params.pop("model", None))}
        if messages is not None:
            body["messages"] = messages
        else:
            body["prompt"] = prompt if prompt is not None else ""
        if "max_tokens" not in params:
            body["max_tokens"] = self._setting("max_tokens")
        if "temperature" not in params:
            temperature = self._setting("temperature")
            if temperature is not None:
                body["temperature"] = temperature
        body.update({k: v for k, v in params.items() if v is not None})
        headers = {"content-type": "application/json", "route": route}
        if stream:
            body["stream"] = True
            body.setdefault("stream_options", {"include_usage": True})
            headers.update(
                {"accept": "text/event-stream", "enable-streaming": "true", "accept-encoding": "identity"}
            )
            url = f"{self.url}/predictWithResponseStream"
        else:
            headers["accept"] = "application/json"
            url = f"{self.url}/predict"
        return {"url": url, "route": route, "headers": headers, "body": body}

    def _policy(self, params: dict) -> RetryPolicy:
        return RetryPolicy(max_retries=int(self._setting("max_retries", params.get("max_retries"))))

    def _read_timeout(self, params: dict) -> float:
        return float(self._setting("timeout", params.get("timeout")))

    @staticmethod
    def _sent_params(body: dict) -> dict:
        skip = ("model", "prompt", "messages", "stream", "stream_options")
        return {k: v for k, v in body.items() if k not in skip}

    def _send(self, request: dict, data: bytes, *, stream: bool, read_timeout: float) -> Any:
        """POST once (plus one resend after a token refresh on 401); transport errors become Retry or errors."""
        import requests

        credentials = self.context.credentials
        refreshed = False
        while True:
            generation = credentials.generation
            try:
                resp = self.context.http.post(
                    request["url"],
                    data=data,
                    headers=request["headers"],
                    timeout=(CONNECT_TIMEOUT, read_timeout),
                    stream=stream,
                )
            except (
                requests.exceptions.ConnectionError,
                requests.exceptions.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                raise self._transport_error(exc, read_timeout) from None
            if resp.status_code == 401 and not refreshed and credentials.refreshable:
                resp.close()
                refreshed = True
                if self.context.refresh_signer(generation):
                    continue
            return resp

    def _transport_error(self, exc: BaseException, read_timeout: float) -> BaseException:
        """The error for a request that got no answer, wrapped in Retry when the retry policy retries it."""
        failure = classify_failure(exc)
        if failure.action == "unreachable":
            error = self.context.connect_failure(self.url, exc) or self._unreachable(failure.kind, retried=False)
        elif failure.kind == "timeout":
            error = EndpointUnreachableError(
                f"No answer from {self.label} within {read_timeout:g} s.",
                hint="Long generations should stream (the platform ends /predict calls after 60 s); "
                "or lower max_tokens, or raise `%config LLMMagics.timeout`.",
                target=self.label,
            )
        else:
            error = self._unreachable(type(exc).__name__)
        return _retry_or_raise(error, failure)

    def _unreachable(self, why: str, *, retried: bool = True) -> EndpointUnreachableError:
        hint = "Check the URL and the network" + ("; retried with backoff." if retried else ".")
        if self.context.is_local_url(self.url):
            hint = "Is the local backend running? `odsc-magics local` starts it (see its server.log)."
        return EndpointUnreachableError(
            f"Could not reach {self.label} ({why}).", hint=hint, target=self.label
        )

    def _status_error(self, resp: Any, size: int) -> BaseException:
        """The error for a non-200 reply, wrapped in Retry when the retry policy retries it."""
        status = resp.status_code
        code, message = _error_body(resp)
        resp.close()
        rid = resp.headers.get("opc-request-id")
        failure = classify_status(
            status, message, code=code, retry_after=parse_retry_after(resp.headers.get("retry-after"))
        )
        common = {"status": status, "code": code, "opc_request_id": rid, "target": self.label}
        text = f"{status} {code or resp.reason}: {message}" if message else f"{status} {code or resp.reason}"
        if failure.retried:
            error: OdscMagicsError
            if status == 429:
                error = RateLimitError(text, retry_after=failure.retry_after, hint=_rate_limit_hint(failure), **common)
            elif status < 500:  # 408: the request did not arrive in time
                error = BadRequestError(text, hint="The request was not received in time; retried.", **common)
            else:
                hint = "The model server had a problem; it was retried with backoff. Try again shortly."
                if failure.kind == "timeout":
                    hint = (
                        "The request waited past the platform's 60 s limit (not retried: it would wait as long "
                        "again). Send fewer requests at once, or stream long generations (a stream's limit ends "
                        "at its first token)."
                    )
                elif status == 503:
                    hint = "Model server unavailable (starting, scaling or overloaded); retried with backoff."
                error = ServerError(text, hint=hint, **common)
            error.retry_after = failure.retry_after  # type: ignore[attr-defined]  # batches read it from the error
            return _retry_or_raise(error, failure)
        if status == 401:
            return AuthenticationError(f"{text} ({self.label})", hint=self.context.auth_hint(), **common)
        if status == 404:
            return self._not_found(text, code, common)
        if status == 409 and code in ("IncorrectState", None):
            found = _STATE_RE.search(message or "")
            state = found.group(1) if found else None
            return DeploymentNotActiveError(
                f"The model deployment {self.label} is not ACTIVE"
                f"{f' (it is {state})' if state else ''}: {text}",
                state=state,
                hint=_not_active_hint(state, self.name or self.deployment_id or "<name>"),
                **common,
            )
        if status == 409 and code == "ExternalServerIncorrectState":
            return ServerError(
                f"{text} ({self.label})",
                hint="The model server answered without a stream; check that its container can stream, "
                "or call the non-streaming method.",
                **common,
            )
        if status == 413:
            return PayloadTooLargeError(f"{text} (request body {size} bytes)", **common)
        if status >= 500:
            return ServerError(text, **common)
        return BadRequestError(text, hint=_bad_request_hint(status, code), **common)

    def _not_found(self, text: str, code: str | None, common: dict) -> OdscMagicsError:
        if code not in (None, "NotAuthorizedOrNotFound", "NotFound"):
            # The model server's own 404 (vLLM: "The model `x` does not exist."): the request's model name.
            return NotFoundError(
                text,
                hint=f"Deployments serve their model as {self._setting('model')!r} by default; "
                "set model=... (or `%config LLMMagics.model`).",
                **common,
            )
        if self.deployment_id:
            try:
                found = self.context.call(
                    "Reading the model deployment",
                    self.context.data_science().get_model_deployment,
                    self.deployment_id,
                ).data
            except OdscMagicsError:
                found = None
            embeddings_only = _serves_embeddings_only(found)
            if embeddings_only is not None:
                return NotFoundError(f"{text} ({self.label}): {embeddings_only}", hint=_EMBEDDINGS_HINT, **common)
            if found is not None and found.lifecycle_state != "ACTIVE":
                state = found.lifecycle_state
                return DeploymentNotActiveError(
                    f"The model deployment {self.label} is not ACTIVE (it is {state}).",
                    state=state,
                    hint=_not_active_hint(state, found.display_name),
                    **common,
                )
        policy = f"the policy that lets you use model deployments ({PREDICT_POLICY})"
        if self.kind == "url":
            hint = f"Check the OCID in the URL, the region ({self.context.region}), and {policy}."
        else:
            hint = f"Check the OCID, the region ({self.context.region}), and {policy}."
        return NotFoundError(f"{text} ({self.label})", hint=hint, **common)

    # -- non-streaming --

    def _predict(self, request: dict, params: dict) -> Result:
        data = json.dumps(request["body"], separators=(",", ":")).encode()
        read_timeout = self._read_timeout(params)
        started = time.perf_counter()

        def attempt(number: int) -> tuple[Any, dict]:
            resp = self._send(request, data, stream=False, read_timeout=read_timeout)
            if resp.status_code != 200:
                raise self._status_error(resp, len(data))
            return resp, read_json_reply(resp, self.label)

        attempts = [0]

        def counted(number: int) -> tuple[Any, dict]:
            attempts[0] = number
            return attempt(number)

        resp, payload = run_with_retries(counted, self._policy(params), on_retry=self._log_retry)
        latency = time.perf_counter() - started
        text, finish = _first_choice(payload, request["route"])
        return Result(
            text=text,
            finish_reason=finish,
            usage=dict(payload.get("usage") or {}),
            latency_s=latency,
            ttft_s=None,
            opc_request_id=resp.headers.get("opc-request-id"),
            route=request["route"],
            deployment=self.deployment_id or self.url,
            params=self._sent_params(request["body"]),
            attempts=attempts[0],
        )

    def _log_retry(self, number: int, error: BaseException, wait: float) -> None:
        log.info("attempt %d to %s failed (%s); retrying in %.2f s", number, self.label, error, wait)

    def complete(self, prompt: str, **params: Any) -> Result:
        """A text completion (route /v1/completions)."""
        _require_prompt(prompt)
        return self._predict(self.build_request(prompt=prompt, **params), params)

    def chat(self, messages: list[dict], **params: Any) -> Result:
        """A chat completion (route /v1/chat/completions)."""
        return self._predict(self.build_request(messages=messages, **params), params)

    def build_embedding_request(self, texts: Any, **params: Any) -> dict:
        """The /v1/embeddings request as it would be sent (a dry run): {"url", "route", "headers", "body"}."""
        from odsc_magics.embedding_wire import build_embedding_request

        return build_embedding_request(self, texts, **params)

    def embed(self, texts: Any, **params: Any) -> Any:
        """The vectors of ``texts`` (a str or list of str) in one request to /v1/embeddings: an ``Embeddings``."""
        from odsc_magics.embedding_wire import embed

        return embed(self, texts, **params)

    def stream_complete(self, prompt: str, **params: Any) -> Stream:
        """A streamed text completion; iterate it for text deltas."""
        _require_prompt(prompt)
        return Stream(self, self.build_request(prompt=prompt, stream=True, **params), params)

    def stream_chat(self, messages: list[dict], **params: Any) -> Stream:
        """A streamed chat completion; iterate it for text deltas."""
        return Stream(self, self.build_request(messages=messages, stream=True, **params), params)


_EMBEDDINGS_HINT = (
    "Get its vectors with Endpoint.embed(texts) or odsc_magics.embed_frame(df, column); for completions and chat, "
    "deploy a generation model."
)


def _serves_embeddings_only(deployment: Any) -> str | None:
    """Why a deployment's model server has no completions: it runs an embedding model (None otherwise)."""
    from odsc_magics.embedding_models import EMBEDDINGS_ROUTE

    config = getattr(deployment, "model_deployment_configuration_details", None)
    env = getattr(getattr(config, "environment_configuration_details", None), "environment_variables", None)
    if deployment is None or (env or {}).get("MODEL_DEPLOY_PREDICT_ENDPOINT") != EMBEDDINGS_ROUTE:
        return None
    return f"it serves an embedding model, whose server answers {EMBEDDINGS_ROUTE} only"


def _check_input(prompt: Any, messages: Any) -> None:
    if messages is not None:
        if not isinstance(messages, (list, tuple)) or not all(isinstance(m, dict) for m in messages):
            raise ValidationError(
                f"messages must be a list of dicts, not {_shown_type(messages)}.",
                hint='e.g. [{"role": "user", "content": "Hello"}]',
                target="messages",
            )
    elif prompt is not None:
        _require_prompt(prompt)


def _require_prompt(prompt: Any) -> None:
    if not isinstance(prompt, str):
        raise ValidationError(f"prompt must be a str, not {type(prompt).__name__}.", target="prompt")


def _shown_type(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        inner = sorted({type(v).__name__ for v in value if not isinstance(v, dict)})
        return f"a {type(value).__name__} holding {', '.join(inner)}" if inner else type(value).__name__
    return type(value).__name__


def read_json_reply(resp: Any, label: str) -> Any:
    """A 200 reply's JSON; one cut short or not JSON is a ServerError the retry policy tries again."""
    try:
        return resp.json()
    except ValueError:
        error = ServerError(
            f"{label} sent an incomplete or non-JSON reply.",
            hint="Retried with backoff; the model server may be restarting.",
            status=resp.status_code,
            opc_request_id=resp.headers.get("opc-request-id"),
            target=label,
        )
        raise _retry_or_raise(error, classify_failure(error)) from None


def _retry_or_raise(error: OdscMagicsError, failure: Failure) -> BaseException:
    """``error`` as an attempt raises it: wrapped in Retry when the retry policy retries the failure."""
    return Retry(error, failure.retry_after) if failure.retried_alone else error


def _rate_limit_hint(failure: Failure) -> str:
    if failure.kind == "bandwidth":
        return (
            "The deployment's load-balancer bandwidth limit was hit: send fewer or smaller requests at once, "
            f"or update the deployment with a larger bandwidthMbps (default {BANDWIDTH_MBPS})."
        )
    if failure.kind == "rate":
        return f"The tenancy's request-rate limit ({TENANCY_RPS} requests/s) was hit: lower the concurrency or rate."
    return "Too many requests: lower the concurrency or wait a little; retried with backoff."


def _bad_request_hint(status: int, code: str | None) -> str:
    if status == 400:
        return "The model server refused the request as it stands (prompt length, max_tokens or a parameter)."
    if status == 403:
        return f"No policy allows this call: {PREDICT_POLICY}."
    return ""


def _first_choice(payload: Any, route: str) -> tuple[str, str | None]:
    try:
        choice = payload["choices"][0]
    except (KeyError, IndexError, TypeError):
        raise ServerError(
            "The reply has no choices.", hint="The deployment may not serve an OpenAI-compatible API."
        ) from None
    if route == CHAT or "message" in choice:
        text = (choice.get("message") or {}).get("content") or ""
    else:
        text = choice.get("text") or ""
    return text, choice.get("finish_reason")


class _Cut(Exception):
    """The stream's transport ended before the answer did; ``cause`` is the transport error, if one was raised."""

    def __init__(self, why: str, cause: BaseException | None = None) -> None:
        super().__init__(why)
        self.cause = cause


class Stream:
    """An iterator of text deltas; ``result`` is set once the stream finished or was closed."""

    def __init__(self, endpoint: Endpoint, request: dict, params: dict) -> None:
        self.endpoint = endpoint
        self.request = request
        self.route = request["route"]
        self._chat = self.route == CHAT
        self._params = params
        self.result: Result | None = None
        self._parts: list[str] = []
        self._finish: str | None = None
        self._usage: dict | None = None
        self._ttft: float | None = None
        self._rid: str | None = None
        self._attempts = 0
        self._resp: Any = None
        self._started = 0.0
        self._gen: Iterator[str] | None = None

    def __iter__(self) -> Iterator[str]:
        if self._gen is None:
            self._gen = self._run()
        return self._gen

    def __next__(self) -> str:
        return next(iter(self))

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._parts)

    def close(self) -> Result:
        """Close the connection now; the Result holds what arrived (interrupted unless it had finished)."""
        if self._gen is not None:
            self._gen.close()
        if self._resp is not None:
            self._resp.close()
        if self.result is None:
            self.result = self._make_result(interrupted=True)
        return self.result

    def _make_result(self, *, interrupted: bool) -> Result:
        usage = self._usage
        if not usage:
            usage = {
                "prompt_tokens": None,
                "completion_tokens": len(self._parts),
                "total_tokens": None,
                "estimated": True,
            }
        return Result(
            text="".join(self._parts),
            finish_reason=self._finish,
            usage=dict(usage),
            latency_s=time.perf_counter() - self._started if self._started else 0.0,
            ttft_s=self._ttft,
            opc_request_id=self._rid,
            route=self.route,
            deployment=self.endpoint.deployment_id or self.endpoint.url,
            params=Endpoint._sent_params(self.request["body"]),
            interrupted=interrupted,
            attempts=max(self._attempts, 1),
        )

    def _open(self, data: bytes, read_timeout: float) -> Any:
        resp = self.endpoint._send(self.request, data, stream=True, read_timeout=read_timeout)
        if resp.status_code != 200:
            raise self.endpoint._status_error(resp, len(data))
        return resp

    def _run(self) -> Iterator[str]:
        endpoint = self.endpoint
        data = json.dumps(self.request["body"], separators=(",", ":")).encode()
        read_timeout = endpoint._read_timeout(self._params)
        self._started = time.perf_counter()

        def attempt(number: int) -> tuple[Iterator[str], str | None]:
            """Open the stream and read up to its first text delta: until then, a failure may be retried."""
            self._attempts = number
            self._resp = self._open(data, read_timeout)
            self._rid = self._resp.headers.get("opc-request-id")
            deltas = self._read(self._resp)
            try:
                return deltas, next(deltas)
            except StopIteration:
                return deltas, None
            except _Cut as cut:
                self._resp.close()
                error: OdscMagicsError
                if cut.cause is not None:  # the transport failed: classified as the error it was
                    error = endpoint._unreachable(f"stream cut before any text: {cut}")
                    failure = classify_failure(cut.cause)
                else:  # the reply itself stopped short, as an unreadable /predict answer does
                    error = ServerError(
                        f"The stream from {endpoint.label} ended before any text ({cut}).",
                        hint="Retried with backoff; the model server may be restarting.",
                        status=self._resp.status_code,
                        opc_request_id=self._rid,
                        target=endpoint.label,
                    )
                    failure = classify_failure(error)
                raise _retry_or_raise(error, failure) from None
            except BaseException:
                self._resp.close()
                raise

        try:
            deltas, first = run_with_retries(attempt, endpoint._policy(self._params), on_retry=endpoint._log_retry)
            if first is not None:
                yield first
                try:
                    yield from deltas
                except _Cut as cut:
                    self.result = self._make_result(interrupted=True)
                    raise StreamInterruptedError(
                        f"The stream from {endpoint.label} was interrupted after {len(self._parts)} text "
                        f"deltas ({cut}); the partial text is kept.",
                        hint="Text already shown is never replayed: run it again for a complete answer.",
                        partial=self.result,
                        opc_request_id=self._rid,
                        target=endpoint.label,
                    ) from None
            self.result = self._make_result(interrupted=False)
        finally:
            if self._resp is not None:
                self._resp.close()
            if self.result is None:
                self.result = self._make_result(interrupted=True)

    def _read(self, resp: Any) -> Iterator[str]:
        """The hot path: one json.loads per frame, no logging."""
        import requests
        import urllib3

        parts = self._parts
        chat = self._chat
        done = False
        loads = json.loads
        try:
            for payload in iter_data(raw_chunks(resp.raw)):
                if payload == DONE:
                    done = True
                    break
                try:
                    frame = loads(payload)
                except ValueError:
                    raise _Cut("a malformed event") from None
                choices = frame.get("choices")
                if choices:
                    choice = choices[0]
                    delta = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                    if delta:
                        if self._ttft is None:
                            self._ttft = time.perf_counter() - self._started
                        parts.append(delta)
                        yield delta
                    if choice.get("finish_reason"):
                        self._finish = choice["finish_reason"]
                elif frame.get("object") == "error" or "error" in frame:
                    self._frame_error(frame)
                if frame.get("usage"):
                    self._usage = frame["usage"]
        except (
            urllib3.exceptions.HTTPError,
            requests.exceptions.RequestException,
            ConnectionError,
            OSError,
        ) as exc:
            raise _Cut(type(exc).__name__, exc) from None
        if not done and self._finish is None:
            raise _Cut("the connection closed early")

    def _frame_error(self, frame: dict) -> None:
        inner = frame.get("error") if isinstance(frame.get("error"), dict) else frame
        message = str(inner.get("message") or frame)[:500]
        if self._parts:
            raise _Cut(f"model server error: {message}")
        raise BadRequestError(
            f"The model server reported an error: {message}",
            hint="Check the prompt length, max_tokens and the other parameters.",
            opc_request_id=self._rid,
            target=self.endpoint.label,
        )


def connect(target: str | None = None, *, settings: LLMSettings | None = None) -> Endpoint:
    """An Endpoint for a deployment OCID, a model deployment URL, a .../predict URL or a display name.

    ``target`` None means the default target (`%config LLMMagics.deployment`, env ODSC_MAGICS_DEPLOYMENT,
    or the deployment last made by deploy()).
    """
    from odsc_magics.context import get_context
    from odsc_magics.targets import resolve_target

    if target is not None and not isinstance(target, str):
        raise ValidationError(
            f"target must be a deployment OCID, URL or display name (a str), not {type(target).__name__}.",
            hint="e.g. connect('my-llm'), or connect() for the default target.",
            target="target",
        )
    arguments.settings(settings)
    settings = settings if settings is not None else current_settings()
    if target is None:
        target = default_target(settings)
    if not target:
        raise ConfigurationError(
            "No deployment to send predictions to.",
            hint="Pass one (an OCID, URL or display name), set `%config LLMMagics.deployment = '...'` "
            "(env ODSC_MAGICS_DEPLOYMENT), or deploy one with odsc_magics.deploy().",
        )
    context = get_context(settings)
    resolved = resolve_target(target, context)
    return Endpoint(
        resolved.url,
        deployment_id=resolved.deployment_id,
        name=resolved.name,
        context=context,
        settings=settings,
        kind=resolved.kind,
    )
