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
ACCESS_LOG_LIMIT = 500
_COLLECTIONS = ("deployments", "workRequests", "models", "projects", "retryTokens")


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
    """Deployments, work requests, user models, projects and retry tokens, persisted in ``state.json``.

    Access logs (per deployment, bounded) live in memory and are flushed to ``access_logs.json`` by
    ``flush_access_logs`` so the predict path never writes to disk.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "state.json"
        self.access_path = state_dir / "access_logs.json"
        self.data: dict[str, Any] = {"version": 1, **{name: {} for name in _COLLECTIONS}}
        self.access_logs: dict[str, deque] = {}
        self._access_dirty = False
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
        if self.access_path.exists():
            try:
                loaded = json.loads(self.access_path.read_text())
                self.access_logs = {key: deque(entries, maxlen=ACCESS_LOG_LIMIT) for key, entries in loaded.items()}
            except (OSError, ValueError):
                self.access_logs = {}

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
    def retry_tokens(self) -> dict[str, dict]:
        return self.data["retryTokens"]

    def save(self) -> None:
        """Write ``state.json`` atomically (temp file + rename)."""
        _atomic_write(self.path, json.dumps(self.data, separators=(",", ":")))

    def record_access(self, deployment_id: str, entry: dict) -> None:
        """Append one access-log entry (time, method, path, status, latency, opcRequestId)."""
        entries = self.access_logs.get(deployment_id)
        if entries is None:
            entries = self.access_logs[deployment_id] = deque(maxlen=ACCESS_LOG_LIMIT)
        entries.append(entry)
        self._access_dirty = True

    def flush_access_logs(self) -> None:
        """Persist the access logs if any were added since the last flush."""
        if not self._access_dirty:
            return
        self._access_dirty = False
        _atomic_write(
            self.access_path,
            json.dumps({key: list(value) for key, value in self.access_logs.items()}, separators=(",", ":")),
        )


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
