"""The data plane: ``/{deploymentOcid}/predict`` and ``/predictWithResponseStream`` (with route suffixes)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from http import HTTPStatus
from typing import Any

from aiohttp import web

from odsc_magics.local import frontend
from odsc_magics.local.apierror import ApiError, not_found
from odsc_magics.local.embeddings import tei_server_for
from odsc_magics.local.http import dumps
from odsc_magics.local.lifecycle import deployment_env
from odsc_magics.local.openai_wire import DONE_FRAME, EngineReply, error_frame, error_reply
from odsc_magics.local.runtime import RUNTIME, Runtime
from odsc_magics.local.state import rfc3339

log = logging.getLogger(__name__)
STREAM = "predictWithResponseStream"
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_FAULT_ERRORS = {
    "429": (429, "TooManyRequests", frontend.BANDWIDTH_MESSAGE),
    "500": (500, "InternalServerError", "Internal server error"),
    "503": (503, "ServiceUnavailable", "Model server unavailable"),
}


# The ``midstream`` fault: the model server's engine dies halfway through an answer. The text is vLLM v1's
# EngineDeadError; after a stream's headers vLLM reports a failure as an error event built by
# create_streaming_error_response, whose defaults (BadRequestError, 400) it keeps; a JSON answer gets a 500.
MIDSTREAM_MESSAGE = "EngineCore encountered an issue. See stack trace (above) for the root cause."

_REASONS = {status.value: status.phrase for status in HTTPStatus}


class Dropped(Exception):
    """The connection was closed on purpose (a ``reset`` or ``cut`` fault); no response follows."""


def _container_config(deployment: dict) -> dict:
    config = deployment.get("modelDeploymentConfigurationDetails") or {}
    return config.get("environmentConfigurationDetails") or {}


def _route(deployment: dict, env: dict, request: web.Request, suffix: str, body: Any) -> str:
    if suffix:
        spec = _container_config(deployment).get("predictApiSpecification") or ""
        if spec.lower() != "openai":
            raise ApiError(
                404,
                "NotAuthorizedOrNotFound",
                f"No inference endpoint /{suffix} on model deployment {deployment['id']}: path suffixes need "
                "predictApiSpecification 'openai' in its container configuration",
            )
        return "/" + suffix
    header = request.headers.get("route")
    if header:
        return header if header.startswith("/") else "/" + header
    configured = env.get("MODEL_DEPLOY_PREDICT_ENDPOINT")
    if configured:
        return configured
    return "/v1/chat/completions" if isinstance(body, dict) and "messages" in body else "/v1/completions"


async def predict(request: web.Request) -> web.StreamResponse:
    """Serve one predict request; every outcome is counted in the deployment's stats and access log."""
    runtime = request.app[RUNTIME]
    deployment_id = request.match_info["deployment"]
    runtime.lifecycle.advance()
    deployment = runtime.store.deployments.get(deployment_id)
    if deployment is None:
        raise not_found("model deployment", deployment_id)
    stats = runtime.stats.of(deployment_id)
    stats.predict_requests += 1
    started = time.perf_counter()
    outcome: dict[str, Any] = {"status": None}
    try:
        response = await _serve(request, runtime, deployment, stats, outcome)
    except ApiError as exc:
        outcome["status"] = exc.status
        raise
    except Dropped:
        raise
    except Exception:
        log.exception("predict on %s failed", deployment_id)
        outcome["status"] = 500
        raise ApiError(500, "InternalServerError", "Internal server error") from None
    finally:
        status = outcome["status"]
        if status is not None:
            stats.by_status[status] += 1
        _log_request(runtime, request, deployment_id, status, outcome.get("route"), started)
    return response


def _log_request(runtime: Runtime, request: web.Request, deployment_id: str, status, route, started: float) -> None:
    """One access record per request; one model-server (predict log) line per request that reached it."""
    now = time.time()
    stamp, millis = rfc3339(now), int(now * 1000)
    path = request.path[len(deployment_id) + 1 :]
    request_id = request.get("opc_request_id")
    runtime.store.record_access(
        deployment_id,
        {
            "id": os.urandom(8).hex(),
            "datetime": millis,
            "time": stamp,
            "method": request.method,
            "path": path,
            "status": status or 0,
            "latency": round((time.perf_counter() - started) * 1000, 3),
            "opcRequestId": request_id,
        },
    )
    if route and status:
        phrase = _REASONS.get(status, "")
        runtime.store.record(
            "predict",
            deployment_id,
            {
                "id": os.urandom(8).hex(),
                "datetime": millis,
                "time": stamp,
                "message": f'INFO:     127.0.0.1:{40000 + millis % 20000} - "{request.method} {route} HTTP/1.1" '
                f"{status} {phrase}".rstrip(),
                "opcRequestId": request_id,
            },
        )


