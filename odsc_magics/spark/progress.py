"""predict_spark's progress bar (tqdm.auto): tasks from Spark's status tracker, rows from the checkpoint's growth."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from odsc_magics.spark.ledger import STATUS_OK, Ledger

_INTERVAL = 1.0  # seconds between polls: a listing of the run's checkpoint files and the tracker


class SparkProgress:
    """Polls in a driver thread while the job runs; ``close`` stops it and draws the last state."""

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
            elapsed = max(time.monotonic() - self._started, 1e-9)
            finished, running, total = self.tasks
            self._bar.set_postfix(
                failed=self.failed,
                tasks=f"{finished}/{total} ({running} running)",
                task_failures=self.task_failures,
                rows_s=f"{shown / elapsed:.1f}",
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
        tracker = self.spark.sparkContext.statusTracker()
        finished = running = total = failures = 0
        for job in tracker.getJobIdsForGroup(self.group):
            info = tracker.getJobInfo(job)
            for stage in info.stageIds if info is not None else ():
                stage_info = tracker.getStageInfo(stage)
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
