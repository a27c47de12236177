"""Deployments fail like real ones: GPU memory (weights, KV cache) and shape capacity; the service containers."""

from __future__ import annotations

import datetime as dt

import oci
import pytest

from odsc_magics import vllm_container
from odsc_magics.diagnosis import diagnose
from odsc_magics.local import catalog, failures
from odsc_magics.local.lifecycle import Lifecycle, render_work_request, work_request_errors, work_request_logs
from odsc_magics.local.state import Store
from odsc_magics.local.testing import start_backend
from odsc_magics.sizing import model_spec_from

FAST = ("--deploy-seconds", "0.2", "--ttft-ms", "0", "--tokens-per-s", "0")
BY_NAME = {model["displayName"]: model for model in catalog.SERVICE_MODELS}
T0 = 1_800_000_000.0


def _plan(name: str, shape: str, max_model_len: int | None = None, **kwargs) -> failures.Launch:
    params = "--served-model-name odsc-llm --seed 42" + (f" --max-model-len {max_model_len}" if max_model_len else "")
    return failures.plan(BY_NAME[name], {"PARAMS": params}, shape, **kwargs)


def _lines(launch: failures.Launch) -> list[str]:
    return [line for _, line in failures.stamp(launch.lines, T0, T0 + 1)]


def _diagnose(name: str, shape: str, launch: failures.Launch, max_model_len: int | None = None):
    metadata = {item["key"]: item["value"] for item in BY_NAME[name]["customMetadataList"]}
    return diagnose(
        state="FAILED",
        work_request_errors=[{"code": launch.code, "message": launch.message}],
        log_lines=_lines(launch),
        shape=shape,
        model=model_spec_from(name, metadata),
        max_model_len=max_model_len,
    )


# ------------------------------------------------------------------------------------------ decisions


def test_weights_larger_than_the_gpu_end_in_cuda_oom() -> None:
    launch = _plan("Meta-Llama-3.1-70B-Instruct", "VM.GPU.A10.1")
    assert launch.failed and launch.code == "ModelDeploymentFailed" and launch.at < 1
    assert launch.message.startswith("Model server failed to start: CUDA out of memory")
    assert "see the predict log" in launch.message
    lines = _lines(launch)
    assert "vLLM API server version" in lines[0]
    assert any("Starting to load model /opt/ds/model/deployed_model" in line for line in lines)
    (oom,) = [line for line in lines if line.startswith("torch.OutOfMemoryError")]
    assert "CUDA out of memory. Tried to allocate 1.64 GiB. GPU 0 has a total capacity of 22.18 GiB of which" in oom
    assert "Traceback (most recent call last):" in lines

    diagnosis = _diagnose("Meta-Llama-3.1-70B-Instruct", "VM.GPU.A10.1", launch)
    assert diagnosis.kind == "cuda_oom"
    assert diagnosis.suggested_shapes and "Choose a shape with more GPU memory" in diagnosis.next_step


def test_a_context_too_long_for_the_kv_cache_ends_in_vllms_value_error() -> None:
    launch = _plan("Meta-Llama-3.1-8B-Instruct", "VM.GPU.A10.1")  # weights fit, 131,072 tokens of KV do not
    lines = _lines(launch)
    assert any("Loading model weights took" in line for line in lines)
    (error,) = [line for line in lines if line.startswith("ValueError")]
    assert error.startswith(
        "ValueError: The model's max seq len (131072) is larger than the maximum number of tokens that can be "
        "stored in KV cache ("
    )
    assert error.endswith(
        "Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine."
    )

    diagnosis = _diagnose("Meta-Llama-3.1-8B-Instruct", "VM.GPU.A10.1", launch)
    assert diagnosis.kind == "max_model_len"
    assert diagnosis.suggested_max_model_len and f"--max-model-len {diagnosis.suggested_max_model_len}" in (
        diagnosis.next_step
    )
    assert diagnosis.suggested_max_model_len < 131072
    # The suggested length does start.
    assert not _plan("Meta-Llama-3.1-8B-Instruct", "VM.GPU.A10.1", diagnosis.suggested_max_model_len).failed


