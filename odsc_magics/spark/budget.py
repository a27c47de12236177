"""The endpoint's budget split over the tasks that run at once: each task's controller adapts under its share.

Spark has no shared mutable state across tasks (accumulators are write-only, broadcasts read-only) and each
running Python worker is its own process, so there is no central coordinator: each task gets a static share of
the concurrency and request-rate budget and its own adaptive controller (odsc_magics.batch.limiter) finds what
the endpoint holds under that share, backing off on 429/503 like every other task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from odsc_magics.predict_limits import TENANCY_RPS

# Of the tenancy's request rate (150/s, predict_limits), what a job takes when max_rps is not given: the rest
# is left to the tenancy's other clients (notebooks, other deployments' callers).
DEFAULT_RPS_SHARE = 0.8
# The job's total concurrency when max_concurrency is not given: the batch runner's own ceiling for one
# process (BatchRunner's max_concurrency default), which auto never exceeds within one kernel either.
DEFAULT_MAX_CONCURRENCY = 256


@dataclass(frozen=True)
class TaskBudget:
    """One task's share: its concurrency ("auto" or a fixed int), its ceiling, and its request-rate cap."""

    slots: int
    concurrency: int | str
    max_concurrency: int
    max_rps: float | None
    remainder: int = 0  # max_concurrency's remainder over the slots: that many tasks hold one more

    def for_partition(self, partition: int) -> TaskBudget:
        """The share of the task of ``partition``: the remainder goes to partitions ``0 .. remainder-1`` of each
        wave of ``slots`` tasks, so tasks running side by side hold the whole budget, not a rounded-down part."""
        if not self.remainder or partition % self.slots >= self.remainder:
            return self
        more = self.max_concurrency + 1
        concurrency = self.concurrency if self.concurrency == "auto" else more
        return TaskBudget(self.slots, concurrency, more, self.max_rps)


def task_slots(spark: Any, partitions: int | None = None) -> int:
    """How many tasks of the job run at once: the cluster's task slots, at most the number of partitions.

    Slots: with dynamic allocation, maxExecutors × cores per executor (what the job can grow to, so shares
    stay safe as executors are added); else the default parallelism (cores of all executors; local[N] → N);
    divided by spark.task.cpus.
    """
    sc = spark.sparkContext
    conf = sc.getConf()
    per_task = max(1, int(conf.get("spark.task.cpus") or 1))
    slots = 0
    if (conf.get("spark.dynamicAllocation.enabled") or "false").lower() == "true":
        executors, cores = conf.get("spark.dynamicAllocation.maxExecutors"), conf.get("spark.executor.cores")
        if executors and cores and executors.isdigit() and cores.isdigit():
            slots = int(executors) * int(cores)
    slots = (slots or sc.defaultParallelism) // per_task
    if partitions:
        slots = min(slots, partitions)
    return max(1, slots)


def split(
    slots: int, *, concurrency: int | str, max_concurrency: int | None, max_rps: float | None
) -> TaskBudget:
    """Divide the job's budget by ``slots``: every share at least one request in flight."""
    total = max_concurrency or DEFAULT_MAX_CONCURRENCY
    if concurrency != "auto":
        total = min(total, int(concurrency)) if max_concurrency else int(concurrency)
    share = max(1, total // slots)
    rps = max_rps if max_rps is not None else DEFAULT_RPS_SHARE * TENANCY_RPS
    return TaskBudget(
        slots=slots,
        concurrency="auto" if concurrency == "auto" else share,
        max_concurrency=share,
        max_rps=rps / slots,
        remainder=total % slots if total >= slots else 0,
    )