async def _serve(request: web.Request, runtime: Runtime, deployment: dict, stats, outcome: dict):
    action = request.match_info["action"]
    suffix = request.match_info.get("suffix", "")
    stream_endpoint = action == STREAM
    if not suffix and request.method != "POST":
        raise ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed on /{action}; use POST")
    if suffix and request.method not in {"GET", "POST", "PUT", "DELETE"}:
        raise ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed on /{action}/{suffix}")
    state = deployment["lifecycleState"]
    if state != "ACTIVE":
        raise ApiError(
            409,
            "IncorrectState",
            f"Model deployment {deployment['id']} is {state}; only an ACTIVE model deployment serves predictions",
        )
    raw = await request.read()
    body: Any = None
    if raw.strip():
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, "CannotParseRequest", f"The request body is not valid JSON: {exc}") from None
    elif not suffix:
        raise ApiError(400, "CannotParseRequest", "The request body is not valid JSON: it is empty")
    wants_stream = isinstance(body, dict) and body.get("stream") is True
    if stream_endpoint and not wants_stream:
        raise ApiError(
            409,
            "ExternalServerIncorrectState",
            'The model server did not answer with a stream: send "stream": true to /predictWithResponseStream',
        )
    env = deployment_env(deployment)
    route = _route(deployment, env, request, suffix, body)

    _front_end_admits(runtime, deployment, stats, len(request.get("body") or b""))
    deadline = asyncio.get_running_loop().time() + runtime.frontend.timeout_s
    capacity = runtime.options.capacity
    inflight = runtime.inflight.get(deployment["id"], 0)
    if capacity is not None and inflight >= capacity:
        stats.throttles[frontend.CAPACITY] += 1
        raise _with_retry_after(
            runtime,
            ApiError(
                429,
                "TooManyRequests",
                f"Too many requests: the model deployment's capacity ({capacity} concurrent) is exceeded",
            ),
        )
    runtime.inflight[deployment["id"]] = inflight + 1
    try:
        fault = runtime.faults.draw()
        if fault is not None:
            stats.faults[fault] += 1
            if fault in _FAULT_ERRORS:
                raise _with_retry_after(runtime, ApiError(*_FAULT_ERRORS[fault]))
            if fault == "reset":
                _abort(request)
        outcome["route"] = route
        engine = _embedding_server(runtime, deployment) or runtime.engine_for(env)
        context = {
            "deployment_id": deployment["id"],
            "env": env,
            "pace": runtime.pace_for(deployment),
            "body_bytes": len(raw),
        }
        if fault == "badjson":  # the builtin engine stops a constrained answer halfway
            context["fault"] = fault
        live = wants_stream and (stream_endpoint or request.headers.get("enable-streaming", "").lower() == "true")
        bucket = runtime.frontend.bandwidth(deployment["id"], frontend.bandwidth_mbps(deployment))
        # The front end's 60 s limit: on a whole answer, or on a stream until its first byte. What runs past it
        # is cancelled, which aborts the request in the engine (as vLLM does when the connection closes).
        if not live:
            try:
                reply, payload, content_type = await _within(
                    deadline, _whole_answer(engine, request, route, body, context, fault)
                )
            except asyncio.TimeoutError:
                raise _timed_out(stats) from None
            bucket.add(len(payload))
            return await _send_body(request, reply, payload, content_type, fault, stats, outcome)
        try:
            reply = await _within(deadline, engine.handle(request.method, route, body, context=context))
        except asyncio.TimeoutError:
            raise _timed_out(stats) from None
        if fault == "midstream":
            reply = _failing_midway(reply, _expected_frames(request))
        if reply.stream is None:
            if stream_endpoint and reply.status < 400:
                raise ApiError(409, "ExternalServerIncorrectState", "The model server did not answer with a stream")
            payload = b"" if reply.body is None else dumps(reply.body)
            bucket.add(len(payload))
            return await _send_body(request, reply, payload, "application/json", fault, stats, outcome)
        try:
            first = await _within(deadline, anext(reply.stream, None))
        except asyncio.TimeoutError:
            await _close_iterator(reply.stream)
            raise _timed_out(stats) from None
        return await _send_stream(request, reply, _chain(first, reply.stream), bucket, fault, stats, outcome)
    finally:
        runtime.inflight[deployment["id"]] -= 1


def _embedding_server(runtime: Runtime, deployment: dict):
    """The builtin TEI server of a deployment on the embedding container, else None (the engine serves it)."""
    if runtime.options.engine != "builtin":
        return None
    return tei_server_for(deployment, runtime.lifecycle.model_of(deployment))


def _front_end_admits(runtime: Runtime, deployment: dict, stats, request_bytes: int) -> None:
    """The tenancy's request rate, then the deployment's load-balancer bandwidth (429s otherwise)."""
    if not runtime.frontend.admit_request():
        stats.throttles[frontend.TENANCY_RATE] += 1
        raise _with_retry_after(runtime, frontend.tenancy_rate_exceeded())
    bucket = runtime.frontend.bandwidth(deployment["id"], frontend.bandwidth_mbps(deployment))
    if not bucket.admits():
        stats.throttles[frontend.BANDWIDTH] += 1
        raise _with_retry_after(runtime, frontend.bandwidth_exceeded())
    bucket.add(request_bytes)