def test_the_deployments_memory_utilization_decides_as_vllm_would() -> None:
    # 16 GB of Llama 3.1 8B weights load on an A10 (22.18 GiB), but half of it leaves nothing for the KV cache
    params = "--served-model-name odsc-llm --max-model-len 8192 --gpu-memory-utilization 0.5"
    launch = failures.plan(BY_NAME["Meta-Llama-3.1-8B-Instruct"], {"PARAMS": params}, "VM.GPU.A10.1")
    assert launch.failed and "No available memory for the cache blocks" in launch.message
    lines = _lines(launch)
    assert "gpu_memory_utilization=0.5)" in lines[1]
    assert lines[-1].startswith("ValueError: No available memory for the cache blocks.")
    # at vLLM's default 0.9 the same engine starts, and logs the blocks odsc_magics.serving accounts
    from odsc_magics.serving import engine_config, memory

    params = "--served-model-name odsc-llm --max-model-len 8192"
    started = failures.plan(BY_NAME["Meta-Llama-3.1-8B-Instruct"], {"PARAMS": params}, "VM.GPU.A10.1")
    blocks = memory(engine_config(model_spec_from("Meta-Llama-3.1-8B-Instruct"), "VM.GPU.A10.1", params)).kv_blocks
    assert not started.failed
    assert any(f"# GPU blocks: {blocks}," in line for line in _lines(started))
    assert any("Maximum concurrency for 8192 tokens per request:" in line for line in _lines(started))


def test_models_that_fit_start_and_print_vllms_start_up() -> None:
    launch = _plan("Mistral-7B-Instruct-v0.3", "VM.GPU.A10.1")
    assert not launch.failed
    lines = _lines(launch)
    assert any("# GPU blocks:" in line for line in lines)
    assert lines[-2] == "INFO:     Application startup complete."
    assert not _plan("Meta-Llama-3.1-70B-Instruct", "BM.GPU.A100-V2.8").failed
    assert not failures.plan(None, {}, "VM.GPU.A10.1").failed  # size unknown: it starts


def test_no_capacity_comes_first_and_says_what_the_platform_says() -> None:
    launch = _plan("Mistral-7B-Instruct-v0.3", "VM.GPU.A10.1", no_capacity={"VM.GPU.A10.1"})
    assert launch.failed and launch.code == "InternalError" and launch.lines == []
    assert launch.message == (
        "There is currently no capacity for the specified shape VM.GPU.A10.1. Try a different shape, or try "
        "again later."
    )
    diagnosis = _diagnose("Mistral-7B-Instruct-v0.3", "VM.GPU.A10.1", launch)
    assert diagnosis.kind == "no_capacity" and "Deploy on another shape that fits" in diagnosis.next_step
    assert not _plan("Mistral-7B-Instruct-v0.3", "VM.GPU.A10.2", no_capacity={"VM.GPU.A10.1"}).failed


def test_emulator_fail_stays_a_generic_hook() -> None:
    launch = failures.plan(BY_NAME["Mistral-7B-Instruct-v0.3"], {"EMULATOR_FAIL": "boom"}, "VM.GPU.A10.1")
    assert launch.failed and launch.details == "boom" and launch.message == "Model deployment failed: boom"
    assert launch.lines[-1] == "ERROR:    boom"


# ------------------------------------------------------------------------------------------ lifecycle


def _deployment(model: str, shape: str) -> dict:
    return {
        "id": "ocid1.datasciencemodeldeployment.oc1.iad.test",
        "compartmentId": "ocid1.compartment.oc1..c",
        "displayName": "d",
        "lifecycleState": "CREATING",
        "modelDeploymentConfigurationDetails": {
            "modelConfigurationDetails": {
                "modelId": BY_NAME[model]["id"],
                "instanceConfiguration": {"instanceShapeName": shape},
            },
            "environmentConfigurationDetails": {"environmentVariables": {"PARAMS": "--seed 42"}},
        },
    }


def test_lifecycle_of_an_oversized_model(tmp_path) -> None:
    store = Store(tmp_path)
    lifecycle = Lifecycle(store, deploy_seconds=10)
    deployment = _deployment("Meta-Llama-3.1-70B-Instruct", "VM.GPU.A10.1")
    store.deployments[deployment["id"]] = deployment
    work_request = lifecycle.start(deployment, "CREATE", now=T0)
    assert not lifecycle.advance(T0 + 8.9)
    assert deployment["lifecycleState"] == "CREATING" and not store.logs["predict"]
    assert lifecycle.advance(T0 + 9)
    assert deployment["lifecycleState"] == "FAILED"
    assert "CUDA out of memory" in deployment["lifecycleDetails"]
    rendered = render_work_request(work_request, T0 + 20)
    assert rendered["status"] == "FAILED" and rendered["percentComplete"] == 90
    (error,) = work_request_errors(work_request)
    assert error["code"] == "ModelDeploymentFailed" and "CUDA out of memory" in error["message"]
    assert work_request_logs(work_request, T0 + 20)[-1]["message"].startswith("Model deployment failed: Model server")
    records = list(store.logs["predict"][deployment["id"]])
    stamps = [r["datetime"] for r in records]
    assert stamps == sorted(set(stamps)) and stamps[-1] <= (T0 + 9) * 1000
    assert records[-1]["message"].startswith("torch.OutOfMemoryError: CUDA out of memory.")


