"""Time-based lifecycle of model deployments and their work requests (due times survive restarts)."""

from __future__ import annotations

import os
import time
from collections.abc import Collection
from typing import Any

from odsc_magics.local import catalog
from odsc_magics.local.apierror import ApiError
from odsc_magics.local.failures import FAIL_ENV, SERVER_CODE, Launch, model_spec, plan, stamp
from odsc_magics.local.identity import new_ocid
from odsc_magics.local.state import Store, rfc3339
from odsc_magics.sizing import ModelSpec

# operation -> (allowed source states, transitional state, final state, duration factor of --deploy-seconds)
TRANSITIONS: dict[str, tuple[frozenset[str], str, str, float]] = {
    "CREATE": (frozenset(), "CREATING", "ACTIVE", 1.0),
    "ACTIVATE": (frozenset({"INACTIVE"}), "UPDATING", "ACTIVE", 1.0),
    "DEACTIVATE": (frozenset({"ACTIVE"}), "UPDATING", "INACTIVE", 1 / 3),
    "UPDATE": (frozenset({"ACTIVE", "NEEDS_ATTENTION", "INACTIVE"}), "UPDATING", "ACTIVE", 1 / 3),
    "DELETE": (frozenset({"ACTIVE", "INACTIVE", "FAILED", "NEEDS_ATTENTION"}), "DELETING", "DELETED", 1 / 3),
}
ACTION_TYPE = {"CREATE": "CREATED", "DELETE": "DELETED"}
__all__ = ["FAIL_ENV", "TRANSITIONS", "Lifecycle", "render_work_request", "work_request_errors", "work_request_logs"]

_LOGS: dict[str, list[tuple[float, str]]] = {
    "CREATE": [
        (0.0, "Creating model deployment {name}"),
        (0.1, "Provisioning 1 instance(s) of shape {shape}"),
        (0.3, "Pulling the model server image {image}"),
        (0.5, "Downloading the model artifact"),
        (0.7, "Loading the model"),
        (0.9, "Running health checks on the model server"),
        (1.0, "Model deployment {name} is ACTIVE"),
    ],
    "ACTIVATE": [
        (0.0, "Activating model deployment {name}"),
        (0.2, "Provisioning 1 instance(s) of shape {shape}"),
        (0.5, "Loading the model"),
        (0.9, "Running health checks on the model server"),
        (1.0, "Model deployment {name} is ACTIVE"),
    ],
    "DEACTIVATE": [
        (0.0, "Deactivating model deployment {name}"),
        (0.5, "Releasing compute instances"),
        (1.0, "Model deployment {name} is INACTIVE"),
    ],
    "UPDATE": [
        (0.0, "Updating model deployment {name}"),
        (0.5, "Rolling out the new configuration"),
        (1.0, "Model deployment {name} is updated"),
    ],
    "DELETE": [
        (0.0, "Deleting model deployment {name}"),
        (0.5, "Releasing compute instances"),
        (1.0, "Model deployment {name} is deleted"),
    ],
}
_FAIL_AT = 0.7
_LOADING_AT = 0.5  # where in a launch the model server starts printing


def deployment_env(deployment: dict) -> dict[str, str]:
    """The container environment variables of a deployment (empty when it sets none)."""
    config = deployment.get("modelDeploymentConfigurationDetails") or {}
    env_config = config.get("environmentConfigurationDetails") or {}
    env = dict(env_config.get("defaultEnvironmentVariables") or {})
    env.update(env_config.get("environmentVariables") or {})
    return env


def shape_of(deployment: dict) -> str:
    config = deployment.get("modelDeploymentConfigurationDetails") or {}
    instance = (config.get("modelConfigurationDetails") or {}).get("instanceConfiguration") or {}
    return instance.get("instanceShapeName", "?")


def model_id_of(deployment: dict) -> str | None:
    config = deployment.get("modelDeploymentConfigurationDetails") or {}
    return (config.get("modelConfigurationDetails") or {}).get("modelId")


