"""What a failed attempt says about the endpoint: which limit it hit (request rate, bandwidth, capacity, timeout)."""

from __future__ import annotations

# The kinds of limit the batch controller reacts to.
RATE = "rate"  # the tenancy's request rate: a token bucket of requests per second adapts
BANDWIDTH = "bandwidth"  # the load balancer's bytes per second
CONCURRENCY = "concurrency"  # any other 429/503: too many requests at once
TIMEOUT = "timeout"  # 500 Service Timeout: the request waited past the platform's 60 s limit

# Words of the platform's messages (docs.oracle.com/en-us/iaas/Content/data-science/using/
# model-dep-invoke-throttling.htm and model-dep-predict-endpoint.htm, read 2026-11-29).
_RATE_WORDS = "request-rate limit"
_BANDWIDTH_WORDS = "bandwidth limit"
_TIMEOUT_WORDS = "service timeout"


def limit_kind(exc: BaseException) -> str | None:
    """The limit a failed attempt ran into (RATE, BANDWIDTH, CONCURRENCY, TIMEOUT), or None for other failures."""
    status = getattr(exc, "status", None)
    text = str(getattr(exc, "message", None) or exc).lower()
    if status == 429:
        if _RATE_WORDS in text:
            return RATE
        if _BANDWIDTH_WORDS in text:
            return BANDWIDTH
        return CONCURRENCY
    if status == 503:
        return CONCURRENCY
    if status == 500 and _TIMEOUT_WORDS in text:
        return TIMEOUT
    return None
