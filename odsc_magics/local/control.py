"""The control plane (``/20190101``): model deployments and their work requests."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import time
from typing import Any

from aiohttp import web

from odsc_magics.local import catalog
from odsc_magics.local.apierror import ApiError, invalid, missing, not_found
from odsc_magics.local.http import filter_and_sort, json_response, paginate, read_json, required_query
from odsc_magics.local.identity import new_ocid
from odsc_magics.local.lifecycle import render_work_request, work_request_errors, work_request_logs
from odsc_magics.local.runtime import RUNTIME, Runtime
from odsc_magics.local.state import etag_of, rfc3339
from odsc_magics.vllm_container import BANDWIDTH_MBPS

BASE = "/20190101"
_ENV_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,29}[A-Za-z0-9]$")
_MD_SUMMARY_DROP = {"lifecycleDetails"}


def runtime_of(request: web.Request) -> Runtime:
    """The process's runtime, with every lifecycle transition that has come due applied."""
    runtime = request.app[RUNTIME]
    runtime.lifecycle.advance()
    return runtime


def public(record: dict) -> dict:
    """A stored record without its private (underscore) bookkeeping keys."""
    return {key: value for key, value in record.items() if not key.startswith("_")}


def render_deployment(runtime: Runtime, record: dict) -> dict:
    """The ModelDeployment JSON, with ``modelDeploymentUrl`` on this process's endpoint."""
    body = public(record)
    body["modelDeploymentUrl"] = runtime.url_of(record["id"])
    return body


def _check_if_match(request: web.Request, etag: str) -> None:
    wanted = request.headers.get("if-match")
    if wanted and wanted != "*" and wanted.strip('"') != etag:
        raise ApiError(412, "PreconditionFailed", "The if-match etag does not match the resource's current etag")


def _deployment(runtime: Runtime, request: web.Request) -> dict:
    deployment_id = request.match_info["id"]
    record = runtime.store.deployments.get(deployment_id)
    if record is None:
        raise not_found("model deployment", deployment_id)
    return record


def retry_lookup(runtime: Runtime, request: web.Request, operation: str, body: Any) -> dict | None:
    """None without ``opc-retry-token``; {"replay": record} for a token already used; else what to store.

    A token reused with a different body is refused (409 InvalidatedRetryToken).
    """
    token = request.headers.get("opc-retry-token")
    if not token:
        return None
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    seen = runtime.store.retry_tokens.get(f"{operation}:{token}")
    if seen is None:
        return {"key": f"{operation}:{token}", "digest": digest}
    if seen["digest"] != digest:
        raise ApiError(
            409, "InvalidatedRetryToken", "The opc-retry-token was already used with a different request body"
        )
    return {"replay": seen}


# --- model deployments ------------------------------------------------------------------------------


def _validate_config(runtime: Runtime, config: Any, *, partial: bool = False) -> None:
    if not isinstance(config, dict):
        raise invalid("modelDeploymentConfigurationDetails must be an object")
    kind = config.get("deploymentType")
    if not kind and not partial:
        raise missing("modelDeploymentConfigurationDetails.deploymentType")
    if kind and kind != "SINGLE_MODEL":
        raise invalid(f"deploymentType {kind} is not supported here; use SINGLE_MODEL")
    model_config = config.get("modelConfigurationDetails")
    if model_config is None:
        if partial:
            return
        raise missing("modelDeploymentConfigurationDetails.modelConfigurationDetails")
    if not isinstance(model_config, dict):
        raise invalid("modelConfigurationDetails must be an object")
    model_id = model_config.get("modelId")
    if not model_id and not partial:
        raise missing("modelConfigurationDetails.modelId")
    if model_id and model_id not in catalog.SERVICE_MODELS_BY_ID and model_id not in runtime.store.models:
        raise ApiError(400, "RelatedResourceNotAuthorizedOrNotFound", f"Model {model_id} not found or not authorized")
    instance = model_config.get("instanceConfiguration")
    if instance is None:
        if not partial:
            raise missing("modelConfigurationDetails.instanceConfiguration")
    elif not isinstance(instance, dict):
        raise invalid("instanceConfiguration must be an object")
    else:
        shape = instance.get("instanceShapeName")
        if not shape:
            if not partial:
                raise missing("modelConfigurationDetails.instanceConfiguration.instanceShapeName")
        elif shape not in catalog.SHAPE_NAMES:
            raise invalid(f"Shape {shape} is not a supported model deployment shape")
    env_config = config.get("environmentConfigurationDetails")
    if env_config is not None:
        if not isinstance(env_config, dict):
            raise invalid("environmentConfigurationDetails must be an object")
        env = env_config.get("environmentVariables") or {}
        if not isinstance(env, dict):
            raise invalid("environmentVariables must be an object of strings")
        for key, value in env.items():
            if not _ENV_KEY.match(key) or key.endswith("_"):
                raise invalid(f"environment variable name {key!r} is not valid")
            if not isinstance(value, str):
                raise invalid(f"environment variable {key} must be a string")
        if len(json.dumps(env)) > 2048:
            raise invalid("environmentVariables are larger than 2048 bytes")


