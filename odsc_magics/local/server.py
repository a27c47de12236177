"""The aiohttp application of the local backend: both planes on one port, signed requests only."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets

from aiohttp import web

from odsc_magics.local import control, dataplane, logsearch, resources
from odsc_magics.local.apierror import ApiError
from odsc_magics.local.http import error_response, json_response
from odsc_magics.local.runtime import RUNTIME, Runtime
from odsc_magics.local.signing import SignatureError

log = logging.getLogger(__name__)
MAX_BODY = 10 * 1024 * 1024
LOOPBACK = {"127.0.0.1", "::1"}
TICK_S = 0.2
FLUSH_EVERY = 10  # ticks between access-log flushes


def _request_id(request: web.Request) -> str:
    given = request.headers.get("opc-request-id")
    return given if given else secrets.token_hex(16).upper()


@web.middleware
async def gateway(request: web.Request, handler) -> web.StreamResponse:
    """What the platform's front end does: request ids, loopback-only internals, size limit, signatures."""
    request["opc_request_id"] = _request_id(request)
    try:
        if request.path.startswith("/_emulator/"):
            if request.remote not in LOOPBACK:
                raise ApiError(403, "NotAllowed", "The emulator's own endpoints answer only to loopback clients")
            return await handler(request)
        length = request.content_length
        if length is not None and length > MAX_BODY:
            raise ApiError(413, "PayloadTooLarge", "The request body is larger than the 10 MB limit")
        body = await request.read()
        digest = hashlib.sha256(body).digest()
        request["body"] = body
        request["body_sha256"] = digest
        runtime = request.app[RUNTIME]
        runtime.verifier.verify(request.method, request.raw_path, request.headers, body, body_sha256=digest)
        return await handler(request)
    except ApiError as exc:
        return error_response(exc)
    except SignatureError as exc:
        return error_response(ApiError(401, "NotAuthenticated", f"The request is not authenticated: {exc}"))
    except web.HTTPRequestEntityTooLarge:
        return error_response(ApiError(413, "PayloadTooLarge", "The request body is larger than the 10 MB limit"))
    except web.HTTPMethodNotAllowed as exc:
        return error_response(ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed here: {exc.reason}"))
    except web.HTTPNotFound:
        return error_response(
            ApiError(
                404,
                "NotAuthorizedOrNotFound",
                f"Authorization failed or requested resource not found: {request.path}",
            )
        )
    except dataplane.Dropped:
        # The connection is already closed; aiohttp ignores what is returned on a dead transport.
        return web.Response(status=499)


async def _stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
    rid = request.get("opc_request_id")
    if rid and "opc-request-id" not in response.headers:
        response.headers["opc-request-id"] = rid


async def emulator_stats(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    stats = runtime.stats.as_dict(runtime.live_stats())
    return json_response(
        {
            "pid": runtime.pid,
            "instance": runtime.instance,
            "serving": runtime.options.serving,
            "time_scale": runtime.options.time_scale,
            **stats,
        }
    )


async def emulator_access_logs(request: web.Request) -> web.Response:
    logs = request.app[RUNTIME].store.access_logs
    return json_response({key: list(value) for key, value in logs.items()})


async def _ticker(app: web.Application) -> None:
    runtime = app[RUNTIME]
    ticks = 0
    while True:
        await asyncio.sleep(TICK_S)
        ticks += 1
        try:
            runtime.lifecycle.advance()
            if ticks % FLUSH_EVERY == 0:
                runtime.store.flush_logs()
        except Exception:  # keep ticking; the next request advances lazily anyway
            log.exception("periodic state update failed")


async def _background(app: web.Application):
    task = asyncio.create_task(_ticker(app))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    runtime = app[RUNTIME]
    runtime.lifecycle.advance()
    runtime.store.save()
    runtime.store.flush_logs()
    await runtime.aclose()


def create_app(runtime: Runtime) -> web.Application:
    """The application serving the control plane, the data plane and ``/_emulator/*``."""
    app = web.Application(middlewares=[gateway], client_max_size=MAX_BODY + 1024 * 1024)
    app[RUNTIME] = runtime
    app.router.add_get("/_emulator/stats", emulator_stats, allow_head=False)
    app.router.add_get("/_emulator/access_logs", emulator_access_logs, allow_head=False)
    control.add_routes(app)
    resources.add_routes(app)
    logsearch.add_routes(app)
    dataplane.add_routes(app)
    app.on_response_prepare.append(_stamp_request_id)
    app.cleanup_ctx.append(_background)
    return app
