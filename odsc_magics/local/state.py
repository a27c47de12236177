"""Persistent state of the local backend: one JSON document written atomically after each mutation."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
LOG_LIMIT = 500  # records per deployment and kind
LOG_KINDS = ("access", "predict")
_COLLECTIONS = ("deployments", "workRequests", "models", "projects", "logGroups", "logs", "retryTokens")


_SECOND: list = [None, ""]  # the last whole second formatted, reused by the access log's hot path


def rfc3339(epoch: float) -> str:
    """``2019-08-25T21:10:29.410Z``: the platform's time format."""
    second = int(epoch)
    if second != _SECOND[0]:
        _SECOND[1] = datetime.fromtimestamp(second, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
        _SECOND[0] = second
    return f"{_SECOND[1]}{min(999, int((epoch - second) * 1000)):03d}Z"


def etag_of(resource: dict) -> str:
    """A strong hash of a resource's public JSON."""
    text = json.dumps(resource, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Store:
    """Deployments, work requests, user models, projects, log groups, logs and retry tokens in ``state.json``.

    The deployments' log records (per deployment and kind, bounded) live in memory and are flushed to
    ``access_logs.json`` / ``predict_logs.json`` by ``flush_logs``, so the predict path never writes to disk.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "state.json"
        self.log_paths = {kind: state_dir / f"{kind}_logs.json" for kind in LOG_KINDS}
        self.data: dict[str, Any] = {"version": 1, **{name: {} for name in _COLLECTIONS}}
        self.logs: dict[str, dict[str, deque]] = {kind: {} for kind in LOG_KINDS}
        self._dirty: set[str] = set()
        self._load()

    def _load(self) -> None:
        if self.path.exists():
            try:
                loaded = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                backup = self.path.with_suffix(f".corrupt-{int(time.time())}")
                os.replace(self.path, backup)
                log.warning("state.json unreadable (%s); moved to %s, starting empty", exc, backup.name)
            else:
                for name in _COLLECTIONS:
                    self.data[name] = loaded.get(name, {})
        for kind, path in self.log_paths.items():
            if path.exists():
                try:
                    loaded = json.loads(path.read_text())
                    self.logs[kind] = {key: deque(items, maxlen=LOG_LIMIT) for key, items in loaded.items()}
                except (OSError, ValueError):
                    self.logs[kind] = {}

    @property
    def deployments(self) -> dict[str, dict]:
        return self.data["deployments"]

    @property
    def work_requests(self) -> dict[str, dict]:
        return self.data["workRequests"]

    @property
    def models(self) -> dict[str, dict]:
        return self.data["models"]

    @property
    def projects(self) -> dict[str, dict]:
        return self.data["projects"]

    @property
    def log_groups(self) -> dict[str, dict]:
        return self.data["logGroups"]

    @property
    def log_objects(self) -> dict[str, dict]:
        """The Logging service's logs (id → Log), not the records in them."""
        return self.data["logs"]

    @property
    def retry_tokens(self) -> dict[str, dict]:
        return self.data["retryTokens"]

    @property
    def access_logs(self) -> dict[str, deque]:
        return self.logs["access"]

    def save(self) -> None:
        """Write ``state.json`` atomically (temp file + rename)."""
        _atomic_write(self.path, json.dumps(self.data, separators=(",", ":")))

    def record(self, kind: str, deployment_id: str, entry: dict) -> None:
        """Append one log record of ``kind`` ("access" or "predict"); ``entry`` has at least ``datetime`` (ms)."""
        by_deployment = self.logs[kind]
        entries = by_deployment.get(deployment_id)
        if entries is None:
            entries = by_deployment[deployment_id] = deque(maxlen=LOG_LIMIT)
        entries.append(entry)
        self._dirty.add(kind)

    def record_access(self, deployment_id: str, entry: dict) -> None:
        """Append one access record (datetime, time, method, path, status, latency, opcRequestId, ...)."""
        self.record("access", deployment_id, entry)

    def flush_logs(self) -> None:
        """Persist the log records added since the last flush."""
        for kind in sorted(self._dirty):
            records = self.logs[kind]
            _atomic_write(
                self.log_paths[kind],
                json.dumps({key: list(value) for key, value in records.items()}, separators=(",", ":")),
            )
        self._dirty.clear()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
