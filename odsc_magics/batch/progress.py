"""The batch progress bar (tqdm.auto: a widget in notebooks, text in terminals) and the closing summary."""

from __future__ import annotations

import threading
import time
from typing import Any

from odsc_magics.batch.limiter import AdaptiveLimiter
from odsc_magics.batch.runner import Tally

_INTERVAL = 0.25  # seconds between bar refreshes; rows finish far more often than that


class Progress:
    """Shows done, failed, retrying, rows/s, tokens/s and the controller's view (concurrency, rate, queue wait)."""

    def __init__(self, *, total: int, enabled: bool = True) -> None:
        self.total = total
        self.enabled = enabled
        self._bar: Any = None
        self._shown = 0
        self._last = 0.0
        self._lock = threading.Lock()
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, unit="row", desc="llm", dynamic_ncols=True)

    def update(self, tally: Tally, limiter: AdaptiveLimiter, *, force: bool = False) -> None:
        """Called as rows finish; redraws at most every quarter second."""
        if self._bar is None:
            return
        now = time.monotonic()
        if not force and now - self._last < _INTERVAL:
            return
        with self._lock:
            self._last = now
            finished = tally.done + tally.failed
            self._bar.update(finished - self._shown)
            self._shown = finished
            elapsed = max(tally.elapsed, 1e-9)
            self._bar.set_postfix(
                failed=tally.failed,
                retrying=tally.retrying,
                tok_s=f"{tally.tokens / elapsed:.0f}",
                **controller_view(limiter),
                refresh=False,
            )

    def close(self, tally: Tally, limiter: AdaptiveLimiter, *, interrupted: bool = False) -> dict[str, Any]:
        """Final redraw and the summary (also returned, and kept in the result's ``attrs``)."""
        summary = summarize(tally, limiter, interrupted=interrupted)
        if self._bar is not None:
            self.update(tally, limiter, force=True)
            self._bar.set_description("llm (interrupted)" if interrupted else "llm")
            self._bar.close()
            self._bar.write(format_summary(summary))
        return summary


def controller_view(limiter: AdaptiveLimiter) -> dict[str, str | int]:
    """What the controller sees: the concurrency, the request-rate limit if one applies, the queue wait."""
    view: dict[str, str | int] = {"conc": limiter.limit}
    rate = limiter.rate.rate if limiter.rate is not None else None
    if rate:
        view["rate"] = f"{rate:.0f}/s"
    if limiter.queue_wait is not None:
        view["wait"] = f"{limiter.queue_wait:.1f}s"
    return view


def summarize(tally: Tally, limiter: AdaptiveLimiter, *, interrupted: bool = False) -> dict[str, Any]:
    """The run's figures as a dict."""
    elapsed = tally.elapsed
    return {
        "rows": tally.total or None,
        "answered": tally.done,
        "resumed_from_checkpoint": tally.resumed,
        "failed": tally.failed,
        "failures": dict(tally.failures),
        "requests": tally.requests,
        "throttled": tally.throttled,
        "completion_tokens": tally.tokens,
        "elapsed_s": round(elapsed, 3),
        "rows_per_s": round((tally.done - tally.resumed + tally.failed) / elapsed, 2) if elapsed else None,
        "effective_concurrency": round(tally.busy_seconds / elapsed, 2) if elapsed else None,
        "final_concurrency": limiter.limit,
        "peak_concurrency": limiter.peak,
        "rate_limit": round(limiter.rate.rate, 1) if limiter.rate is not None and limiter.rate.rate else None,
        "queue_wait_s": round(limiter.queue_wait, 3) if limiter.queue_wait is not None else None,
        "interrupted": interrupted,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """One readable line of the summary."""
    failures = ", ".join(f"{n} × {kind}" for kind, n in summary["failures"].items()) or "none"
    resumed = summary["resumed_from_checkpoint"]
    return (
        f"{summary['answered']} answered ({resumed} from the checkpoint), {summary['failed']} failed "
        f"[{failures}]; {summary['requests']} requests, {summary['throttled']} throttled; "
        f"{summary['completion_tokens']} tokens in {summary['elapsed_s']:.1f} s; "
        f"effective concurrency {summary['effective_concurrency']}"
        + (" — interrupted" if summary["interrupted"] else "")
    )
