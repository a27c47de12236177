"""Logging (``/20200531`` log groups and logs) and Logging Search (``/20190909/search``) over the deployments' logs.

The local backend has one log group, ``odsc-magics-local``, with an access and a predict log. A deployment whose
``categoryLogDetails`` names one of them has its records there: access records from the data plane, predict
records from its model server (start-up lines, one line per request it answered, a failure's reason).
"""

from __future__ import annotations

import re
import time
from datetime import datetime

from aiohttp import web

from odsc_magics.local.apierror import invalid, missing, not_found
from odsc_magics.local.control import runtime_of
from odsc_magics.local.http import filter_and_sort, json_response, paginate, read_json, required_query
from odsc_magics.local.identity import new_ocid
from odsc_magics.local.runtime import Runtime
from odsc_magics.local.state import etag_of, rfc3339

LOGGING = "/20200531"
SEARCH = "/20190909"
GROUP_NAME = "odsc-magics-local"
MAX_WINDOW_S = 14 * 24 * 3600
MAX_LIMIT = 1000
EVENT_TYPE = "com.oraclecloud.datascience.modeldeployment."
_QUOTED = re.compile(r'"([^"]+)"')
_SOURCE = re.compile(r"where\s+source\s*=\s*'([^']*)'", re.IGNORECASE)
_SORT = re.compile(r"sort\s+by\s+datetime(?:\s+(asc|desc))?", re.IGNORECASE)


def seed(runtime: Runtime) -> None:
    """On first start (or first start of this version): the log group with its access and predict logs."""
    store, identity = runtime.store, runtime.identity
    if store.log_groups:
        return
    now = rfc3339(time.time())
    group_id = new_ocid("loggroup")
    store.log_groups[group_id] = {
        "id": group_id,
        "compartmentId": identity.compartment_id,
        "displayName": GROUP_NAME,
        "description": "Access and predict logs of the local backend's model deployments",
        "definedTags": {},
        "freeformTags": {},
        "systemTags": {},
        "timeCreated": now,
        "timeLastModified": now,
        "lifecycleState": "ACTIVE",
    }
    for kind in ("access", "predict"):
        log_id = new_ocid("log")
        store.log_objects[log_id] = {
            "id": log_id,
            "logGroupId": group_id,
            "displayName": kind,
            "isEnabled": True,
            "lifecycleState": "ACTIVE",
            "logType": "CUSTOM",
            "definedTags": {},
            "freeformTags": {},
            "systemTags": {},
            "timeCreated": now,
            "timeLastModified": now,
            "retentionDuration": 30,
            "compartmentId": identity.compartment_id,
        }
    store.save()


# --- Logging management ---------------------------------------------------------------------------------


def _log_group(runtime: Runtime, request: web.Request) -> dict:
    group = runtime.store.log_groups.get(request.match_info["groupId"])
    if group is None:
        raise not_found("log group", request.match_info["groupId"])
    return group