def _fill_defaults(config: dict) -> dict:
    model_config = config.setdefault("modelConfigurationDetails", {})
    model_config.setdefault("scalingPolicy", {"policyType": "FIXED_SIZE", "instanceCount": 1})
    model_config.setdefault("bandwidthMbps", BANDWIDTH_MBPS)
    return config


async def create_deployment(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    details = await read_json(request)
    if not isinstance(details, dict):
        raise invalid("The request body must be a CreateModelDeploymentDetails object")
    retry = retry_lookup(runtime, request, "createModelDeployment", details)
    if retry and "replay" in retry:
        record = runtime.store.deployments[retry["replay"]["resourceId"]]
        return _deployment_answer(runtime, record, retry["replay"]["workRequestId"], created=True)
    for name in ("compartmentId", "projectId", "modelDeploymentConfigurationDetails"):
        if not details.get(name):
            raise missing(name)
    if details["projectId"] not in runtime.store.projects:
        raise ApiError(
            400,
            "RelatedResourceNotAuthorizedOrNotFound",
            f"Project {details['projectId']} not found or not authorized",
        )
    _validate_config(runtime, details["modelDeploymentConfigurationDetails"])
    now = time.time()
    record = {
        "id": new_ocid("datasciencemodeldeployment"),
        "timeCreated": rfc3339(now),
        "displayName": details.get("displayName") or time.strftime("modeldeployment%Y%m%d%H%M%S", time.gmtime(now)),
        "description": details.get("description"),
        "projectId": details["projectId"],
        "createdBy": runtime.identity.user,
        "compartmentId": details["compartmentId"],
        "modelDeploymentConfigurationDetails": _fill_defaults(details["modelDeploymentConfigurationDetails"]),
        "categoryLogDetails": details.get("categoryLogDetails"),
        "modelDeploymentSystemData": {"systemInfraType": "INSTANCE_POOL", "currentInstanceCount": 0},
        "lifecycleState": "CREATING",
        "lifecycleDetails": None,
        "freeformTags": details.get("freeformTags") or {},
        "definedTags": details.get("definedTags") or {},
    }
    runtime.store.deployments[record["id"]] = record
    work_request = runtime.lifecycle.start(record, "CREATE", now=now)
    if retry:
        runtime.store.retry_tokens[retry["key"]] = {
            "digest": retry["digest"],
            "resourceId": record["id"],
            "workRequestId": work_request["id"],
            "time": now,
        }
    runtime.store.save()
    return _deployment_answer(runtime, record, work_request["id"], created=True)


def _deployment_answer(runtime: Runtime, record: dict, wr_id: str | None, *, created: bool = False) -> web.Response:
    body = render_deployment(runtime, record)
    headers = {"etag": etag_of(body)}
    if wr_id:
        headers["opc-work-request-id"] = wr_id
    if created:
        headers["location"] = f"{runtime.endpoint}{BASE}/modelDeployments/{record['id']}"
    return json_response(body, headers=headers)


async def get_deployment(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    record = _deployment(runtime, request)
    return _deployment_answer(runtime, record, None)


async def list_deployments(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    compartment = required_query(request, "compartmentId")
    items = [d for d in runtime.store.deployments.values() if d["compartmentId"] == compartment]
    items = filter_and_sort(
        request,
        items,
        filters={
            "id": "id",
            "projectId": "projectId",
            "displayName": "displayName",
            "lifecycleState": "lifecycleState",
            "createdBy": "createdBy",
        },
        sort_keys={"timeCreated": "timeCreated", "displayName": "displayName"},
        default_sort="timeCreated",
    )
    page, headers = paginate(request, items)
    summaries = []
    for record in page:
        body = render_deployment(runtime, record)
        for key in _MD_SUMMARY_DROP:
            body.pop(key, None)
        summaries.append(body)
    return json_response(summaries, headers=headers)


async def _operate(request: web.Request, operation: str, *, body: dict | None = None) -> web.Response:
    runtime = runtime_of(request)
    record = _deployment(runtime, request)
    _check_if_match(request, etag_of(render_deployment(runtime, record)))
    relaunch = _apply_update(runtime, record, body) if body is not None else True
    work_request = runtime.lifecycle.start(record, operation, relaunch=relaunch)
    runtime.store.save()
    return web.Response(status=202, headers={"opc-work-request-id": work_request["id"]})


async def activate_deployment(request: web.Request) -> web.Response:
    return await _operate(request, "ACTIVATE")


async def deactivate_deployment(request: web.Request) -> web.Response:
    return await _operate(request, "DEACTIVATE")


async def delete_deployment(request: web.Request) -> web.Response:
    return await _operate(request, "DELETE")


async def update_deployment(request: web.Request) -> web.Response:
    details = await read_json(request)
    if not isinstance(details, dict):
        raise invalid("The request body must be an UpdateModelDeploymentDetails object")
    return await _operate(request, "UPDATE", body=details)


def _apply_update(runtime: Runtime, record: dict, details: dict) -> bool:
    """Merge an update into the record; True when it restarts the model server (model, shape or container)."""
    from odsc_magics.local.lifecycle import TRANSITIONS

    if record["lifecycleState"] not in TRANSITIONS["UPDATE"][0]:
        raise ApiError(
            409,
            "IncorrectState",
            f"Model deployment {record['id']} is {record['lifecycleState']}; update is allowed only from "
            "ACTIVE, INACTIVE, NEEDS_ATTENTION",
        )
    config = details.get("modelDeploymentConfigurationDetails")
    relaunch = False
    if config is not None:
        _validate_config(runtime, config, partial=True)
        current = record.setdefault("modelDeploymentConfigurationDetails", {})
        before = copy.deepcopy(_serving(current))
        _merge(current, config)
        relaunch = _serving(current) != before
    for key in ("displayName", "description", "freeformTags", "definedTags", "categoryLogDetails"):
        if details.get(key) is not None:
            record[key] = details[key]
    return relaunch


def _serving(config: dict) -> tuple:
    """What the model server runs: model, instance configuration (shape), container configuration."""
    model_config = config.get("modelConfigurationDetails") or {}
    return (
        model_config.get("modelId"),
        model_config.get("instanceConfiguration"),
        config.get("environmentConfigurationDetails"),
    )


def _merge(target: dict, update: dict) -> None:
    for key, value in update.items():
        if value is None:
            continue
        if (
            isinstance(value, dict)
            and isinstance(target.get(key), dict)
            and key
            not in {
                "environmentVariables",
                "scalingPolicy",
                "freeformTags",
                "definedTags",
            }
        ):
            _merge(target[key], value)
        else:
            target[key] = value


# --- work requests -------------------------------------------------------------------------------------


def _work_request(runtime: Runtime, request: web.Request) -> dict:
    wr_id = request.match_info["id"]
    record = runtime.store.work_requests.get(wr_id)
    if record is None:
        raise not_found("work request", wr_id)
    return record


async def get_work_request(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    return json_response(render_work_request(_work_request(runtime, request)))


async def list_work_requests(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    compartment = required_query(request, "compartmentId")
    now = time.time()
    items = [render_work_request(w, now) for w in runtime.store.work_requests.values()]
    items = [w for w in items if w["compartmentId"] == compartment]
    resource_id = request.query.get("resourceId")
    if resource_id:
        items = [w for w in items if any(r["identifier"] == resource_id for r in w["resources"])]
    items = filter_and_sort(
        request,
        items,
        filters={"id": "id", "operationType": "operationType", "status": "status"},
        sort_keys={"timeAccepted": "timeAccepted", "operationType": "operationType", "status": "status"},
        default_sort="timeAccepted",
    )
    page, headers = paginate(request, items)
    return json_response(page, headers=headers)


async def list_work_request_logs(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    page, headers = paginate(request, work_request_logs(_work_request(runtime, request)))
    return json_response(page, headers=headers)


async def list_work_request_errors(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    page, headers = paginate(request, work_request_errors(_work_request(runtime, request)))
    return json_response(page, headers=headers)


def add_routes(app: web.Application) -> None:
    """Register the model deployment and work request routes."""
    md = f"{BASE}/modelDeployments"
    app.router.add_routes(
        [
            web.post(md, create_deployment),
            web.get(md, list_deployments, allow_head=False),
            web.get(md + "/{id}", get_deployment, allow_head=False),
            web.put(md + "/{id}", update_deployment),
            web.delete(md + "/{id}", delete_deployment),
            web.post(md + "/{id}/actions/activate", activate_deployment),
            web.post(md + "/{id}/actions/deactivate", deactivate_deployment),
            web.get(f"{BASE}/workRequests", list_work_requests, allow_head=False),
            web.get(f"{BASE}/workRequests/{{id}}", get_work_request, allow_head=False),
            web.get(f"{BASE}/workRequests/{{id}}/logs", list_work_request_logs, allow_head=False),
            web.get(f"{BASE}/workRequests/{{id}}/errors", list_work_request_errors, allow_head=False),
        ]
    )
