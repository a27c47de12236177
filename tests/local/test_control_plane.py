"""The control plane through the real oci SDK: models, projects, shapes, deployments and work requests."""

from __future__ import annotations

import json
import time

import oci
import pytest

models = oci.data_science.models


def _details(backend, name: str, **overrides) -> models.CreateModelDeploymentDetails:
    model_id = backend.service_model_id()
    config = models.SingleModelDeploymentConfigurationDetails(
        deployment_type="SINGLE_MODEL",
        model_configuration_details=models.ModelConfigurationDetails(
            model_id=overrides.pop("model_id", model_id),
            instance_configuration=models.InstanceConfiguration(
                instance_shape_name=overrides.pop("shape", "VM.GPU.A10.2")
            ),
        ),
        environment_configuration_details=models.OcirModelDeploymentEnvironmentConfigurationDetails(
            environment_configuration_type="OCIR_CONTAINER",
            image="dsmc://odsc-vllm-serving:0.6.4.post1.2",
            environment_variables={"MODEL_DEPLOY_PREDICT_ENDPOINT": "/v1/completions"},
        ),
    )
    return models.CreateModelDeploymentDetails(
        display_name=name,
        project_id=overrides.pop("project_id", backend.project_id),
        compartment_id=backend.compartment_id,
        model_deployment_configuration_details=config,
        **overrides,
    )


def _wait(backend, work_request_id: str):
    return backend.wait_work_request(work_request_id)


def _error(call, *args, **kwargs) -> oci.exceptions.ServiceError:
    with pytest.raises(oci.exceptions.ServiceError) as info:
        call(*args, **kwargs)
    return info.value


def test_profile_is_a_valid_oci_config(backend):
    config = oci.config.from_file(backend.config_file, backend.profile)
    oci.config.validate_config(config)
    assert config["pass_phrase"] is None
    assert config["region"] == backend.region


def test_list_service_models_tagged_aqua(backend):
    client = backend.data_science_client()
    service = client.list_models(compartment_id=backend.compartment_id, category="SERVICE").data
    names = {m.display_name for m in service}
    assert {"Mistral-7B-Instruct-v0.3", "Meta-Llama-3.1-8B-Instruct", "Meta-Llama-3.1-70B-Instruct"} <= names
    assert all("OCI_AQUA" in m.freeform_tags and m.category == "SERVICE" for m in service)
    full = client.get_model(service[0].id).data
    keys = {item.key: item.value for item in full.custom_metadata_list}
    assert keys["deployment-container"] == "odsc-vllm-serving"
    assert full.freeform_tags["ready_to_deploy"] == "true"
    users = client.list_models(compartment_id=backend.compartment_id).data
    assert users and all(m.category == "USER" for m in users)


def test_create_user_model_and_projects(backend):
    client = backend.data_science_client()
    created = client.create_model(
        models.CreateModelDetails(
            compartment_id=backend.compartment_id, project_id=backend.project_id, display_name="my-model"
        )
    ).data
    assert client.get_model(created.id).data.display_name == "my-model"
    projects = client.list_projects(compartment_id=backend.compartment_id).data
    assert backend.project_id in {p.id for p in projects}
    assert client.get_project(backend.project_id).data.lifecycle_state == "ACTIVE"


def test_shapes(backend):
    client = backend.data_science_client()
    shapes = {s.name: s for s in client.list_model_deployment_shapes(compartment_id=backend.compartment_id).data}
    assert shapes["VM.GPU.A10.1"].shape_series == "NVIDIA_GPU"
    assert shapes["VM.GPU.A10.1"].core_count == 15 and shapes["VM.GPU.A10.1"].memory_in_gbs == 240
    assert shapes["VM.Standard.E4.Flex"].shape_series == "AMD_ROME"
    assert "BM.GPU.H100.8" in shapes