async def list_log_groups(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    compartment = required_query(request, "compartmentId")
    items = [g for g in runtime.store.log_groups.values() if g["compartmentId"] == compartment]
    items = filter_and_sort(
        request,
        items,
        filters={"displayName": "displayName"},
        sort_keys={"timeCreated": "timeCreated", "displayName": "displayName"},
        default_sort="timeCreated",
    )
    page, headers = paginate(request, items)
    return json_response(page, headers=headers)


async def get_log_group(request: web.Request) -> web.Response:
    group = _log_group(runtime_of(request), request)
    return json_response(group, headers={"etag": etag_of(group)})


async def list_logs(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    group = _log_group(runtime, request)
    items = [entry for entry in runtime.store.log_objects.values() if entry["logGroupId"] == group["id"]]
    items = filter_and_sort(
        request,
        items,
        filters={"displayName": "displayName", "logType": "logType", "lifecycleState": "lifecycleState"},
        sort_keys={"timeCreated": "timeCreated", "displayName": "displayName"},
        default_sort="timeCreated",
    )
    page, headers = paginate(request, items)
    return json_response(page, headers=headers)


async def get_log(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    group = _log_group(runtime, request)
    entry = runtime.store.log_objects.get(request.match_info["logId"])
    if entry is None or entry["logGroupId"] != group["id"]:
        raise not_found("log", request.match_info["logId"])
    return json_response(entry, headers={"etag": etag_of(entry)})


# --- Logging Search -------------------------------------------------------------------------------------


def _parse_time(details: dict, name: str) -> float:
    value = details.get(name)
    if not value:
        raise missing(name)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise invalid(f"{name} is not an RFC3339 time") from None


def _record(runtime: Runtime, kind: str, deployment: dict, ref: dict, entry: dict) -> dict:
    if kind == "access":
        data = {
            "message": f"{entry['method']} {entry['path']} 1.1",
            "logEmissionTime": entry["time"],
            "status": entry["status"],
            "modelLatency": entry["latency"],
            "opcRequestId": entry.get("opcRequestId"),
        }
    else:
        data = {"message": entry["message"], "logEmissionTime": entry["time"]}
        if entry.get("opcRequestId"):
            data["opcRequestId"] = entry["opcRequestId"]
    return {
        "data": {
            "datetime": entry["datetime"],
            "logContent": {
                "id": entry["id"],
                "time": entry["time"],
                "source": deployment["id"],
                "specversion": "1.0",
                "type": EVENT_TYPE + kind,
                "oracle": {
                    "compartmentid": deployment["compartmentId"],
                    "loggroupid": ref.get("logGroupId"),
                    "logid": ref.get("logId"),
                    "tenantid": runtime.identity.tenancy,
                    "ingestedtime": entry["time"],
                },
                "data": data,
            },
        }
    }


async def search_logs(request: web.Request) -> web.Response:
    """``POST /20190909/search``: ``search "<compartment>/<logGroup>/<log>" | where source = '*<md>' | sort``."""
    runtime = runtime_of(request)
    details = await read_json(request)
    if not isinstance(details, dict):
        raise invalid("The request body must be a SearchLogsDetails object")
    start, end = _parse_time(details, "timeStart"), _parse_time(details, "timeEnd")
    if end < start:
        raise invalid("timeEnd is before timeStart")
    if end - start > MAX_WINDOW_S:
        raise invalid("The search time range is larger than 14 days")
    query = details.get("searchQuery")
    if not query:
        raise missing("searchQuery")
    head, _, tail = str(query).partition("|")
    if not head.strip().lower().startswith("search"):
        raise invalid('searchQuery must start with search "<compartment>/<logGroup>/<log>"')
    targets = [path.strip().split("/") for path in _QUOTED.findall(head)]
    if not targets:
        raise invalid('searchQuery names no log: search "<compartment>/<logGroup>/<log>"')
    source = _SOURCE.search(tail)
    pattern = source.group(1) if source else None
    sort = _SORT.search(tail)
    descending = not (sort and (sort.group(1) or "").lower() == "asc")

    start_ms, end_ms = start * 1000, end * 1000
    results = []
    for deployment in runtime.store.deployments.values():
        if pattern is not None and not _matches(deployment["id"], pattern):
            continue
        logs = deployment.get("categoryLogDetails") or {}
        for kind in ("access", "predict"):
            ref = logs.get(kind) or {}
            if not ref.get("logId") or not any(_targets(t, deployment, ref) for t in targets):
                continue
            for entry in runtime.store.logs[kind].get(deployment["id"], ()):
                if start_ms <= entry["datetime"] < end_ms:
                    results.append(_record(runtime, kind, deployment, ref, entry))
    results.sort(key=lambda r: (r["data"]["datetime"], r["data"]["logContent"]["id"]), reverse=descending)
    try:
        limit = int(request.query.get("limit") or 100)
    except ValueError:
        raise invalid("limit must be an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid(f"limit must be between 1 and {MAX_LIMIT}")
    page, headers = paginate(request, results)
    body = {"results": page, "fields": [], "summary": {"resultCount": len(page), "fieldCount": 0}}
    return json_response(body, headers=headers)


def _matches(value: str, pattern: str) -> bool:
    regex = "^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$"
    return re.match(regex, value) is not None


def _targets(target: list[str], deployment: dict, ref: dict) -> bool:
    """Whether ``search "<compartment>[/<logGroup>[/<log>]]"`` covers this deployment's log."""
    if target[0] != deployment["compartmentId"]:
        return False
    if len(target) > 1 and target[1] != ref.get("logGroupId"):
        return False
    return not (len(target) > 2 and target[2] != ref.get("logId"))


def add_routes(app: web.Application) -> None:
    """Register the Logging and Logging Search routes."""
    app.router.add_routes(
        [
            web.get(f"{LOGGING}/logGroups", list_log_groups, allow_head=False),
            web.get(f"{LOGGING}/logGroups/{{groupId}}", get_log_group, allow_head=False),
            web.get(f"{LOGGING}/logGroups/{{groupId}}/logs", list_logs, allow_head=False),
            web.get(f"{LOGGING}/logGroups/{{groupId}}/logs/{{logId}}", get_log, allow_head=False),
            web.post(f"{SEARCH}/search", search_logs),
        ]
    )
