"""The connection context: effective settings, the signer, one pooled signed HTTP session, SDK clients."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from odsc_magics.config import LLMSettings, configured_key, current_settings, resolve
from odsc_magics.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    EndpointUnreachableError,
    NotFoundError,
    OdscMagicsError,
    RateLimitError,
    ServerError,
    ServiceError,
)

__all__ = ["Context", "clear_contexts", "get_context", "local_backend_info"]

CONNECT_TIMEOUT = 10.0
POOL_SIZE = 256
TARGET_CACHE_SECONDS = 30.0

_lock = threading.Lock()
_contexts: dict[tuple, Context] = {}
_local: dict[str, dict] = {}


def local_backend_info(local_dir: str) -> dict:
    """start.json of the local backend in ``local_dir``, which is started when it is not running."""
    from odsc_magics.local.process import ensure_running, process_alive, read_start

    path = Path(os.path.expanduser(local_dir)).resolve()
    key = str(path)
    cached = _local.get(key)
    if cached and process_alive(cached.get("pid")) and read_start(path) == cached:
        return cached
    try:
        info = ensure_running(path)
    except Exception as exc:
        raise ConfigurationError(
            f"The local backend in {path} could not be started ({type(exc).__name__}: {exc}).",
            hint=f"See {path / 'server.log'}, or start it with `odsc-magics local --state-dir {path}`.",
        ) from None
    _local[key] = info
    return info


def _connect_failure(exc: BaseException) -> str | None:
    """Why no connection could be opened (refused, unknown host, no route), or None for other errors."""
    seen: set[int] = set()
    pending: list[Any] = [exc]
    while pending:
        error = pending.pop()
        if not isinstance(error, BaseException) or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, ConnectionRefusedError):
            return "connection refused"
        if isinstance(error, socket.gaierror):
            return "unknown host"
        if isinstance(error, OSError) and error.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return "no route to host"
        pending.extend([*error.args, getattr(error, "reason", None), error.__cause__, error.__context__])
    return None


class Context:
    """What a call needs to reach the service: region, compartment, signer, HTTP session, SDK clients."""

    def __init__(
        self,
        *,
        backend: str,
        region: str,
        compartment_id: str | None,
        project_id: str | None,
        credentials: Any,
        local_info: dict | None = None,
    ) -> None:
        import requests
        from requests.adapters import HTTPAdapter

        self.backend = backend
        self.region = region
        self.compartment_id = compartment_id
        self.project_id = project_id
        self.credentials = credentials
        self.auth_mode: str = credentials.mode
        self.auth_description: str = credentials.description
        self.local_info = local_info
        self.local_endpoint: str | None = local_info["endpoint"].rstrip("/") if local_info else None
        self.http = requests.Session()
        adapter = HTTPAdapter(pool_connections=16, pool_maxsize=POOL_SIZE, max_retries=0)
        self.http.mount("http://", adapter)
        self.http.mount("https://", adapter)
        self.http.auth = credentials
        _read_environment_once(self.http, local=self.local_endpoint is not None)
        self._data_science: Any = None
        self._lock = threading.Lock()
        self._targets: dict[str, tuple[float, Any]] = {}

    def __repr__(self) -> str:
        return f"Context(backend={self.backend!r}, region={self.region!r}, auth={self.auth_description!r})"

    def alive(self) -> bool:
        """False when this context's local backend process has gone away (exited, even if not yet reaped)."""
        if self.local_info is None:
            return True
        from odsc_magics.local.process import process_alive

        return process_alive(self.local_info.get("pid"))

    def discard(self) -> None:
        """Drop this context from the cache: the next get_context builds a new one."""
        with _lock:
            for key, context in list(_contexts.items()):
                if context is self:
                    del _contexts[key]

    def is_local_url(self, url: str) -> bool:
        """True when ``url`` is served by this context's local backend."""
        base = self.local_endpoint
        return bool(base) and (url == base or url.startswith(base + "/"))

    def connect_failure(self, url: str, exc: BaseException) -> EndpointUnreachableError | None:
        """The error for a request to ``url`` that could not connect at all, or None for other transport errors.

        Nothing listening (refused), an unknown host or no route does not heal within a retry's backoff: it is
        reported at once, naming ``url``. When the local backend refuses, it is gone: this context is dropped
        so that the next call starts it again.
        """
        why = _connect_failure(exc)
        if why is None:
            return None
        if self.is_local_url(url):
            self.discard()
            return EndpointUnreachableError(
                f"The local backend at {self.local_endpoint} is not running ({why}).",
                hint="Run the command again: the next call starts the local backend anew (its log is "
                "server.log in its state dir).",
                target=url,
            )
        hint = (
            "Check the host name in that URL."
            if why == "unknown host"
            else "Check the host and port in that URL: nothing accepts connections there."
        )
        return EndpointUnreachableError(f"Could not connect to {url} ({why}).", hint=hint, target=url)

    def data_science(self) -> Any:
        """The oci DataScienceClient (on the local backend for backend=local, without SDK retries there)."""
        with self._lock:
            if self._data_science is None:
                import oci

                self._data_science = self.sdk_client(oci.data_science.DataScienceClient)
            return self._data_science

    def sdk_client(self, client_class: type) -> Any:
        """An oci SDK client of this context's credentials and region (on the local backend for backend=local,
        without the SDK's retries and circuit breaker there: the local backend answers at once)."""
        import oci

        kwargs: dict[str, Any] = {"signer": self.credentials.signer}
        if self.local_endpoint:
            kwargs["service_endpoint"] = self.local_endpoint
            kwargs["retry_strategy"] = oci.retry.NoneRetryStrategy()
            kwargs["circuit_breaker_strategy"] = oci.circuit_breaker.NoCircuitBreakerStrategy()
        return client_class({**self.credentials.oci_config, "region": self.region}, **kwargs)

    def refresh_signer(self, seen_generation: int | None = None) -> bool:
        """Token-based signers: renew once and return True; False for api_key."""
        refreshed = self.credentials.refresh(seen_generation)
        if refreshed:
            with self._lock:
                self._data_science = None
        return refreshed

    def deployment_url(self, deployment_id: str) -> str:
        """The data-plane URL of a deployment OCID when the control plane cannot be asked."""
        if self.local_endpoint:
            return f"{self.local_endpoint}/{deployment_id}"
        return f"https://modeldeployment.{self.region}.oci.customer-oci.com/{deployment_id}"

    def cached_target(self, key: str) -> Any:
        hit = self._targets.get(key)
        if hit and time.monotonic() - hit[0] < TARGET_CACHE_SECONDS:
            return hit[1]
        return None

    def cache_target(self, key: str, value: Any) -> None:
        self._targets[key] = (time.monotonic(), value)

    def forget_targets(self) -> None:
        self._targets.clear()

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one control-plane SDK call; its errors come back as the odsc-magics error hierarchy."""
        import oci

        try:
            return fn(*args, **kwargs)
        except oci.exceptions.ServiceError as exc:
            raise self.control_error(exc, what) from None
        except (oci.exceptions.RequestException, oci.exceptions.ConnectTimeout, OSError) as exc:
            raise self._unreachable(what, exc) from None
        except OdscMagicsError:
            raise
        except Exception as exc:
            if type(exc).__module__.startswith(("requests", "urllib3", "oci._vendor")):
                raise self._unreachable(what, exc) from None
            raise

    def _unreachable(self, what: str, exc: BaseException) -> EndpointUnreachableError:
        if self.local_endpoint and _connect_failure(exc):
            self.discard()  # the local backend is gone: the next call starts it again
            hint = "The local backend is not running; run the command again to start it (see its server.log)."
        elif self.local_endpoint:
            hint = "The local backend is not answering; `odsc-magics local` restarts it (see its server.log)."
        else:
            hint = f"Check the network and the region ({self.region})."
        return EndpointUnreachableError(
            f"{what}: the Data Science control plane could not be reached ({type(exc).__name__}).", hint=hint
        )

    def auth_hint(self) -> str:
        """What to check after a 401 with this context's auth mode (never a secret)."""
        mode = self.auth_mode
        if mode == "api_key":
            return (
                f"Signature not accepted using auth mode {self.auth_description}. Check the key file and "
                "fingerprint in that profile (the public key must be uploaded for that user) and the clock; "
                "or choose another mode with `%config LLMMagics.auth`."
            )
        if mode == "security_token":
            return (
                f"Signature not accepted using auth mode {self.auth_description}. The session may have "
                f"expired: run `oci session refresh --profile {self.credentials.profile}` "
                "(or `oci session authenticate`)."
            )
        return (
            f"Signature not accepted using auth mode {self.auth_description}. Check the dynamic group / "
            "resource principal policies of this resource, or choose another `%config LLMMagics.auth`."
        )

    def control_error(self, exc: Any, what: str) -> OdscMagicsError:
        """Map an oci.exceptions.ServiceError from a control-plane call."""
        status, code = exc.status, exc.code
        message = f"{what}: {status} {code}: {exc.message}"
        common = {"status": status, "code": code, "opc_request_id": exc.request_id}
        if status == 401:
            return AuthenticationError(message, hint=self.auth_hint(), **common)
        if status == 404:
            return NotFoundError(
                message,
                hint=f"Check the OCID, the region ({self.region}) and that a policy allows you to use the "
                "data-science-family in that compartment.",
                **common,
            )
        if status == 429:
            return RateLimitError(
                message, hint="Too many control-plane calls; wait a little and retry.", **common
            )
        if status >= 500:
            return ServerError(message, hint="The service had a problem; retry in a moment.", **common)
        if 400 <= status < 500:
            return BadRequestError(message, **common)
        return ServiceError(message, **common)