async def _within(deadline: float, awaitable):
    """``awaitable``'s result if it comes before ``deadline`` (loop time), else it is cancelled: TimeoutError."""
    return await asyncio.wait_for(awaitable, max(0.0, deadline - asyncio.get_running_loop().time()))


def _timed_out(stats) -> ApiError:
    stats.timeouts += 1
    return frontend.service_timeout()


async def _whole_answer(engine, request: web.Request, route: str, body: Any, context: dict, fault):
    """The engine's complete answer: (reply, payload, content type); a stream is gathered whole."""
    reply = await engine.handle(request.method, route, body, context=context)
    if fault == "midstream":
        reply = _failing_midway(reply, _expected_frames(request))
    if reply.stream is None:
        return reply, (b"" if reply.body is None else dumps(reply.body)), "application/json"
    frames = [frame async for frame in reply.stream]
    return reply, b"".join(frames), "text/event-stream"


async def _chain(first: bytes | None, stream):
    if first is None:
        return
    yield first
    async for frame in stream:
        yield frame


def _with_retry_after(runtime: Runtime, error: ApiError) -> ApiError:
    if runtime.options.retry_after is not None:
        error.headers["retry-after"] = f"{runtime.options.retry_after:g}"
    return error


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise Dropped()


def _extra_headers(reply) -> dict[str, str]:
    skip = {"content-type", "content-length", "transfer-encoding", "connection"}
    return {key: value for key, value in (reply.headers or {}).items() if key.lower() not in skip}


async def _send_body(request, reply, payload: bytes, content_type: str, fault, stats, outcome):
    if fault == "cut":
        response = web.StreamResponse(status=reply.status, headers={**_extra_headers(reply)})
        response.headers["Content-Type"] = content_type
        response.content_length = len(payload)
        outcome["status"] = reply.status
        with contextlib.suppress(ConnectionError):
            await response.prepare(request)
            await response.write(payload[: len(payload) // 2])
        _abort(request)
    outcome["status"] = reply.status
    if 200 <= reply.status < 300 and fault != "midstream":
        stats.success(request["body_sha256"])
    response = web.Response(body=payload, status=reply.status, headers=_extra_headers(reply))
    response.headers["Content-Type"] = content_type
    return response


async def _send_stream(request, reply, frames, bucket, fault, stats, outcome):
    response = web.StreamResponse(status=reply.status, headers={**_extra_headers(reply), **SSE_HEADERS})
    response.enable_chunked_encoding()
    outcome["status"] = reply.status
    # Once the headers are out, no error response can follow: any failure drops the connection, so the
    # client sees a stream without [DONE] (the platform reports such late failures in a trailer).
    try:
        await response.prepare(request)
        if fault == "cut":
            budget = max(1, _expected_frames(request) // 2)
            async for frame in frames:
                if frame == DONE_FRAME or budget <= 0:
                    break
                bucket.add(len(frame))
                await response.write(frame)
                budget -= 1
            raise Dropped()
        async for frame in frames:
            bucket.add(len(frame))
            await response.write(frame)
        await response.write_eof()
    except Exception as exc:
        if not isinstance(exc, (Dropped, ConnectionError)):
            log.exception("stream of %s failed after its first byte", request.match_info["deployment"])
        await _close_iterator(reply.stream)
        _abort(request)
    finally:
        # A client that went away cancels this handler: the engine's request is aborted with the stream.
        await _close_iterator(reply.stream)
    if 200 <= reply.status < 300 and fault != "midstream":
        stats.success(request["body_sha256"])
    return response


def _failing_midway(reply: EngineReply, expected_frames: int) -> EngineReply:
    """The reply of a model server that fails halfway through: an error event after some frames, or a 500."""
    if reply.status >= 400:
        return reply
    if reply.stream is None:
        return error_reply(500, MIDSTREAM_MESSAGE, "InternalServerError")
    # At least two frames: a chat stream's first one carries only the role, no text.
    budget = max(2, expected_frames // 2)
    return EngineReply(reply.status, stream=_error_after(reply.stream, budget), headers=reply.headers)


async def _error_after(stream, budget: int):
    try:
        async for frame in stream:
            if frame == DONE_FRAME or budget <= 0:
                break
            yield frame
            budget -= 1
    finally:
        await _close_iterator(stream)
    yield error_frame(400, MIDSTREAM_MESSAGE, "BadRequestError")
    yield DONE_FRAME


def _expected_frames(request: web.Request) -> int:
    try:
        body = json.loads(request["body"]) if request.get("body") else {}
        return int(body.get("max_tokens") or 16)
    except (ValueError, TypeError, AttributeError):
        return 16


async def _close_iterator(stream) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


def add_routes(app: web.Application) -> None:
    """``/{deployment}/predict``, ``/{deployment}/predictWithResponseStream`` and their suffix forms."""
    base = "/{deployment}/{action:predict|predictWithResponseStream}"
    app.router.add_route("*", base, predict)
    app.router.add_route("*", base + "/{suffix:.*}", predict)
