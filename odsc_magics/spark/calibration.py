"""What the endpoint holds, found on the driver before the job starts, so that its tasks share that much.

Tasks that each probe for capacity on their own overshoot together (each sees room the others are about to
take) and pay for it in 429s. So on a first run with ``concurrency="auto"`` and no ``max_concurrency``, the
driver answers the first rows itself with predict_frame's adaptive controller until the endpoint has throttled
a few times: the level it settles at is the job's ``max_concurrency``, split over the tasks. The rows answered
here go into the checkpoint like a task's (in a folder of their own that every task reads with its own), so
the job does not send them again.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from odsc_magics.spark.budget import split
from odsc_magics.spark.partition import DRIVER_PARTITION, AnswerRows

SAMPLE_ROWS = 512  # at most this many rows answered on the driver
THROTTLES = 3  # capacity throttles that settle the estimate


def find_capacity(sdf: Any, answer: AnswerRows, *, max_rps: float | None) -> int | None:
    """The concurrency the endpoint held when it throttled, or None when the sample never made it throttle."""
    sample = sdf.limit(SAMPLE_ROWS).toPandas()
    if sample.empty:
        return None
    budget = split(1, concurrency="auto", max_concurrency=None, max_rps=max_rps)
    driver = replace(answer, budget=budget, keyed=False, on_error="record", record_failures=False)

    def settled(tally: Any, limiter: Any) -> bool:
        return tally.throttled >= THROTTLES and limiter.ceiling is not None

    _, runner = driver.send_rows(sample, DRIVER_PARTITION, 0, until=settled)
    if runner is None or runner.limiter.ceiling is None:
        return None
    return max(1, int(runner.limiter.ceiling))
