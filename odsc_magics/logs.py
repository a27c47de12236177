"""Model deployment logs: log groups and logs (OCI Logging), and their records through Logging Search."""

from __future__ import annotations

import datetime as dt
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from odsc_magics.config import LLMSettings
from odsc_magics.context import get_context
from odsc_magics.errors import NotFoundError, ValidationError

__all__ = [
    "LogRef",
    "deployment_log_refs",
    "follow_logs",
    "list_log_groups",
    "list_logs",
    "resolve_log_ids",
    "search_deployment_logs",
]

MAX_WINDOW = dt.timedelta(days=14)  # Logging Search answers at most 14 days per query
MAX_LIMIT = 1000
FOLLOW_MEMORY = 2 * MAX_LIMIT  # ids kept while following: a fetch (at most MAX_LIMIT) repeats only recent ones
FOLLOW_INTERVAL_S = 3.0

_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lock = threading.Lock()


@dataclass(frozen=True)
class LogRef:
    """One log a deployment writes to: its kind ("access" or "predict"), log group and log OCIDs."""

    kind: str
    log_group_id: str
    log_id: str


def _clients_of(context: Any) -> dict:
    """The Logging and Logging Search SDK clients of a context (on the local backend for backend=local)."""
    with _lock:
        found = _clients.get(context)
        if found is not None:
            return found
        import oci

        found = {
            "management": context.sdk_client(oci.logging.LoggingManagementClient),
            "search": context.sdk_client(oci.loggingsearch.LogSearchClient),
        }
        _clients[context] = found
        return found


def _entry(item: Any) -> dict:
    return {
        "id": item.id,
        "display_name": item.display_name,
        "time_created": _rfc3339(getattr(item, "time_created", None)),
    }


def list_log_groups(*, settings: LLMSettings | None = None, context: Any = None) -> list[dict]:
    """The log groups of the compartment: ``[{"id", "display_name", "time_created"}]``."""
    import oci

    context = context or get_context(settings)
    if not context.compartment_id:
        return []
    client = _clients_of(context)["management"]
    found = context.call(
        "Listing log groups",
        oci.pagination.list_call_get_all_results,
        client.list_log_groups,
        context.compartment_id,
    ).data
    return [_entry(g) for g in found]


def list_logs(log_group_id: str, *, settings: LLMSettings | None = None, context: Any = None) -> list[dict]:
    """The logs of a log group: ``[{"id", "display_name", "time_created"}]``."""
    import oci

    context = context or get_context(settings)
    client = _clients_of(context)["management"]
    found = context.call(
        "Listing the logs of the log group",
        oci.pagination.list_call_get_all_results,
        client.list_logs,
        log_group_id,
    ).data
    return [_entry(item) for item in found]


def resolve_log_ids(
    log_group: str,
    *,
    access_log: str | None = None,
    predict_log: str | None = None,
    settings: LLMSettings | None = None,
    context: Any = None,
) -> dict[str, str | None]:
    """The OCIDs of a log group and of its access and predict logs, each given by display name or OCID.

    Without ``access_log`` / ``predict_log``, the group's only log whose name contains "access" / "predict"
    is taken (None when there is no such single log). Returns ``{"log_group_id", "access_log_id",
    "predict_log_id"}``; a name that is not found raises ``NotFoundError`` listing the names there are.
    """
    context = context or get_context(settings)
    group_id = log_group
    if not log_group.startswith("ocid1."):
        groups = list_log_groups(context=context)
        found = [g["id"] for g in groups if g["display_name"] == log_group]
        if not found:
            names = ", ".join(g["display_name"] for g in groups) or "none"
            raise NotFoundError(
                f"No log group named {log_group!r} in the compartment (log groups: {names}).",
                hint="Give the name or OCID of a log group of the compartment (OCI Console: Logging > Log Groups).",
            )
        group_id = found[0]
    entries = list_logs(group_id, context=context)
    ids = {
        "log_group_id": group_id,
        "access_log_id": _pick_log(entries, access_log, "access", log_group),
        "predict_log_id": _pick_log(entries, predict_log, "predict", log_group),
    }
    if not (ids["access_log_id"] or ids["predict_log_id"]):
        names = ", ".join(e["display_name"] for e in entries) or "none"
        raise NotFoundError(
            f"Log group {log_group} has no log named like 'access' or 'predict' (its logs: {names}).",
            hint="Name the logs to use (--access-log / --predict-log, or access_log_id / predict_log_id).",
        )
    return ids


def _pick_log(entries: list[dict], wanted: str | None, default_word: str, group: str) -> str | None:
    """A log OCID from a name or OCID; without one, the group's only log whose name has ``default_word``."""
    if wanted and wanted.startswith("ocid1."):
        return wanted
    if wanted:
        found = [e["id"] for e in entries if e["display_name"] == wanted]
        if not found:
            names = ", ".join(e["display_name"] for e in entries) or "none"
            raise NotFoundError(f"No log named {wanted!r} in log group {group} (its logs: {names}).")
        return found[0]
    found = [e["id"] for e in entries if default_word in e["display_name"].lower()]
    return found[0] if len(found) == 1 else None


