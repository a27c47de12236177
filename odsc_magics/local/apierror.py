"""Errors the local backend answers with: the platform's ``{"code", "message"}`` JSON bodies."""

from __future__ import annotations


class ApiError(Exception):
    """An error response: HTTP status, platform error code and a message for the caller."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def missing(name: str) -> ApiError:
    return ApiError(400, "MissingParameter", f"Missing required parameter: {name}")


def invalid(message: str) -> ApiError:
    return ApiError(400, "InvalidParameter", message)


def not_found(kind: str, resource_id: str) -> ApiError:
    return ApiError(
        404,
        "NotAuthorizedOrNotFound",
        f"Authorization failed or requested resource not found: {kind} {resource_id}",
    )
