"""The control plane's catalog side (``/20190101``): models, projects, model deployment shapes, containers."""

from __future__ import annotations

import json
import time

from aiohttp import web

from odsc_magics.local import catalog
from odsc_magics.local.apierror import ApiError, invalid, missing, not_found
from odsc_magics.local.control import BASE, public, retry_lookup, runtime_of
from odsc_magics.local.http import filter_and_sort, json_response, paginate, read_json, required_query
from odsc_magics.local.identity import new_ocid
from odsc_magics.local.runtime import Runtime
from odsc_magics.local.state import etag_of, rfc3339

_MODEL_SUMMARY_KEYS = (
    "compartmentId",
    "projectId",
    "id",
    "displayName",
    "createdBy",
    "timeCreated",
    "lifecycleState",
    "lifecycleDetails",
    "modelVersionSetId",
    "modelVersionSetName",
    "versionId",
    "versionLabel",
    "category",
    "isModelByReference",
    "freeformTags",
    "definedTags",
)


def _model(runtime: Runtime, request: web.Request) -> dict:
    model_id = request.match_info["id"]
    model = catalog.SERVICE_MODELS_BY_ID.get(model_id) or runtime.store.models.get(model_id)
    if model is None:
        raise not_found("model", model_id)
    return model


async def list_models(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    compartment = required_query(request, "compartmentId")
    category = request.query.get("category") or "USER"
    if category not in {"USER", "SERVICE"}:
        raise invalid("category must be USER or SERVICE")
    if category == "SERVICE":
        items = [catalog.public(m) for m in catalog.SERVICE_MODELS]
    else:
        items = [public(m) for m in runtime.store.models.values() if m["compartmentId"] == compartment]
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
        sort_keys={
            "timeCreated": "timeCreated",
            "displayName": "displayName",
            "lifecycleState": "lifecycleState",
        },
        default_sort="timeCreated",
    )
    page, headers = paginate(request, items)
    return json_response([{k: m.get(k) for k in _MODEL_SUMMARY_KEYS} for m in page], headers=headers)