def test_lifecycle_without_capacity(tmp_path) -> None:
    store = Store(tmp_path)
    lifecycle = Lifecycle(store, deploy_seconds=10, no_capacity={"VM.GPU.A10.1"})
    deployment = _deployment("Mistral-7B-Instruct-v0.3", "VM.GPU.A10.1")
    store.deployments[deployment["id"]] = deployment
    work_request = lifecycle.start(deployment, "CREATE", now=T0)
    assert lifecycle.advance(T0 + 1.5)  # quickly: no instance to wait for
    assert deployment["lifecycleState"] == "FAILED"
    assert render_work_request(work_request, T0 + 2)["percentComplete"] == 15
    (error,) = work_request_errors(work_request)
    assert error["code"] == "InternalError" and "no capacity for the specified shape VM.GPU.A10.1" in error["message"]
    messages = [entry["message"] for entry in work_request_logs(work_request, T0 + 2)]
    assert messages[-2] == "Provisioning 1 instance(s) of shape VM.GPU.A10.1"
    assert deployment["id"] not in store.logs["predict"]  # no container ever ran


# ------------------------------------------------------------------------------------------- over HTTP


@pytest.fixture(scope="module")
def cramped(tmp_path_factory: pytest.TempPathFactory):
    """A backend whose region has no VM.GPU.A10.2 capacity."""
    running = start_backend(tmp_path_factory.mktemp("cramped"), *FAST, "--no-capacity", "VM.GPU.A10.2")
    yield running
    running.stop()


def _predict_log(backend, md_id: str) -> list[str]:
    ids = backend.log_ids()
    search = oci.loggingsearch.LogSearchClient(
        backend.oci_config(),
        service_endpoint=backend.endpoint,
        retry_strategy=oci.retry.NoneRetryStrategy(),
        circuit_breaker_strategy=oci.circuit_breaker.NoCircuitBreakerStrategy(),
    )
    end = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)
    details = oci.loggingsearch.models.SearchLogsDetails(
        time_start=end - dt.timedelta(hours=1),
        time_end=end,
        search_query=f'search "{backend.compartment_id}/{ids["group"]}/{ids["predict"]}" '
        f"| where source = '*{md_id}' | sort by datetime asc",
    )
    return [r.data["logContent"]["data"]["message"] for r in search.search_logs(details, limit=1000).data.results]


def _ended(backend, deployment: dict):
    work_request = backend.finish_work_request(deployment["work_request_id"])
    errors = backend.data_science_client().list_work_request_errors(work_request.id).data
    return work_request, errors, backend.data_science_client().get_model_deployment(deployment["id"]).data


def test_oversized_model_fails_with_cuda_oom_in_its_predict_log(cramped) -> None:
    created = cramped.create_deployment(
        "huge", model_name="Meta-Llama-3.1-70B-Instruct", max_model_len=None, logs=True, wait=False
    )
    work_request, errors, deployment = _ended(cramped, created)
    assert work_request.status == "FAILED" and work_request.percent_complete < 100
    assert errors[0].code == "ModelDeploymentFailed"
    assert errors[0].message.startswith("Model server failed to start: CUDA out of memory")
    assert deployment.lifecycle_state == "FAILED" and "CUDA out of memory" in deployment.lifecycle_details
    lines = _predict_log(cramped, created["id"])
    assert "vLLM API server version" in lines[0]
    assert lines[-1].startswith("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate")
    assert "GPU 0 has a total capacity of 22.18 GiB" in lines[-1]