def test_deployment_full_lifecycle(backend):
    client = backend.data_science_client()
    details = _details(backend, "lifecycle")
    first = client.create_model_deployment(details, opc_retry_token="retry-token-lifecycle-0001")
    second = client.create_model_deployment(details, opc_retry_token="retry-token-lifecycle-0001")
    assert first.data.id == second.data.id
    assert first.headers["opc-work-request-id"] == second.headers["opc-work-request-id"]
    assert first.headers["etag"] and first.headers["opc-request-id"]
    same_name = client.list_model_deployments(compartment_id=backend.compartment_id, display_name="lifecycle")
    assert len(same_name.data) == 1
    assert first.data.lifecycle_state == "CREATING"
    assert first.data.model_deployment_url == f"{backend.endpoint}/{first.data.id}"

    work_request = _wait(backend, first.headers["opc-work-request-id"])
    assert work_request.percent_complete == 100
    assert work_request.operation_type == "MODEL_DEPLOYMENT_CREATE"
    assert work_request.resources[0].identifier == first.data.id
    logs = client.list_work_request_logs(work_request.id).data
    assert any("Loading the model" in entry.message for entry in logs)
    assert client.list_work_request_errors(work_request.id).data == []
    md_id = first.data.id
    assert client.get_model_deployment(md_id).data.lifecycle_state == "ACTIVE"

    deactivated = client.deactivate_model_deployment(md_id)
    _wait(backend, deactivated.headers["opc-work-request-id"])
    assert client.get_model_deployment(md_id).data.lifecycle_state == "INACTIVE"
    error = _error(client.deactivate_model_deployment, md_id)
    assert (error.status, error.code) == (409, "IncorrectState")
    assert "INACTIVE" in error.message

    activated = client.activate_model_deployment(md_id)
    _wait(backend, activated.headers["opc-work-request-id"])
    assert client.get_model_deployment(md_id).data.lifecycle_state == "ACTIVE"

    deleted = client.delete_model_deployment(md_id)
    _wait(backend, deleted.headers["opc-work-request-id"])
    assert client.get_model_deployment(md_id).data.lifecycle_state == "DELETED"
    listed = client.list_model_deployments(compartment_id=backend.compartment_id, lifecycle_state="DELETED").data
    assert md_id in {d.id for d in listed}


def test_composite_waiter_follows_the_work_request(backend):
    client = backend.data_science_client()
    composite = oci.data_science.DataScienceClientCompositeOperations(client)
    response = composite.create_model_deployment_and_wait_for_state(
        _details(backend, "waiter"), wait_for_states=["SUCCEEDED"], waiter_kwargs={"max_interval_seconds": 1}
    )
    assert response.data.status == "SUCCEEDED"
    md_id = response.data.resources[0].identifier
    assert client.get_model_deployment(md_id).data.lifecycle_state == "ACTIVE"


def test_delete_while_creating_is_refused(backend_factory):
    slow = backend_factory("--deploy-seconds", "60")
    client = slow.data_science_client()
    md_id = client.create_model_deployment(_details(slow, "creating")).data.id
    error = _error(client.delete_model_deployment, md_id)
    assert (error.status, error.code) == (409, "IncorrectState") and "CREATING" in error.message


def test_illegal_transitions_and_etags(backend):
    client = backend.data_science_client()
    created = client.create_model_deployment(_details(backend, "transitions"))
    md_id = created.data.id
    _wait(backend, created.headers["opc-work-request-id"])
    error = _error(client.activate_model_deployment, md_id)
    assert (error.status, error.code) == (409, "IncorrectState") and "ACTIVE" in error.message
    error = _error(client.deactivate_model_deployment, md_id, if_match="not-the-etag")
    assert (error.status, error.code) == (412, "PreconditionFailed")
    etag = client.get_model_deployment(md_id).headers["etag"]
    updated = client.update_model_deployment(
        md_id, models.UpdateModelDeploymentDetails(display_name="transitions-renamed"), if_match=etag
    )
    _wait(backend, updated.headers["opc-work-request-id"])
    after = client.get_model_deployment(md_id)
    assert after.data.display_name == "transitions-renamed" and after.data.lifecycle_state == "ACTIVE"
    assert after.headers["etag"] != etag


