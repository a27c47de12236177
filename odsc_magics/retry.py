"""Bounded retries with exponential backoff, full jitter and Retry-After, shared by the client and batches."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = [
    "RETRYABLE_STATUS",
    "Retry",
    "RetryPolicy",
    "is_retryable_status",
    "parse_retry_after",
    "run_with_retries",
]

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


def is_retryable_status(status: int) -> bool:
    """429 and every 5xx except 501 Not Implemented."""
    return status == 429 or (500 <= status < 600 and status != 501)


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
