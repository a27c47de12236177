"""One retry policy for the client, its streams and batches: how a failure is classified, and how long to wait.

Every caller asks :func:`classify_failure` what a failed attempt means, and waits :meth:`RetryPolicy.delay`
before the next one. The classification, by status (the platform's messages as documented at
docs.oracle.com/en-us/iaas/Content/data-science/using/model-dep-invoke-throttling.htm and
.../model-dep-predict-endpoint.htm, read 2026-11-29):

    status / failure                          action       kind
    429 "Tenancy request-rate limit exceeded" throttle     rate         (requests per second per tenancy)
    429 "LB bandwidth limit exceeded"         throttle     bandwidth    (bytes per second of the load balancer)
    any other 429, and 503                    throttle     concurrency  (the model server is full)
    500 "Service Timeout ..."                 throttle     timeout      (the 60 s limit: the queue is far too deep)
    no answer within the read timeout         throttle     timeout      (the same wait, timed by the client)
    other 500, 502, 504, 505-599              retry        server
    408 Request Timeout                       retry        transport    (the request did not arrive in time)
    connection reset or dropped               retry        transport
    a reply cut short or unreadable           retry        cut
    400 and other 4xx, 409 other than
      IncorrectState                          final        bad request / conflict
    413                                       final        too large
    501 Not Implemented                       final        not implemented
    401                                       fatal        auth
    403                                       fatal        forbidden
    404, or the model name unknown            fatal        not found
    409 IncorrectState (not ACTIVE)           fatal        inactive
    connection refused                        unreachable  refused
    unknown host                              unreachable  unknown host
    no route to host                          unreachable  no route
    no connection within the connect timeout  unreachable  connect failed

408 is retried: the server gave up waiting for the request, which a new connection usually delivers. 501 is
not: the server does not implement the request, and saying so again will not change (the OCI SDK also retries
every 5xx but 501). "throttle" and "retry" are retried with backoff; a throttle also tells a batch's
concurrency controller the endpoint is overloaded, ``kind`` saying which limit was hit. "final" fails the one
request; "fatal" fails every further request alike (a batch stops); "unreachable" means nothing accepts
connections there: a single call reports it at once, a batch stops after a few in a row. A timeout is a
throttle for a batch, whose controller cuts the load before the row is tried again; a single call does not
retry it (``Failure.retried_alone``): the same request would wait as long again.
"""

from __future__ import annotations

import email.utils
import errno
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from odsc_magics.predict_limits import BANDWIDTH_PHRASE, TENANCY_PHRASE, TIMEOUT_PHRASE

__all__ = [
    "Action",
    "Failure",
    "Kind",
    "Retry",
    "RetryPolicy",
    "classify_failure",
    "classify_status",
    "parse_retry_after",
    "run_with_retries",
]

T = TypeVar("T")

Action = Literal["throttle", "retry", "final", "fatal", "unreachable"]
Kind = Literal[
    # throttles: which limit was hit
    "rate", "bandwidth", "concurrency", "timeout",
    # retried
    "server", "transport", "cut",
    # final
    "bad request", "conflict", "too large", "not implemented", "error",
    # fatal
    "auth", "forbidden", "not found", "inactive", "configuration",
    # unreachable
    "refused", "unknown host", "no route", "connect failed",
]  # fmt: skip
RETRIED: frozenset[str] = frozenset({"throttle", "retry"})

_NOT_ACTIVE_CODES = ("IncorrectState", None)
_UNREACHABLE_ERRNOS = (errno.EHOSTUNREACH, errno.ENETUNREACH)
# urllib3's and requests' names (and their subclasses), matched by name so that nothing is imported here
_CONNECT_PHASE = {"NewConnectionError", "ConnectTimeoutError", "ConnectTimeout"}
_NAME_RESOLUTION = {"NameResolutionError"}
_READ_TIMEOUT = {"ReadTimeout", "ReadTimeoutError"}


@dataclass(frozen=True)
class Failure:
    """What to do after a failed attempt: ``action``, the ``kind`` of failure, and Retry-After seconds if given."""

    action: Action
    kind: Kind
    retry_after: float | None = None

    @property
    def retried(self) -> bool:
        """True when another attempt may succeed (after a backoff)."""
        return self.action in RETRIED

    @property
    def retried_alone(self) -> bool:
        """True when a single call (not a batch) tries again: not after a timeout, which the same request would
        likely meet again after another full wait (a batch retries it once its controller has cut the load)."""
        return self.retried and self.kind != "timeout"


