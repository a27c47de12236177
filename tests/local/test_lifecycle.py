"""Time-based deployment lifecycle and work-request progress, with an explicit clock."""

from __future__ import annotations

import pytest

from odsc_magics.local.apierror import ApiError
from odsc_magics.local.faults import FaultPlan, parse_fault
from odsc_magics.local.lifecycle import Lifecycle, render_work_request, work_request_errors, work_request_logs
from odsc_magics.local.state import Store

T0 = 1_800_000_000.0


def _deployment(env: dict | None = None) -> dict:
    return {
        "id": "ocid1.datasciencemodeldeployment.oc1.iad.test",
        "compartmentId": "ocid1.compartment.oc1..c",
        "displayName": "d",
        "lifecycleState": "CREATING",
        "modelDeploymentConfigurationDetails": {
            "modelConfigurationDetails": {"instanceConfiguration": {"instanceShapeName": "VM.GPU.A10.1"}},
            "environmentConfigurationDetails": {"environmentVariables": env or {}},
        },
    }


def test_create_progresses_then_succeeds_and_persists(tmp_path):
    store = Store(tmp_path)
    lifecycle = Lifecycle(store, deploy_seconds=10)
    deployment = _deployment()
    store.deployments[deployment["id"]] = deployment
    work_request = lifecycle.start(deployment, "CREATE", now=T0)
    assert render_work_request(work_request, T0)["status"] == "ACCEPTED"
    middle = render_work_request(work_request, T0 + 5)
    assert middle["status"] == "IN_PROGRESS" and middle["percentComplete"] == 50
    messages = [entry["message"] for entry in work_request_logs(work_request, T0 + 5)]
    assert messages[-1] == "Downloading the model artifact"
    assert not lifecycle.advance(T0 + 9.9)
    assert deployment["lifecycleState"] == "CREATING"
    assert lifecycle.advance(T0 + 10)
    assert deployment["lifecycleState"] == "ACTIVE"
    done = render_work_request(work_request, T0 + 11)
    assert done["status"] == "SUCCEEDED" and done["percentComplete"] == 100 and done["timeFinished"]
    assert Store(tmp_path).deployments[deployment["id"]]["lifecycleState"] == "ACTIVE"


def test_transitions_and_illegal_ones(tmp_path):
    store = Store(tmp_path)
    lifecycle = Lifecycle(store, deploy_seconds=3)
    deployment = _deployment()
    store.deployments[deployment["id"]] = deployment
    lifecycle.start(deployment, "CREATE", now=T0)
    with pytest.raises(ApiError) as info:
        lifecycle.start(deployment, "DELETE", now=T0 + 1)
    assert info.value.status == 409 and "CREATING" in info.value.message
    lifecycle.advance(T0 + 3)
    lifecycle.start(deployment, "DEACTIVATE", now=T0 + 4)
    assert deployment["lifecycleState"] == "UPDATING"
    lifecycle.advance(T0 + 5)  # a third of deploy-seconds
    assert deployment["lifecycleState"] == "INACTIVE"
    update = lifecycle.start(deployment, "UPDATE", now=T0 + 6)  # INACTIVE stays INACTIVE, at once
    assert deployment["lifecycleState"] == "INACTIVE" and update["_final"] == "SUCCEEDED"
    lifecycle.start(deployment, "DELETE", now=T0 + 7)
    assert deployment["lifecycleState"] == "DELETING"
    lifecycle.advance(T0 + 8)
    assert deployment["lifecycleState"] == "DELETED"
    with pytest.raises(ApiError):
        lifecycle.start(deployment, "ACTIVATE", now=T0 + 9)


def test_failure_reason(tmp_path):
    store = Store(tmp_path)
    lifecycle = Lifecycle(store, deploy_seconds=0)
    deployment = _deployment({"EMULATOR_FAIL": "CUDA out of memory"})
    store.deployments[deployment["id"]] = deployment
    work_request = lifecycle.start(deployment, "CREATE", now=T0)
    assert deployment["lifecycleState"] == "FAILED"
    assert render_work_request(work_request, T0)["status"] == "FAILED"
    assert "CUDA out of memory" in work_request_errors(work_request)[0]["message"]
    assert "CUDA out of memory" in work_request_logs(work_request, T0)[-1]["message"]


def test_fault_plan_rates_and_parsing():
    plan = FaultPlan([parse_fault("500:0.25"), parse_fault("reset:0.25")], seed=1)
    draws = [plan.draw() for _ in range(4000)]
    assert abs(draws.count("500") - 1000) < 150 and abs(draws.count("reset") - 1000) < 150
    assert FaultPlan([], seed=1).draw() is None
    for bad in ("418:0.1", "500", "500:x", "cut:1.5"):
        with pytest.raises(ValueError):
            parse_fault(bad)
    with pytest.raises(ValueError):
        FaultPlan([("500", 0.6), ("503", 0.6)])