def test_validation_errors(backend):
    client = backend.data_science_client()
    error = _error(
        client.create_model_deployment,
        _details(backend, "bad-model", model_id="ocid1.datasciencemodel.oc1.iad.nope"),
    )
    assert (error.status, error.code) == (400, "RelatedResourceNotAuthorizedOrNotFound")
    error = _error(client.create_model_deployment, _details(backend, "bad-shape", shape="VM.GPU.Nope.1"))
    assert (error.status, error.code) == (400, "InvalidParameter") and "VM.GPU.Nope.1" in error.message
    broken = _details(backend, "no-shape")
    broken.model_deployment_configuration_details.model_configuration_details.instance_configuration = None
    error = _error(client.create_model_deployment, broken)
    assert (error.status, error.code) == (400, "MissingParameter")
    error = _error(client.get_model_deployment, "ocid1.datasciencemodeldeployment.oc1.iad.unknown")
    assert (error.status, error.code) == (404, "NotAuthorizedOrNotFound")
    error = _error(client.get_work_request, "ocid1.datascienceworkrequest.oc1.iad.unknown")
    assert (error.status, error.code) == (404, "NotAuthorizedOrNotFound")


def test_missing_compartment_on_list(backend):
    session = backend.session()
    response = session.get(f"{backend.endpoint}/20190101/modelDeployments")
    assert response.status_code == 400
    assert response.json()["code"] == "MissingParameter"
    assert response.headers["opc-request-id"]


def test_pagination_with_limit(backend):
    client = backend.data_science_client()
    for i in range(3):
        client.create_model_deployment(_details(backend, f"page-{i}"))
    seen, page, pages = [], None, 0
    while True:
        kwargs = {"page": page} if page else {}
        response = client.list_model_deployments(compartment_id=backend.compartment_id, limit=2, **kwargs)
        assert len(response.data) <= 2
        seen.extend(d.id for d in response.data)
        pages += 1
        page = response.next_page
        if not page:
            break
    assert pages >= 3 and len(seen) == len(set(seen))
    everything = oci.pagination.list_call_get_all_results(
        client.list_model_deployments, compartment_id=backend.compartment_id, limit=1
    ).data
    assert {d.id for d in everything} == set(seen)
    times = [d.time_created for d in everything]
    assert times == sorted(times, reverse=True)


def test_work_request_lists(backend):
    client = backend.data_science_client()
    listed = client.list_work_requests(compartment_id=backend.compartment_id, operation_type="MODEL_DEPLOYMENT_CREATE")
    assert listed.data and all(w.operation_type == "MODEL_DEPLOYMENT_CREATE" for w in listed.data)
    by_resource = client.list_work_requests(
        compartment_id=backend.compartment_id, resource_id=backend.deployment["id"]
    ).data
    assert {w.resources[0].identifier for w in by_resource} == {backend.deployment["id"]}


def test_failed_deployment_reports_errors(backend):
    client = backend.data_science_client()
    details = _details(backend, "doomed")
    env = details.model_deployment_configuration_details.environment_configuration_details.environment_variables
    env["EMULATOR_FAIL"] = "CUDA out of memory"
    created = client.create_model_deployment(details)
    wr_id = created.headers["opc-work-request-id"]
    deadline = time.monotonic() + 30
    while client.get_work_request(wr_id).data.status not in {"FAILED", "SUCCEEDED"}:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.get_work_request(wr_id).data.status == "FAILED"
    errors = client.list_work_request_errors(wr_id).data
    assert errors and "CUDA out of memory" in errors[0].message
    assert client.get_model_deployment(created.data.id).data.lifecycle_state == "FAILED"


def test_aqua_deployment_configuration_and_provenance(backend):
    client = backend.data_science_client()
    model_id = backend.service_model_id("Meta-Llama-3.1-8B-Instruct")
    content = client.get_model_defined_metadatum_artifact_content(model_id, "DeploymentConfiguration")
    config = json.loads(content.data.content)
    assert "VM.GPU.A10.2" in config["shape"]
    assert config["configuration"]["VM.GPU.A10.2"]["parameters"]["VLLM_PARAMS"].startswith("--max-model-len")
    assert client.get_model_provenance(model_id).data.git_commit