class Lifecycle:
    """Starts operations on deployments and completes them when their due time has passed.

    Operations that launch the model server (create, activate, an update that relaunches it) end as
    ``odsc_magics.local.failures.plan`` decides: FAILED on a shape listed in ``no_capacity`` or when the model
    does not fit the shape's GPU memory, with the server's start-up lines in the predict log.
    """

    def __init__(self, store: Store, *, deploy_seconds: float = 2.0, no_capacity: Collection[str] = ()) -> None:
        self.store = store
        self.deploy_seconds = max(0.0, deploy_seconds)
        self.no_capacity = frozenset(no_capacity)
        self._next_due = self._compute_next_due()

    def _compute_next_due(self) -> float:
        dues = [d["_pending"]["due"] for d in self.store.deployments.values() if d.get("_pending")]
        return min(dues, default=float("inf"))

    def model_id(self, deployment: dict) -> str | None:
        return model_id_of(deployment)

    def model_of(self, deployment: dict) -> dict | None:
        """The model a deployment serves: a service (catalog) model or one stored here."""
        model_id = model_id_of(deployment)
        return (catalog.SERVICE_MODELS_BY_ID.get(model_id) or self.store.models.get(model_id)) if model_id else None

    def model_spec(self, deployment: dict) -> ModelSpec | None:
        """The architecture of the model a deployment serves, as the launch reads it."""
        return model_spec(self.model_of(deployment))

    def _launch(self, deployment: dict) -> Launch:
        model = self.model_of(deployment)
        return plan(model, deployment_env(deployment), shape_of(deployment), no_capacity=self.no_capacity)

    def start(self, deployment: dict, operation: str, *, now: float | None = None, relaunch: bool = True) -> dict:
        """Begin ``operation`` (CREATE/ACTIVATE/...) on a stored deployment; returns its work request.

        ``relaunch``: whether an UPDATE of a running deployment restarts its model server (a new model, shape
        or container configuration). Raises ApiError 409 IncorrectState when the state does not allow it.
        """
        now = time.time() if now is None else now
        allowed, transitional, final, factor = TRANSITIONS[operation]
        current = deployment["lifecycleState"]
        if operation != "CREATE" and current not in allowed:
            raise ApiError(
                409,
                "IncorrectState",
                f"Model deployment {deployment['id']} is {current}; {operation.lower()} is allowed only from "
                f"{', '.join(sorted(allowed))}",
            )
        if operation == "UPDATE" and current == "INACTIVE":
            transitional = final = "INACTIVE"
            factor = 0.0
        duration = self.deploy_seconds * factor
        launches = operation in {"CREATE", "ACTIVATE"} or (operation == "UPDATE" and relaunch and final == "ACTIVE")
        launch = self._launch(deployment) if launches else None
        failed = launch is not None and launch.failed
        ends_at = launch.at if failed else 1.0
        due = now + duration * ends_at
        predict_log = stamp(launch.lines, now + duration * min(_LOADING_AT, ends_at), due) if launch else []
        wr_id = new_ocid("datascienceworkrequest")
        work_request = {
            "id": wr_id,
            "operationType": f"MODEL_DEPLOYMENT_{operation}",
            "compartmentId": deployment["compartmentId"],
            "resources": [
                {
                    "entityType": "modelDeployment",
                    "actionType": "IN_PROGRESS",
                    "identifier": deployment["id"],
                    "entityUri": f"/modelDeployments/{deployment['id']}",
                }
            ],
            "_accepted": now,
            "_duration": duration,
            "_final": None,
            "_finished": None,
            "_fail": (launch.details or launch.message) if failed else None,
            "_fail_at": ends_at,
            "_error": {"code": launch.code, "message": launch.message} if failed else None,
            "_predict_log": [[at, line] for at, line in predict_log],
            "_name": deployment.get("displayName", ""),
            "_shape": shape_of(deployment),
            "_image": _image_of(deployment),
        }
        self.store.work_requests[wr_id] = work_request
        deployment["lifecycleState"] = transitional
        deployment["lifecycleDetails"] = _details(transitional)
        deployment["_pending"] = {"operation": operation, "to": final, "due": due, "wr": wr_id}
        self._next_due = min(self._next_due, deployment["_pending"]["due"])
        if duration == 0:
            self.advance(now)
        return work_request

    def advance(self, now: float | None = None) -> bool:
        """Complete every operation whose due time has passed; returns True if anything changed."""
        now = time.time() if now is None else now
        if now < self._next_due:
            return False
        changed = False
        for deployment in self.store.deployments.values():
            pending = deployment.get("_pending")
            if not pending or pending["due"] > now:
                continue
            work_request = self.store.work_requests.get(pending["wr"])
            fail = work_request.get("_fail") if work_request else None
            deployment["lifecycleState"] = "FAILED" if fail else pending["to"]
            deployment["lifecycleDetails"] = fail or _details(deployment["lifecycleState"])
            if deployment["lifecycleState"] == "ACTIVE":
                system = deployment.setdefault("modelDeploymentSystemData", {"systemInfraType": "INSTANCE_POOL"})
                system["currentInstanceCount"] = instance_count(deployment)
            elif deployment["lifecycleState"] in {"INACTIVE", "DELETED", "FAILED"}:
                system = deployment.setdefault("modelDeploymentSystemData", {"systemInfraType": "INSTANCE_POOL"})
                system["currentInstanceCount"] = 0
            deployment["_pending"] = None
            if work_request:
                self._server_log(deployment, work_request.pop("_predict_log", None) or [])
                work_request["_final"] = "FAILED" if fail else "SUCCEEDED"
                work_request["_finished"] = max(pending["due"], work_request["_accepted"])
                action = ACTION_TYPE.get(pending["operation"], "UPDATED")
                for resource in work_request["resources"]:
                    resource["actionType"] = "RELATED" if fail else action
            changed = True
        self._next_due = self._compute_next_due()
        if changed:
            self.store.save()
        return changed

    def _server_log(self, deployment: dict, lines: list) -> None:
        """What the model server container printed while starting (its predict log)."""
        last_ms = 0
        for at, message in lines:
            last_ms = max(int(at * 1000), last_ms + 1)  # strictly increasing: the log's order is the print order
            self.store.record(
                "predict",
                deployment["id"],
                {"id": os.urandom(8).hex(), "datetime": last_ms, "time": rfc3339(last_ms / 1000), "message": message},
            )


