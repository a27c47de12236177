"""REST handlers under /odsc-magics/: list, get, logs, activate/deactivate, delete deployments."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from odsc_magics.errors import (
    ConfigurationError,
    DeploymentNotActiveError,
    EndpointUnreachableError,
    NotFoundError,
    OdscMagicsError,
    ValidationError,
)
from odsc_magics.server import service

NAMESPACE = "odsc-magics"
_ID = r"(?P<deployment>[^/]+)"


def error_body(exc: OdscMagicsError) -> tuple[int, dict]:
    """HTTP status and JSON body for an odsc-magics error: the panel shows message and hint."""
    if isinstance(exc, ConfigurationError):
        status, kind = 400, "configuration"
    elif isinstance(exc, ValidationError):
        status, kind = 400, "validation"
    elif isinstance(exc, NotFoundError):
        status, kind = 404, "not_found"
    elif isinstance(exc, DeploymentNotActiveError):
        status, kind = 409, "not_active"
    elif isinstance(exc, EndpointUnreachableError):
        status, kind = 502, "unreachable"
    else:
        status, kind = 502, "service"
    body = {
        "error": type(exc).__name__,
        "kind": kind,
        "message": exc.message,
        "hint": exc.hint or "",
        "opc_request_id": exc.opc_request_id,
    }
    return status, body


class _Handler(APIHandler):
    """Runs a blocking service call off the event loop and answers JSON, errors included."""

    async def _answer(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))
        except OdscMagicsError as exc:
            status, body = error_body(exc)
            self.set_status(status)
            self.finish(json.dumps(body))
            return
        self.finish(json.dumps(result))


class StatusHandler(_Handler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self._answer(service.status)


class DeploymentsHandler(_Handler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self._answer(lambda: {"deployments": service.list_deployments()})


class DeploymentHandler(_Handler):
    @tornado.web.authenticated
    async def get(self, deployment: str) -> None:
        await self._answer(service.get_deployment, deployment)

    @tornado.web.authenticated
    async def delete(self, deployment: str) -> None:
        force = self.get_query_argument("force", "false").lower() in ("1", "true", "yes")
        await self._answer(service.delete, deployment, force=force)


class LogsHandler(_Handler):
    @tornado.web.authenticated
    async def get(self, deployment: str) -> None:
        try:
            tail = int(self.get_query_argument("tail", "50"))
        except ValueError as exc:
            raise tornado.web.HTTPError(400, "tail must be an integer") from exc
        await self._answer(lambda: {"logs": service.logs(deployment, tail)})


class ActionHandler(_Handler):
    @tornado.web.authenticated
    async def post(self, deployment: str, action: str) -> None:
        await self._answer(service.act, deployment, action)


def setup_route_handlers(web_app: Any) -> None:
    """Mount every handler under ``{base_url}odsc-magics/``."""
    base = url_path_join(web_app.settings["base_url"], NAMESPACE)
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "status"), StatusHandler),
            (url_path_join(base, "deployments"), DeploymentsHandler),
            (url_path_join(base, "deployments", _ID), DeploymentHandler),
            (url_path_join(base, "deployments", _ID, "logs"), LogsHandler),
            (url_path_join(base, "deployments", _ID, r"(?P<action>activate|deactivate)"), ActionHandler),
        ],
    )
