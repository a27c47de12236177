"""The one error hierarchy of odsc-magics; every error carries the next step to take.

    OdscMagicsError                 base: .hint, .status, .code, .opc_request_id, .target
    ├── ConfigurationError          settings, config file, profile or auth mode unusable
    ├── TemplateError               a {{ name }} prompt template could not be rendered
    ├── ValidationError             a value given by the user is wrong before anything is sent
    ├── ServiceError                the service answered with an error
    │   ├── AuthenticationError     401 NotAuthenticated
    │   ├── NotFoundError           404 NotAuthorizedOrNotFound
    │   ├── DeploymentNotActiveError  the deployment exists but is not ACTIVE
    │   ├── PayloadTooLargeError    413, over the 10 MB payload limit
    │   ├── RateLimitError          429 TooManyRequests, after retries
    │   ├── BadRequestError         400 and other 4xx: the request itself is wrong
    │   └── ServerError             5xx, after retries
    ├── EndpointUnreachableError    connection refused, reset or timed out, after retries
    ├── StreamInterruptedError      a stream ended before it finished (.partial holds the text so far)
    ├── CheckpointError             a batch's checkpoint file could not be written mid-run
    └── DeploymentFailedError       a deployment went FAILED (.diagnosis explains why)

The Python API raises these with full tracebacks; the magics turn them into IPython's
``UsageError`` (one short line plus the hint) at their boundary.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "CheckpointError",
    "ConfigurationError",
    "DeploymentFailedError",
    "DeploymentNotActiveError",
    "EndpointUnreachableError",
    "NotFoundError",
    "OdscMagicsError",
    "PayloadTooLargeError",
    "RateLimitError",
    "ServerError",
    "ServiceError",
    "StreamInterruptedError",
    "TemplateError",
    "ValidationError",
]


class OdscMagicsError(Exception):
    """Base of every error odsc-magics raises on purpose."""

    default_hint: str = ""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        status: int | None = None,
        code: str | None = None,
        opc_request_id: str | None = None,
        target: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.status = status
        self.code = code
        self.opc_request_id = opc_request_id
        self.target = target

    def __str__(self) -> str:
        text = self.message
        if self.hint:
            text = f"{text}\n{self.hint}"
        return text

    def short(self) -> str:
        """One line for the user (message, request id), then the hint on the next line."""
        text = self.message
        if self.opc_request_id:
            text = f"{text} (opc-request-id {self.opc_request_id})"
        if self.hint:
            text = f"{text}\n{self.hint}"
        return text


class ConfigurationError(OdscMagicsError):
    """Settings, the OCI config file, its profile or the auth mode cannot be used."""

    default_hint = "Run `%llm_config` to see the effective settings and where each came from."


class TemplateError(OdscMagicsError):
    """A ``{{ name }}`` template could not be rendered (undefined name, refused attribute, syntax)."""


class ValidationError(OdscMagicsError):
    """A value given by the user is wrong; nothing was sent."""


class ServiceError(OdscMagicsError):
    """The service answered with an error status."""


class AuthenticationError(ServiceError):
    """401 NotAuthenticated: the request's signature was not accepted."""


class NotFoundError(ServiceError):
    """404 NotAuthorizedOrNotFound: no such resource, or no policy allows this caller to use it."""


class DeploymentNotActiveError(ServiceError):
    """The model deployment exists but is not ACTIVE, so it cannot serve predictions."""

    def __init__(self, message: str, *, state: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.state = state


class PayloadTooLargeError(ServiceError):
    """413 PayloadTooLarge: the request body is over the platform's 10 MB limit."""

    default_hint = "Send a shorter prompt: model deployments accept request bodies up to 10 MB."


class RateLimitError(ServiceError):
    """429 TooManyRequests, still after the retries."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class BadRequestError(ServiceError):
    """400 or another 4xx: the request was refused as it stands, retrying will not help."""


class ServerError(ServiceError):
    """5xx from the service or the model server, still after the retries."""


class EndpointUnreachableError(OdscMagicsError):
    """The endpoint could not be reached (refused, reset, timed out), still after the retries."""


class StreamInterruptedError(OdscMagicsError):
    """A streamed answer ended early; ``partial`` keeps the text that had arrived."""

    def __init__(self, message: str, *, partial: Any = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.partial = partial


class CheckpointError(OdscMagicsError):
    """A batch's checkpoint could not be written mid-run (disk full, locked by another program, removed)."""


class DeploymentFailedError(OdscMagicsError):
    """A model deployment ended FAILED; ``diagnosis`` says why and what to do."""

    def __init__(self, message: str, *, diagnosis: Any = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.diagnosis = diagnosis
