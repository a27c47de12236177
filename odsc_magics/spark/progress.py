"""predict_spark's progress bar (tqdm.auto): tasks from Spark's status tracker, rows from the checkpoint's growth."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from odsc_magics.spark.ledger import STATUS_OK, Ledger

_INTERVAL = 1.0  # seconds between polls: a listing of the run's checkpoint files and the tracker


class SparkProgress:
    """Polls in a driver thread while the job runs; ``close`` stops it and draws the last state.

    Shows rows done (the bar; tqdm adds rows/s), failed rows, and the answering stage's tasks: finished of all,
    running, and failed attempts (each retried).
    """

    def __init__(self, spark: Any, ledger: Ledger, *, total: int | None, group: str, enabled: bool = True) -> None:
        self.spark = spark
        self.ledger = ledger
        self.group = group
        self.total = total
        self.enabled = enabled
        self.done = 0
        self.failed = 0
        self.tasks = (0, 0, 0)  # finished, running, all
        self.task_failures = 0
        self._seen: set[str] = set()
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._bar: Any = None
        self._thread: threading.Thread | None = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, unit="row", desc="predict_spark", dynamic_ncols=True)
            self._thread = threading.Thread(target=self._loop, name="odsc-spark-progress", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(_INTERVAL):
            try:
                self.poll()
            except Exception:  # a progress bar never breaks the job it shows
                continue

    def poll(self) -> None:
        """Read new checkpoint files and the job's tasks; redraw."""
        self._count_rows()
        self._count_tasks()
        if self._bar is not None:
            shown = self.done + self.failed
            self._bar.update(shown - self._bar.n)
            finished, running, total = self.tasks
            self._bar.set_postfix(
                failed=self.failed,
                tasks=f"{finished}/{total} ({running} running)",
                task_failures=self.task_failures,
                refresh=False,
            )
            self._bar.refresh()

    def _count_rows(self) -> None:
        from odsc_magics.spark.ledger import read_records

        storage = self.ledger.storage
        new = [path for path in storage.list_all(self.ledger.run_dir()) if path not in self._seen]
        for record in read_records(storage, new):
            if record["status"] == STATUS_OK:
                self.done += 1
            else:
                self.failed += 1
        self._seen.update(new)

    def _count_tasks(self) -> None:
        """The tasks of each job's last stage: the one that answers rows and writes them (stages before it only
        read and shuffle the input, and may be skipped when an earlier job computed them)."""
        tracker = self.spark.sparkContext.statusTracker()
        finished = running = total = failures = 0
        for job in tracker.getJobIdsForGroup(self.group):
            info = tracker.getJobInfo(job)
            stage_info = tracker.getStageInfo(max(info.stageIds)) if info is not None and info.stageIds else None
            if stage_info is None:
                continue
            finished += stage_info.numCompletedTasks
            running += stage_info.numActiveTasks
            total += stage_info.numTasks
            failures += stage_info.numFailedTasks
        self.tasks = (finished, running, total)
        self.task_failures = failures

    def close(self, *, note: str | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._bar is not None:
            with contextlib.suppress(Exception):
                self.poll()
            if note:
                self._bar.set_description(f"predict_spark ({note})")
            self._bar.close()

    def write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line)