async def get_model(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    body = public(_model(runtime, request))
    return json_response(body, headers={"etag": etag_of(body)})


async def get_model_provenance(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    model = _model(runtime, request)
    provenance = model.get("_provenance")
    if provenance is None:
        raise not_found("model provenance", model["id"])
    return json_response(provenance)


async def get_defined_metadata_artifact(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    model = _model(runtime, request)
    key = request.match_info["key"]
    if key != "DeploymentConfiguration" or "_deploymentConfig" not in model:
        raise not_found("metadata artifact", f"{model['id']}/{key}")
    return web.Response(
        body=json.dumps(model["_deploymentConfig"], indent=1).encode(),
        content_type="application/octet-stream",
    )


async def create_model(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    details = await read_json(request)
    if not isinstance(details, dict):
        raise invalid("The request body must be a CreateModelDetails object")
    retry = retry_lookup(runtime, request, "createModel", details)
    if retry and "replay" in retry:
        body = public(runtime.store.models[retry["replay"]["resourceId"]])
        return json_response(body, headers={"etag": etag_of(body)})
    for name in ("compartmentId", "projectId"):
        if not details.get(name):
            raise missing(name)
    if details["projectId"] not in runtime.store.projects:
        raise ApiError(
            400,
            "RelatedResourceNotAuthorizedOrNotFound",
            f"Project {details['projectId']} not found or not authorized",
        )
    now = time.time()
    model = {
        "id": new_ocid("datasciencemodel"),
        "compartmentId": details["compartmentId"],
        "projectId": details["projectId"],
        "displayName": details.get("displayName") or time.strftime("model%Y%m%d%H%M%S", time.gmtime(now)),
        "description": details.get("description"),
        "lifecycleState": "ACTIVE",
        "lifecycleDetails": None,
        "timeCreated": rfc3339(now),
        "createdBy": runtime.identity.user,
        "freeformTags": details.get("freeformTags") or {},
        "definedTags": details.get("definedTags") or {},
        "customMetadataList": details.get("customMetadataList") or [],
        "definedMetadataList": details.get("definedMetadataList") or [],
        "inputSchema": details.get("inputSchema"),
        "outputSchema": details.get("outputSchema"),
        "versionLabel": details.get("versionLabel"),
        "category": "USER",
        "isModelByReference": False,
    }
    runtime.store.models[model["id"]] = model
    if retry:
        runtime.store.retry_tokens[retry["key"]] = {
            "digest": retry["digest"],
            "resourceId": model["id"],
            "time": now,
        }
    runtime.store.save()
    body = public(model)
    return json_response(
        body, headers={"etag": etag_of(body), "location": f"{runtime.endpoint}{BASE}/models/{model['id']}"}
    )


async def list_projects(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    compartment = required_query(request, "compartmentId")
    items = [p for p in runtime.store.projects.values() if p["compartmentId"] == compartment]
    items = filter_and_sort(
        request,
        items,
        filters={
            "id": "id",
            "displayName": "displayName",
            "lifecycleState": "lifecycleState",
            "createdBy": "createdBy",
        },
        sort_keys={"timeCreated": "timeCreated", "displayName": "displayName"},
        default_sort="timeCreated",
    )
    page, headers = paginate(request, items)
    return json_response(page, headers=headers)


async def get_project(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    project = runtime.store.projects.get(request.match_info["id"])
    if project is None:
        raise not_found("project", request.match_info["id"])
    return json_response(project, headers={"etag": etag_of(project)})


async def create_project(request: web.Request) -> web.Response:
    runtime = runtime_of(request)
    details = await read_json(request)
    if not isinstance(details, dict) or not details.get("compartmentId"):
        raise missing("compartmentId")
    project = new_project(
        runtime.identity.user,
        details["compartmentId"],
        details.get("displayName"),
        details.get("description"),
        details.get("freeformTags"),
    )
    runtime.store.projects[project["id"]] = project
    runtime.store.save()
    return json_response(project, headers={"etag": etag_of(project)})


def new_project(
    user: str,
    compartment_id: str,
    name: str | None,
    description: str | None = None,
    tags: dict | None = None,
    *,
    project_id: str | None = None,
) -> dict:
    now = time.time()
    return {
        "id": project_id or new_ocid("datascienceproject"),
        "timeCreated": rfc3339(now),
        "displayName": name or time.strftime("project%Y%m%d%H%M%S", time.gmtime(now)),
        "description": description,
        "compartmentId": compartment_id,
        "createdBy": user,
        "lifecycleState": "ACTIVE",
        "freeformTags": tags or {},
        "definedTags": {},
        "systemTags": {},
    }


def seed(runtime: Runtime) -> None:
    """On first start: the local project and two user models (a fine-tuned and a registered one)."""
    store, identity = runtime.store, runtime.identity
    if identity.project_id in store.projects:
        return
    store.projects[identity.project_id] = new_project(
        identity.user,
        identity.compartment_id,
        "odsc-magics local",
        "The local backend's project",
        project_id=identity.project_id,
    )
    base = catalog.SERVICE_MODELS[0]
    now = time.time()
    for name, tags in (
        (
            f"{base['displayName']}-ft-support",
            {"aqua_fine_tuned_model": f"{base['id']}#{base['displayName']}"},
        ),
        ("my-Meta-Llama-3.1-8B-Instruct", {"aqua_custom_base_model": "true", "model_format": "SAFETENSORS"}),
    ):
        model_id = new_ocid("datasciencemodel")
        store.models[model_id] = {
            "id": model_id,
            "compartmentId": identity.compartment_id,
            "projectId": identity.project_id,
            "displayName": name,
            "description": "A user model of the local project",
            "lifecycleState": "ACTIVE",
            "lifecycleDetails": None,
            "timeCreated": rfc3339(now),
            "createdBy": identity.user,
            "freeformTags": {"OCI_AQUA": "active", "task": "text_generation", **tags},
            "definedTags": {},
            "customMetadataList": [
                {
                    "key": "deployment-container",
                    "value": catalog.VLLM_CONTAINER,
                    "description": None,
                    "category": "Other",
                },
            ],
            "definedMetadataList": [],
            "category": "USER",
            "isModelByReference": False,
        }
    store.save()


async def list_shapes(request: web.Request) -> web.Response:
    required_query(request, "compartmentId")
    page, headers = paginate(request, catalog.shape_summaries())
    return json_response(page, headers=headers)


_CONTAINER_FILTERS = {
    "containerName": "containerName",
    "displayName": "displayName",
    "lifecycleState": "lifecycleState",
}


async def list_containers(request: web.Request) -> web.Response:
    """``GET /containers``: the service containers (the vLLM family), filtered like the service does."""
    query = request.query
    items = list(catalog.CONTAINERS)
    latest = query.get("isLatest")
    if latest is not None:
        if latest.lower() not in {"true", "false"}:
            raise invalid("isLatest must be true or false")
        items = [c for c in items if c["isLatest"] == (latest.lower() == "true")]
    if query.get("targetWorkload"):
        items = [c for c in items if query["targetWorkload"] in c["targetWorkloads"]]
    if query.get("usageQueryParam"):
        items = [c for c in items if query["usageQueryParam"] in c["usages"]]
    for name, field in _CONTAINER_FILTERS.items():
        if query.get(name):
            items = [c for c in items if c[field] == query[name]]
    page, headers = paginate(request, items)
    return json_response(page, headers=headers)


def add_routes(app: web.Application) -> None:
    """Register the model, project, shape and container routes."""
    app.router.add_routes(
        [
            web.get(f"{BASE}/containers", list_containers, allow_head=False),
            web.get(f"{BASE}/modelDeploymentShapes", list_shapes, allow_head=False),
            web.get(f"{BASE}/models", list_models, allow_head=False),
            web.post(f"{BASE}/models", create_model),
            web.get(f"{BASE}/models/{{id}}", get_model, allow_head=False),
            web.get(f"{BASE}/models/{{id}}/provenance", get_model_provenance, allow_head=False),
            web.get(
                f"{BASE}/models/{{id}}/definedMetadata/{{key}}/artifact/content",
                get_defined_metadata_artifact,
                allow_head=False,
            ),
            web.get(f"{BASE}/projects", list_projects, allow_head=False),
            web.post(f"{BASE}/projects", create_project),
            web.get(f"{BASE}/projects/{{id}}", get_project, allow_head=False),
        ]
    )
