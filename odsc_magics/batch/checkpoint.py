"""A durable record of finished batch rows (SQLite), keyed by what was asked, so a re-run resumes."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from odsc_magics.errors import CheckpointError, ValidationError

FIELDS = ("text", "finish_reason", "prompt_tokens", "completion_tokens", "latency_s", "attempts", "error")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    key TEXT PRIMARY KEY,
    ok INTEGER NOT NULL,
    text TEXT,
    finish_reason TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency_s REAL,
    attempts INTEGER,
    error TEXT,
    finished_at REAL NOT NULL
)
"""


def row_key(request: Any, params: dict[str, Any], deployment: str) -> str:
    """The hash of (rendered prompt or messages, parameters, deployment) that names a row's work."""
    blob = json.dumps([request, params, deployment], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


_HINT = (
    'Pass checkpoint= a new file path in a directory you can write to (e.g. checkpoint="runs/reviews.sqlite"), '
    "or the file an earlier predict_frame run wrote; an existing file of another kind is never overwritten."
)


class Checkpoint:
    """Finished rows committed one by one; successful rows are never asked again, failed ones are."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()
        self._db = self._open()
        self._broken: CheckpointError | None = None

    def _open(self) -> sqlite3.Connection:
        """Open or create the database; anything unusable becomes a ValidationError naming the path."""
        if self.path.is_dir():
            raise self._unusable("it is a directory")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unusable(f"its directory cannot be created ({exc.strerror or exc})") from None
        db = None
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            found = {row[1] for row in db.execute("PRAGMA table_info(rows)")}
            if found and not found >= {"key", "ok", "finished_at", *FIELDS}:
                db.close()
                raise self._unusable("it is a SQLite database of another kind (its rows table has other columns)")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            if db is not None:
                db.close()
            reason = str(exc)
            if "not a database" in reason:
                raise self._unusable("it is not a SQLite database") from None
            raise self._unusable(f"it cannot be opened for writing ({reason})") from None
        return db

    def _unusable(self, why: str) -> ValidationError:
        return ValidationError(f"checkpoint {self.path} cannot be used: {why}", hint=_HINT)

    def done(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The successful rows among ``keys``, as dicts of FIELDS."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, dict[str, Any]] = {}
        columns = ", ".join(FIELDS)
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT key, {columns} FROM rows WHERE ok = 1 AND key IN ({marks})"
                for row in self._db.execute(query, chunk):
                    found[row[0]] = dict(zip(FIELDS, row[1:], strict=True))
        return found

    def record(self, key: str, outcome: dict[str, Any]) -> None:
        """Commit one finished row (success or final failure) now."""
        self.record_many([(key, outcome)])

    def record_many(self, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Commit several finished rows (key, outcome) in one transaction: a batch request's rows land together."""
        rows = [
            [key, 1 if outcome.get("error") is None else 0, *[outcome.get(name) for name in FIELDS], time.time()]
            for key, outcome in items
        ]
        if not rows:
            return
        with self._lock:
            if self._broken is not None:  # fail fast: each write would wait out SQLite's busy timeout again
                raise self._broken
            try:
                with self._db:
                    self._db.execute("BEGIN")
                    self._db.executemany(
                        f"INSERT OR REPLACE INTO rows (key, ok, {', '.join(FIELDS)}, finished_at) "
                        f"VALUES (?, ?, {', '.join('?' * len(FIELDS))}, ?)",
                        rows,
                    )
            except sqlite3.Error as exc:
                self._broken = CheckpointError(
                    f"checkpoint {self.path} could not be written ({exc}); the batch stopped.",
                    hint="The answered rows are in the error's .partial (and odsc_magics.last_partial()). "
                    "Make the file writable again (free disk space, close the program holding it) or pass "
                    "another checkpoint=, then run again: rows it already holds are not sent again.",
                    target=str(self.path),
                )
                raise self._broken from None

    def count(self) -> tuple[int, int]:
        """(successful rows, failed rows) recorded."""
        with self._lock:
            ok, failed = self._db.execute(
                "SELECT COALESCE(SUM(ok), 0), COALESCE(SUM(1 - ok), 0) FROM rows"
            ).fetchone()
        return int(ok), int(failed)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
