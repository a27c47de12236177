"""Which limit a failed attempt ran into, told apart by status and the platform's message."""

from __future__ import annotations

import pytest

from odsc_magics import errors
from odsc_magics.batch.signals import BANDWIDTH, CONCURRENCY, RATE, TIMEOUT, limit_kind
from odsc_magics.local import frontend


def rate_limited(message: str) -> errors.RateLimitError:
    return errors.RateLimitError(f"429 TooManyRequests: {message}", status=429, code="TooManyRequests")


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (rate_limited(frontend.TENANCY_MESSAGE), RATE),
        (rate_limited(frontend.BANDWIDTH_MESSAGE), BANDWIDTH),
        (rate_limited("Too many requests"), CONCURRENCY),
        (errors.ServerError("503 ServiceUnavailable: busy", status=503), CONCURRENCY),
        (errors.ServerError(f"500 InternalServerError: {frontend.TIMEOUT_MESSAGE}", status=500), TIMEOUT),
        (errors.ServerError("500 InternalServerError: model crashed", status=500), None),
        (errors.EndpointUnreachableError("connection reset"), None),
        (errors.BadRequestError("400 Bad Request: too long", status=400), None),
    ],
)
def test_each_platform_answer_names_its_limit(error, kind):
    assert limit_kind(error) == kind