def clear_contexts() -> None:
    """Forget every cached context (the next call builds a new one)."""
    with _lock:
        _contexts.clear()


def _build(settings: LLMSettings) -> Context:
    from odsc_magics.auth import load_credentials

    backend = resolve("backend", settings=settings)[0]
    local_info = None
    if backend == "local":
        local_info = local_backend_info(resolve("local_dir", settings=settings)[0])
    mode = resolve("auth", settings=settings)[0]
    config_file = resolve("config_file", settings=settings)[0]
    profile = resolve("profile", settings=settings)[0]
    region = resolve("region", settings=settings)[0]
    credentials = load_credentials(mode, config_file=config_file, profile=profile, region=region)
    region = region or credentials.region
    if not region:
        raise ConfigurationError(
            f"No OCI region is known for auth mode {credentials.description}.",
            hint="Set `%config LLMMagics.region = 'us-ashburn-1'` (env ODSC_MAGICS_REGION) or add region to "
            "the profile.",
        )
    return Context(
        backend=backend,
        region=region,
        compartment_id=resolve("compartment_id", settings=settings)[0],
        project_id=resolve("project_id", settings=settings)[0],
        credentials=credentials,
        local_info=local_info,
    )


def get_context(settings: LLMSettings | None = None) -> Context:
    """The context of the effective settings; cached while those settings stay the same."""
    settings = settings if settings is not None else current_settings()
    key = configured_key(settings)
    with _lock:
        context = _contexts.get(key)
        if context is not None and context.alive():
            return context
        context = _build(settings)
        _contexts[key] = context
        return context


def _read_environment_once(session: Any, *, local: bool) -> None:
    """Proxies and CA bundle from the environment, read here once instead of on every request.

    requests re-reads them per request when ``trust_env`` is on, which costs about a millisecond each time:
    more than the rest of the client's work on a batch's hot path.
    """
    import urllib.request

    if not local and urllib.request.getproxies():
        return  # proxies with their no_proxy rules: leave them to requests, per request
    session.trust_env = False
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