def classify_status(
    status: int, message: str | None = None, *, code: str | None = None, retry_after: float | None = None
) -> Failure:
    """The failure an HTTP status means, read with the error's ``code`` and ``message`` (see the module's table)."""
    text = (message or "").lower()
    if status < 400:
        return Failure("retry", "cut")  # a success status whose reply could not be read: cut short
    if status == 429:
        if TENANCY_PHRASE in text:
            return Failure("throttle", "rate", retry_after)
        if BANDWIDTH_PHRASE in text:
            return Failure("throttle", "bandwidth", retry_after)
        return Failure("throttle", "concurrency", retry_after)
    if status == 503:
        return Failure("throttle", "concurrency", retry_after)
    if status == 500 and TIMEOUT_PHRASE in text:
        return Failure("throttle", "timeout", retry_after)
    if status == 501:
        return Failure("final", "not implemented")
    if status >= 500:
        return Failure("retry", "server", retry_after)
    if status == 408:
        return Failure("retry", "transport", retry_after)
    if status == 401:
        return Failure("fatal", "auth")
    if status == 403:
        return Failure("fatal", "forbidden")
    if status == 404:
        return Failure("fatal", "not found")
    if status == 409:
        return Failure("fatal", "inactive") if code in _NOT_ACTIVE_CODES else Failure("final", "conflict")
    if status == 413:
        return Failure("final", "too large")
    return Failure("final", "bad request")


def classify_failure(exc: BaseException) -> Failure:
    """What a failed attempt means: an error of odsc_magics.errors, or a transport error (requests, urllib3, OS)."""
    from odsc_magics import errors

    if isinstance(exc, errors.DeploymentNotActiveError):
        return Failure("fatal", "inactive")
    if isinstance(exc, errors.ConfigurationError):
        return Failure("fatal", "configuration")
    if isinstance(exc, errors.StreamInterruptedError):
        return Failure("retry", "cut")
    status = getattr(exc, "status", None)
    if isinstance(exc, errors.ServiceError) and status:
        message = getattr(exc, "message", None) or str(exc)
        return classify_status(status, message, code=exc.code, retry_after=getattr(exc, "retry_after", None))
    if isinstance(exc, errors.AuthenticationError):
        return Failure("fatal", "auth")
    if isinstance(exc, errors.NotFoundError):
        return Failure("fatal", "not found")
    if isinstance(exc, errors.ServerError):
        return Failure("retry", "server")
    transport = _transport_failure(exc)
    if transport is not None:
        return transport
    if isinstance(exc, errors.EndpointUnreachableError):
        return Failure("retry", "transport")
    return Failure("final", "bad request" if isinstance(exc, errors.OdscMagicsError) else "error")


def _transport_failure(exc: BaseException) -> Failure | None:
    """The failure a transport error in ``exc``'s chain means (its causes, contexts, args and reasons), or None."""
    chain = _chain(exc)
    for error in chain:
        if isinstance(error, ConnectionRefusedError):
            return Failure("unreachable", "refused")
    for error in chain:
        names = {kind.__name__ for kind in type(error).__mro__}
        if isinstance(error, socket.gaierror) or names & _NAME_RESOLUTION:
            return Failure("unreachable", "unknown host")
        if isinstance(error, OSError) and error.errno in _UNREACHABLE_ERRNOS:
            return Failure("unreachable", "no route")
    for error in chain:
        if {kind.__name__ for kind in type(error).__mro__} & _CONNECT_PHASE:
            return Failure("unreachable", "connect failed")
    for error in chain:
        if {kind.__name__ for kind in type(error).__mro__} & _READ_TIMEOUT or isinstance(error, TimeoutError):
            return Failure("throttle", "timeout")
    for error in chain:
        module = type(error).__module__ or ""
        if isinstance(error, OSError) or module.startswith(("requests", "urllib3", "http.client")):
            return Failure("retry", "transport")
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception it was raised from or wraps, each once."""
    seen: set[int] = set()
    found: list[BaseException] = []
    pending: list[object] = [exc]
    while pending:
        error = pending.pop(0)
        if not isinstance(error, BaseException) or id(error) in seen:
            continue
        seen.add(id(error))
        found.append(error)
        pending.extend([error.__cause__, error.__context__, getattr(error, "reason", None), *error.args])
    return found


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``max_retries`` retries; delay = uniform(0, min(cap, base * 2**n)), at least Retry-After."""

    max_retries: int = 6
    base: float = 0.5
    cap: float = 20.0
    retry_after_cap: float = 60.0

    def delay(self, retry_number: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry_number`` (0 for the first retry)."""
        backoff = random.uniform(0.0, min(self.cap, self.base * (2**retry_number)))
        if retry_after is not None:
            return max(backoff, min(retry_after, self.retry_after_cap))
        return backoff


class Retry(Exception):
    """Raised by an attempt to ask for another one; ``error`` is raised if no retry is left."""

    def __init__(self, error: BaseException, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def run_with_retries(
    attempt: Callable[[int], T],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Call ``attempt(n)`` (n = 1, 2, ...) until it returns; it raises ``Retry`` to ask for another try.

    After ``policy.max_retries`` retries the last ``Retry.error`` is raised. ``on_retry(n, error, delay)``
    is called before each wait.
    """
    number = 1
    while True:
        try:
            return attempt(number)
        except Retry as signal:
            retries_done = number - 1
            if retries_done >= policy.max_retries:
                raise signal.error from None
            wait = policy.delay(retries_done, signal.retry_after)
            if on_retry is not None:
                on_retry(number, signal.error, wait)
            sleep(wait)
            number += 1