def _details(state: str) -> str | None:
    return {
        "CREATING": "Model deployment is being created",
        "UPDATING": "Model deployment is being updated",
        "DELETING": "Model deployment is being deleted",
        "ACTIVE": "Model deployment is active",
        "INACTIVE": "Model deployment is inactive",
        "DELETED": "Model deployment is deleted",
    }.get(state)


def _image_of(deployment: dict) -> str:
    config = deployment.get("modelDeploymentConfigurationDetails") or {}
    env_config = config.get("environmentConfigurationDetails") or {}
    return env_config.get("image") or "the default model server image"


def instance_count(deployment: dict) -> int:
    """Instances the deployment's scaling policy starts (FIXED_SIZE count, or the autoscaler's initial one)."""
    config = deployment.get("modelDeploymentConfigurationDetails") or {}
    policy = (config.get("modelConfigurationDetails") or {}).get("scalingPolicy") or {}
    if policy.get("policyType") == "AUTOSCALING":
        policies = policy.get("autoScalingPolicies") or [{}]
        return int(policies[0].get("initialInstanceCount") or policies[0].get("minimumInstanceCount") or 1)
    return int(policy.get("instanceCount") or 1)


def render_work_request(work_request: dict, now: float | None = None) -> dict:
    """The public WorkRequest JSON of a stored work request at time ``now``."""
    now = time.time() if now is None else now
    accepted, duration = work_request["_accepted"], work_request["_duration"]
    started = accepted + min(0.1 * duration, 0.5)
    final = work_request["_final"]
    if final:
        status = final
        progress = 1.0 if final == "SUCCEEDED" else work_request.get("_fail_at", _FAIL_AT)
    elif now < started:
        status, progress = "ACCEPTED", 0.0
    else:
        status = "IN_PROGRESS"
        progress = min(0.99, (now - accepted) / duration) if duration else 0.99
    return {
        "id": work_request["id"],
        "operationType": work_request["operationType"],
        "status": status,
        "compartmentId": work_request["compartmentId"],
        "percentComplete": float(int(progress * 100)),
        "resources": work_request["resources"],
        "timeAccepted": rfc3339(accepted),
        "timeStarted": rfc3339(started) if status != "ACCEPTED" else None,
        "timeFinished": rfc3339(work_request["_finished"]) if final else None,
    }


def work_request_logs(work_request: dict, now: float | None = None) -> list[dict]:
    """Log entries reached so far (message, timestamp)."""
    now = time.time() if now is None else now
    accepted, duration = work_request["_accepted"], work_request["_duration"]
    operation = work_request["operationType"].removeprefix("MODEL_DEPLOYMENT_")
    fields = {"name": work_request["_name"], "shape": work_request["_shape"], "image": work_request["_image"]}
    fail = work_request.get("_fail")
    fail_at = work_request.get("_fail_at", _FAIL_AT)
    limit = 1.0 if work_request["_final"] == "SUCCEEDED" else (now - accepted) / duration if duration else 0.0
    entries = []
    for fraction, template in _LOGS.get(operation, []):
        if fail and fraction > fail_at:
            break
        if fraction <= limit or (fail and work_request["_final"]):
            entries.append({"message": template.format(**fields), "timestamp": rfc3339(accepted + fraction * duration)})
    if fail and work_request["_final"]:
        entries.append({"message": f"Model deployment failed: {fail}", "timestamp": rfc3339(work_request["_finished"])})
    return entries


def work_request_errors(work_request: dict) -> list[dict[str, Any]]:
    """Errors of a FAILED work request (code, message, timestamp)."""
    if work_request["_final"] != "FAILED":
        return []
    error = work_request.get("_error") or {
        "code": SERVER_CODE,
        "message": f"Model deployment failed: {work_request['_fail']}",
    }
    return [{**error, "timestamp": rfc3339(work_request["_finished"])}]
