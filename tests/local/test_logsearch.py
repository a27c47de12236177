"""Logging (log groups, logs) and Logging Search over a deployment's access and predict logs, via the oci SDK."""

from __future__ import annotations

import contextlib
import datetime as dt

import oci
import pytest

models = oci.data_science.models


def _clients(backend):
    kwargs = {
        "service_endpoint": backend.endpoint,
        "retry_strategy": oci.retry.NoneRetryStrategy(),
        "circuit_breaker_strategy": oci.circuit_breaker.NoCircuitBreakerStrategy(),
    }
    config = backend.oci_config()
    return oci.logging.LoggingManagementClient(config, **kwargs), oci.loggingsearch.LogSearchClient(config, **kwargs)


def _logs(backend) -> dict:
    management, _ = _clients(backend)
    (group,) = management.list_log_groups(backend.compartment_id, display_name="odsc-magics-local").data
    logs = {entry.display_name: entry.id for entry in management.list_logs(group.id).data}
    return {"group": group.id, **logs}


def _deploy_with_logs(backend, name: str, logs: dict, env: dict | None = None) -> str:
    client = backend.data_science_client()
    details = models.CreateModelDeploymentDetails(
        display_name=name,
        project_id=backend.project_id,
        compartment_id=backend.compartment_id,
        category_log_details=models.CategoryLogDetails(
            access=models.LogDetails(log_group_id=logs["group"], log_id=logs["access"]),
            predict=models.LogDetails(log_group_id=logs["group"], log_id=logs["predict"]),
        ),
        model_deployment_configuration_details=models.SingleModelDeploymentConfigurationDetails(
            deployment_type="SINGLE_MODEL",
            model_configuration_details=models.ModelConfigurationDetails(
                model_id=backend.service_model_id(),
                instance_configuration=models.InstanceConfiguration(instance_shape_name="VM.GPU.A10.1"),
            ),
            environment_configuration_details=models.OcirModelDeploymentEnvironmentConfigurationDetails(
                environment_configuration_type="OCIR_CONTAINER",
                image="dsmc://odsc-vllm-serving:0.6.4.post1.2",
                environment_variables=env or {},
            ),
        ),
    )
    response = client.create_model_deployment(details)
    work_request_id = response.headers["opc-work-request-id"]
    with contextlib.suppress(RuntimeError):  # a deployment meant to fail ends FAILED
        backend.wait_work_request(work_request_id)
    return response.data.id


def _search(backend, logs: dict, kind: str, md_id: str, *, order: str = "desc", limit: int = 100):
    _, search = _clients(backend)
    end = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)
    query = (
        f'search "{backend.compartment_id}/{logs["group"]}/{logs[kind]}" '
        f"| where source = '*{md_id}' | sort by datetime {order}"
    )
    details = oci.loggingsearch.models.SearchLogsDetails(
        time_start=end - dt.timedelta(hours=1), time_end=end, search_query=query, is_return_field_info=False
    )
    return search.search_logs(details, limit=limit)


def test_log_group_with_access_and_predict_logs(backend):
    logs = _logs(backend)
    assert {"access", "predict"} <= set(logs)
    management, _ = _clients(backend)
    assert management.get_log_group(logs["group"]).data.lifecycle_state == "ACTIVE"


def test_search_access_and_predict_records(backend):
    logs = _logs(backend)
    md_id = _deploy_with_logs(backend, "logged", logs)
    session = backend.session()
    url = f"{backend.endpoint}/{md_id}/predict"
    for prompt in ("one", "two", "three"):
        assert session.post(url, json={"prompt": prompt, "max_tokens": 4}).status_code == 200

    access = _search(backend, logs, "access", md_id).data.results
    assert len(access) == 3
    content = access[0].data["logContent"]
    assert content["source"] == md_id and content["type"].endswith(".access")
    assert content["data"]["message"] == "POST /predict 1.1" and content["data"]["status"] == 200
    stamps = [r.data["datetime"] for r in access]
    assert stamps == sorted(stamps, reverse=True)

    predict = _search(backend, logs, "predict", md_id, order="asc").data.results
    messages = [r.data["logContent"]["data"]["message"] for r in predict]
    assert any("Application startup complete" in m for m in messages)
    assert sum('"POST /v1/completions HTTP/1.1" 200 OK' in m for m in messages) == 3

    first = _search(backend, logs, "access", md_id, limit=2)
    assert len(first.data.results) == 2 and first.headers.get("opc-next-page")


def test_failed_deployment_reason_in_predict_log(backend):
    logs = _logs(backend)
    md_id = _deploy_with_logs(
        backend, "logged-failure", logs, {"EMULATOR_FAIL": "torch.OutOfMemoryError: CUDA out of memory"}
    )
    messages = [r.data["logContent"]["data"]["message"] for r in _search(backend, logs, "predict", md_id).data.results]
    assert any("CUDA out of memory" in m for m in messages)


def test_other_deployments_are_not_in_the_results(backend):
    logs = _logs(backend)
    assert _search(backend, logs, "access", "ocid1.datasciencemodeldeployment.oc1.iad.other").data.results == []


def test_window_larger_than_14_days_is_refused(backend):
    _, search = _clients(backend)
    end = dt.datetime.now(dt.timezone.utc)
    details = oci.loggingsearch.models.SearchLogsDetails(
        time_start=end - dt.timedelta(days=15), time_end=end, search_query=f'search "{backend.compartment_id}"'
    )
    with pytest.raises(oci.exceptions.ServiceError) as info:
        search.search_logs(details)
    assert info.value.status == 400