def test_context_too_long_fails_with_the_kv_cache_line(cramped) -> None:
    created = cramped.create_deployment(
        "long", model_name="Meta-Llama-3.1-8B-Instruct", max_model_len=None, logs=True, wait=False
    )
    work_request, errors, _ = _ended(cramped, created)
    assert work_request.status == "FAILED"
    assert "max seq len (131072) is larger than the maximum number of tokens" in errors[0].message
    lines = _predict_log(cramped, created["id"])
    assert lines[-1].startswith("ValueError: The model's max seq len (131072) is larger than the maximum number")
    # With a context that fits, the same model on the same shape starts.
    cramped.create_deployment("short", model_name="Meta-Llama-3.1-8B-Instruct", max_model_len=8192)


def test_no_capacity_fails_that_shape_only(cramped) -> None:
    created = cramped.create_deployment("nocap", shape="VM.GPU.A10.2", logs=True, wait=False)
    work_request, errors, deployment = _ended(cramped, created)
    assert work_request.status == "FAILED" and work_request.percent_complete < 100
    assert errors[0].code == "InternalError"
    assert errors[0].message == (
        "There is currently no capacity for the specified shape VM.GPU.A10.2. Try a different shape, or try "
        "again later."
    )
    assert deployment.lifecycle_state == "FAILED" and "no capacity" in deployment.lifecycle_details
    assert _predict_log(cramped, created["id"]) == []
    cramped.create_deployment("fits", shape="VM.GPU.A10.1")  # another shape succeeds


def test_activate_and_update_launch_again(cramped) -> None:
    client = cramped.data_science_client()
    models = oci.data_science.models
    created = cramped.create_deployment("moving")
    cramped.wait_work_request(client.deactivate_model_deployment(created["id"]).headers["opc-work-request-id"])
    shape = models.UpdateSingleModelDeploymentConfigurationDetails(
        deployment_type="SINGLE_MODEL",
        model_configuration_details=models.UpdateModelConfigurationDetails(
            model_id=cramped.service_model_id(),
            instance_configuration=models.InstanceConfiguration(instance_shape_name="VM.GPU.A10.2"),
        ),
    )
    update = client.update_model_deployment(
        created["id"], models.UpdateModelDeploymentDetails(model_deployment_configuration_details=shape)
    )
    assert cramped.finish_work_request(update.headers["opc-work-request-id"]).status == "SUCCEEDED"  # INACTIVE
    activate = client.activate_model_deployment(created["id"])
    assert cramped.finish_work_request(activate.headers["opc-work-request-id"]).status == "FAILED"
    assert client.get_model_deployment(created["id"]).data.lifecycle_state == "FAILED"

    running = cramped.create_deployment("relaunched")
    renamed = client.update_model_deployment(running["id"], models.UpdateModelDeploymentDetails(display_name="r2"))
    assert cramped.finish_work_request(renamed.headers["opc-work-request-id"]).status == "SUCCEEDED"
    moved = client.update_model_deployment(
        running["id"], models.UpdateModelDeploymentDetails(model_deployment_configuration_details=shape)
    )
    work_request = cramped.finish_work_request(moved.headers["opc-work-request-id"])
    assert work_request.status == "FAILED"
    assert "no capacity" in client.list_work_request_errors(work_request.id).data[0].message


def test_the_vllm_service_container_family(cramped) -> None:
    client = cramped.data_science_client()
    containers = client.list_containers().data
    assert {c.container_name for c in containers} == {"odsc-vllm-serving", "odsc-tei-serving"}  # TEI: embeddings
    latest_ones = client.list_containers(is_latest=True, usage_query_param="INFERENCE").data
    (latest,) = [c for c in latest_ones if c.family_name == "odsc-vllm-serving"]
    assert latest.is_latest and latest.family_name == "odsc-vllm-serving" and latest.tag == "0.6.4.post1.2"
    assert f"dsmc://{latest.container_name}:{latest.tag}" == vllm_container.VLLM_IMAGE
    (workload,) = latest.workload_configuration_details_list
    assert workload.workload_type == "MODEL_DEPLOYMENT"
    assert workload.server_port == workload.health_check_port == 8080
    assert workload.cmd == "--served-model-name odsc-llm --seed 42"
    extra = workload.additional_configurations
    assert extra["MODEL_DEPLOY_PREDICT_ENDPOINT"] == "/v1/completions"
    assert "--served-model-name" in extra["restrictedParams"]
    assert len(client.list_containers(is_latest=False).data) == 1
    assert client.list_containers(target_workload="JOB_RUN").data == []