def deployment_log_refs(raw: Any) -> list[LogRef]:
    """The access and predict logs named by a deployment's ``categoryLogDetails`` (none when unset)."""
    details = getattr(raw, "category_log_details", None)
    refs = []
    for kind in ("access", "predict"):
        log = getattr(details, kind, None) if details is not None else None
        if log is not None and getattr(log, "log_id", None) and getattr(log, "log_group_id", None):
            refs.append(LogRef(kind, log.log_group_id, log.log_id))
    return refs


def _rfc3339(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        value = dt.datetime.fromtimestamp(value / 1000.0, tz=dt.timezone.utc)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return str(value)


def _as_datetime(value: Any) -> dt.datetime | None:
    """A timezone-aware datetime from a datetime, an RFC3339 string, epoch seconds or a timedelta ago."""
    if value is None:
        return None
    now = dt.datetime.now(dt.timezone.utc)
    if isinstance(value, dt.timedelta):
        return now - value
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(
                f"since={value!r} is not a time.",
                hint="Give an RFC3339 time (2025-01-31T12:00:00Z), a datetime, or a timedelta.",
            ) from None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    raise ValidationError(f"since={value!r} is not a time.", hint="Give an RFC3339 time, a datetime or a timedelta.")


def _record(result: Any, kind: str) -> dict | None:
    data = result.get("data") if isinstance(result, dict) else getattr(result, "data", None)
    if not isinstance(data, dict):
        return None
    content = data.get("logContent") or {}
    body = content.get("data") if isinstance(content, dict) else None
    message = body.get("message") if isinstance(body, dict) else None
    if message is None:
        return None
    stamp = data.get("datetime")
    time_text = _rfc3339(stamp) if isinstance(stamp, (int, float)) else content.get("time")
    type_ = str(content.get("type") or "")
    if type_.endswith((".access", ".predict")):
        kind = type_.rsplit(".", 1)[-1]
    return {
        "time": time_text,
        "kind": kind,
        "message": str(message),
        "id": content.get("id"),
        "_ms": float(stamp) if isinstance(stamp, (int, float)) else 0.0,
    }


def search_deployment_logs(
    context: Any,
    deployment_id: str,
    refs: list[LogRef],
    *,
    tail: int = 50,
    since: Any = None,
    until: Any = None,
    not_before: Any = None,
) -> list[dict]:
    """The newest ``tail`` records of the deployment in ``refs`` logs, oldest first (newest last).

    ``since`` defaults to ``not_before`` (the deployment's creation), within Logging Search's 14-day window.
    Records are ``{"time", "kind", "message", "id"}``.
    """
    import oci

    if tail < 1:
        raise ValidationError(f"tail must be at least 1, not {tail}.")
    end = _as_datetime(until) or dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)
    start = _as_datetime(since) or _as_datetime(not_before) or end - MAX_WINDOW
    start = max(start, end - MAX_WINDOW)
    client = _clients_of(context)["search"]
    rows: list[dict] = []
    for ref in refs:
        query = (
            f'search "{context.compartment_id}/{ref.log_group_id}/{ref.log_id}" '
            f"| where source = '*{deployment_id}' | sort by datetime desc"
        )
        details = oci.loggingsearch.models.SearchLogsDetails(
            time_start=start, time_end=end, search_query=query, is_return_field_info=False
        )
        response = context.call(
            f"Searching the {ref.kind} log", client.search_logs, details, limit=min(MAX_LIMIT, tail)
        )
        for result in response.data.results or []:
            record = _record(result, ref.kind)
            if record is not None:
                rows.append(record)
    rows.sort(key=lambda r: (r["_ms"], r["time"] or ""))
    rows = rows[-tail:]
    for row in rows:
        row.pop("_ms", None)
    return rows


def follow_logs(
    fetch: Callable[..., list[dict]],
    *,
    interval: float = FOLLOW_INTERVAL_S,
    tail: int = 20,
    timeout: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[dict]:
    """Yield the last ``tail`` records, then each new one as it arrives (de-duplicated by record id).

    ``fetch(tail=..., since=...)`` reads records oldest first; ``timeout`` ends the tail (None: until the
    caller stops iterating or is interrupted).
    """
    seen: dict = {}  # ids of the latest records, oldest first (bounded by FOLLOW_MEMORY)
    started = time.monotonic()
    since = None
    batch = tail
    while True:
        for record in fetch(tail=batch, since=since):
            key = record.get("id") or (record["time"], record["kind"], record["message"])
            if key in seen:
                continue
            seen[key] = None
            if len(seen) > FOLLOW_MEMORY:
                del seen[next(iter(seen))]
            if record.get("time"):
                since = record["time"]
            yield record
        batch = MAX_LIMIT
        if timeout is not None and time.monotonic() - started >= timeout:
            return
        sleep(interval)
