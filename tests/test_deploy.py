"""deploy() and Deployment against the local backend: the AQUA request, checks before create, lifecycle."""

from __future__ import annotations

import importlib

import pytest

from odsc_magics import config
from odsc_magics.config import LLMSettings, default_target
from odsc_magics.errors import (
    DeploymentFailedError,
    DeploymentNotActiveError,
    NotFoundError,
    ValidationError,
)
from odsc_magics.local.testing import start_backend

api = importlib.import_module("odsc_magics.control_plane")
MODEL = "Mistral-7B-Instruct-v0.3"
FAST = ("--deploy-seconds", "0.2", "--ttft-ms", "0", "--tokens-per-s", "0")


@pytest.fixture(scope="module")
def own_backend(tmp_path_factory: pytest.TempPathFactory):
    """A backend of this module only (deployments made here do not show up elsewhere)."""
    running = start_backend(tmp_path_factory.mktemp("deploy-backend"), *FAST)
    yield running
    running.stop()


@pytest.fixture
def settings(own_backend) -> LLMSettings:
    return LLMSettings(backend="local", local_dir=str(own_backend.state_dir))


@pytest.fixture(autouse=True)
def _no_runtime_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "_runtime_target", None)


def _count(own_backend, name: str) -> int:
    client = own_backend.data_science_client()
    found = client.list_model_deployments(compartment_id=own_backend.compartment_id, display_name=name).data
    return len(found)


def test_deploy_sends_the_aqua_request(own_backend, settings: LLMSettings) -> None:
    seen = []
    deployment = api.deploy(
        MODEL,
        "VM.GPU.A10.1",
        name="quick",
        instances=2,
        max_model_len=4096,
        vllm_params=["--enforce-eager", "--max-num-seqs 8"],
        bandwidth_mbps=20,
        env={"EXTRA": "1"},
        progress=False,
        on_progress=lambda *a: seen.append(a),
        settings=settings,
    )
    assert isinstance(deployment, api.Deployment)
    assert deployment.state == "ACTIVE" and deployment.name == "quick"
    assert deployment.url.endswith(deployment.id)
    assert default_target() == deployment.id
    assert own_backend.deployment_stats(deployment.id)["predict_requests"] == 1  # the smoke test
    assert seen[-1][:2] == (100.0, "ACTIVE")

    raw = own_backend.data_science_client().get_model_deployment(deployment.id).data
    details = raw.model_deployment_configuration_details
    env_details = details.environment_configuration_details
    assert details.deployment_type == "SINGLE_MODEL"
    assert env_details.environment_configuration_type == "OCIR_CONTAINER"
    assert env_details.image == api.VLLM_IMAGE
    assert env_details.server_port == env_details.health_check_port == 8080
    assert env_details.predict_api_specification == "openai"
    env = env_details.environment_variables
    assert env["PARAMS"] == (
        "--served-model-name odsc-llm --seed 42 --max-model-len 4096 --enforce-eager --max-num-seqs 8"
    )
    assert env["MODEL_DEPLOY_PREDICT_ENDPOINT"] == "/v1/completions"
    assert env["BASE_MODEL"].startswith(f"service_models/{MODEL}/")
    assert env["EXTRA"] == "1"
    model_config = details.model_configuration_details
    assert model_config.bandwidth_mbps == 20
    assert model_config.scaling_policy.policy_type == "FIXED_SIZE"
    assert model_config.scaling_policy.instance_count == 2
    assert model_config.instance_configuration.instance_shape_name == "VM.GPU.A10.1"
    assert raw.freeform_tags["OCI_AQUA"] == "active" and raw.freeform_tags["aqua_model_name"] == MODEL
    assert raw.category_log_details is None  # no log ids: no logs, as AQUA does

    info = deployment.to_dict()
    assert set(info) == {"id", "name", "state", "url", "shape", "model", "model_id", "created", "chat",
                         "lifecycle_details"}  # fmt: skip
    assert (info["shape"], info["model"], info["chat"], info["state"]) == ("VM.GPU.A10.1", MODEL, False, "ACTIVE")
    assert info["created"].endswith("Z")
    result = deployment.complete("Hello", max_tokens=3)
    assert result.text and result.deployment == deployment.id


def test_chat_deployment_by_model_ocid(own_backend, settings: LLMSettings) -> None:
    model_id = own_backend.service_model_id("Phi-3-mini-4k-instruct")
    deployment = api.deploy(model_id, "VM.GPU.A10.1", name="chatty", chat=True, progress=False, settings=settings)
    assert deployment.is_chat and deployment.to_dict()["chat"]
    assert deployment.chat([{"role": "user", "content": "Hi"}], max_tokens=2).route == "/v1/chat/completions"


def test_a_retried_create_makes_one_deployment(own_backend, settings: LLMSettings) -> None:
    first = api.deploy(MODEL, "VM.GPU.A10.1", name="once", wait=False, retry_token="same-token-1", settings=settings)
    again = api.deploy(MODEL, "VM.GPU.A10.1", name="once", wait=False, retry_token="same-token-1", settings=settings)
    assert again.id == first.id
    assert _count(own_backend, "once") == 1
    assert again.wait(progress=False).state == "ACTIVE"


def test_create_without_wait_then_wait_and_look_up(settings: LLMSettings) -> None:
    deployment = api.deploy(MODEL, "VM.GPU.A10.1", name="later", wait=False, settings=settings)
    assert deployment.state == "CREATING" and deployment.work_request_id
    assert default_target() is None
    assert deployment.wait(progress=True) is deployment
    assert deployment.state == "ACTIVE"
    assert api.get_deployment("later", settings=settings).id == deployment.id
    assert api.get_deployment(deployment.id, settings=settings).name == "later"
    listed = api.deployments(settings=settings)
    assert deployment.id in {d.id for d in listed}
    assert [d.time_created for d in listed] == sorted((d.time_created for d in listed), reverse=True)


@pytest.mark.parametrize(
    ("model", "shape", "kwargs", "error", "text"),
    [
        ("Not-A-Real-Model", "VM.GPU.A10.1", {}, NotFoundError, "Unknown model 'Not-A-Real-Model'"),
        (MODEL, "VM.GPU.Z9", {}, ValidationError, "Unknown shape 'VM.GPU.Z9'"),
        (MODEL, "VM.GPU3.8", {}, ValidationError, "not offered for model deployments in us-ashburn-1"),
        (MODEL, "VM.GPU.A10.1", {"vllm_params": "--port 9000"}, ValidationError, "vLLM flag --port"),
        (MODEL, "VM.GPU.A10.1", {"vllm_params": ["--served-model-name=x"]}, ValidationError, "--served-model-name"),
        (MODEL, "VM.GPU.A10.1", {"instances": 0}, ValidationError, "instances must be at least 1"),
        (MODEL, "VM.GPU.A10.1", {"access_log_id": "ocid1.log.x"}, ValidationError, "need their log group"),
        ("", "VM.GPU.A10.1", {}, ValidationError, "needs a model and a shape"),
    ],
)
def test_refused_before_anything_is_created(
    own_backend, settings: LLMSettings, model, shape, kwargs, error, text
) -> None:
    with pytest.raises(error) as info:
        api.deploy(model, shape, name="refused", settings=settings, **kwargs)
    assert text in info.value.message
    assert info.value.hint
    assert _count(own_backend, "refused") == 0


def test_too_big_names_the_smallest_shape_or_a_max_model_len(own_backend, settings: LLMSettings) -> None:
    with pytest.raises(ValidationError) as info:
        api.deploy("Meta-Llama-3.1-8B-Instruct", "VM.GPU.A10.1", name="big", settings=settings)
    assert "does not fit VM.GPU.A10.1" in info.value.message
    assert "--shape VM.GPU.A10.2 or --max-model-len 16384" in info.value.hint
    with pytest.raises(ValidationError) as info:
        api.deploy("Meta-Llama-3.1-70B-Instruct", "VM.GPU.A10.2", name="big", max_model_len=4096, settings=settings)
    assert "smallest shape that fits: BM.GPU.L40S.4" in info.value.message
    assert _count(own_backend, "big") == 0


def test_lifecycle_actions_and_their_refusals(settings: LLMSettings) -> None:
    deployment = api.deploy(MODEL, "VM.GPU.A10.1", name="cycle", progress=False, settings=settings)
    with pytest.raises(ValidationError, match="already ACTIVE") as info:
        deployment.activate()
    assert "%llm_deploy deactivate cycle" in info.value.hint
    with pytest.raises(ValidationError, match="is ACTIVE; deleting it") as info:
        deployment.delete()
    assert "--yes" in info.value.hint
    assert deployment.deactivate().state == "INACTIVE"
    with pytest.raises(DeploymentNotActiveError) as info:
        deployment.complete("Hello")
    assert "%llm_deploy activate cycle" in info.value.hint
    with pytest.raises(ValidationError, match="already INACTIVE"):
        deployment.deactivate()
    assert deployment.activate().state == "ACTIVE"
    assert deployment.complete("Hello", max_tokens=2).text
    assert deployment.delete(force=True).state == "DELETED"
    assert deployment.id not in {d.id for d in api.deployments(settings=settings)}
    assert deployment.id in {d.id for d in api.deployments(include_deleted=True, settings=settings)}


def test_a_deleted_deployment_is_found_by_name_when_no_live_one_has_it(settings: LLMSettings) -> None:
    # Given a deployment that was deleted (list --all still shows it)
    first = api.deploy(MODEL, "VM.GPU.A10.1", name="gone", progress=False, settings=settings)
    first.delete(force=True)
    # When it is asked for by name, it is there, DELETED
    found = api.get_deployment("gone", settings=settings)
    assert (found.id, found.state) == (first.id, "DELETED")
    # A live deployment of the same name wins over the deleted one
    second = api.deploy(MODEL, "VM.GPU.A10.1", name="gone", progress=False, settings=settings)
    assert (api.get_deployment("gone", settings=settings).id, second.state) == (second.id, "ACTIVE")
    # A name that never existed is still not found
    with pytest.raises(NotFoundError, match="No model deployment named 'never-was'"):
        api.get_deployment("never-was", settings=settings)


def test_prompting_a_deleted_deployment_by_name_says_it_was_deleted(settings: LLMSettings) -> None:
    from odsc_magics import connect

    api.deploy(MODEL, "VM.GPU.A10.1", name="retired", progress=False, settings=settings).delete(force=True)
    with pytest.raises(NotFoundError, match="'retired' was deleted") as caught:
        connect("retired", settings=settings).complete("Hello")
    assert "Deploy it again" in caught.value.hint


def test_actions_without_wait_return_at_once(settings: LLMSettings) -> None:
    deployment = api.deploy(MODEL, "VM.GPU.A10.1", name="nowait", progress=False, settings=settings)
    assert deployment.deactivate(wait=False).state in ("UPDATING", "INACTIVE")
    assert deployment.wait(progress=False).state == "INACTIVE"
    assert deployment.delete(wait=False).state in ("DELETING", "DELETED")


def test_logs_of_a_deployment_without_logs(settings: LLMSettings) -> None:
    deployment = api.deploy(MODEL, "VM.GPU.A10.1", name="nologs", wait=False, settings=settings)
    with pytest.raises(ValidationError, match="has no logs configured") as info:
        deployment.logs()
    assert "--log-group" in info.value.hint


def test_interrupting_the_wait_leaves_the_deployment(settings: LLMSettings) -> None:
    deployment = api.deploy(MODEL, "VM.GPU.A10.1", name="watched", wait=False, settings=settings)

    def interrupt(*_args) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as info:
        deployment.wait(progress=False, on_progress=interrupt)
    assert "%llm_deploy status watched" in str(info.value) and "Deployment.wait()" in str(info.value)
    again = api.get_deployment(deployment.id, settings=settings)
    assert again.wait(progress=False).state == "ACTIVE"  # resumed from the newest work request


def test_failed_deployment_explains_itself(own_backend, settings: LLMSettings) -> None:
    logs = own_backend.log_ids()
    with pytest.raises(DeploymentFailedError) as info:
        api.deploy(
            "Meta-Llama-3.1-70B-Instruct",
            "VM.GPU.A10.1",
            name="doomed",
            progress=False,
            check_fit=False,  # the fit check would refuse it before anything is created
            log_group_id=logs["group"],
            access_log_id=logs["access"],
            predict_log_id=logs["predict"],
            settings=settings,
        )
    diagnosis = info.value.diagnosis
    assert diagnosis.kind == "cuda_oom"
    assert "ran out of GPU memory on VM.GPU.A10.1" in diagnosis.summary
    assert "Next step: Choose a shape with more GPU memory" in info.value.short()
    assert diagnosis.suggested_shapes and diagnosis.suggested_shapes[0] in diagnosis.next_step
    assert "CUDA out of memory" in info.value.work_request_errors[0]["message"]
    assert any(line.startswith("torch.OutOfMemoryError: CUDA out of memory") for line in diagnosis.evidence)
    assert default_target() is None
    failed = api.get_deployment("doomed", settings=settings)
    assert failed.state == "FAILED" and "CUDA out of memory" in failed.lifecycle_details
    assert failed.diagnose().kind == "cuda_oom"
    with pytest.raises(DeploymentFailedError):
        failed.wait(progress=False)


def test_a_context_too_long_for_the_kv_cache_suggests_a_max_model_len(settings: LLMSettings) -> None:
    with pytest.raises(DeploymentFailedError) as info:
        api.deploy(
            "Meta-Llama-3.1-8B-Instruct",
            "VM.GPU.A10.1",
            name="long",
            progress=False,
            check_fit=False,
            settings=settings,
        )
    diagnosis = info.value.diagnosis
    assert diagnosis.kind == "max_model_len"
    assert "131,072 tokens" in diagnosis.summary
    assert f"Next step: Redeploy with `--max-model-len {diagnosis.suggested_max_model_len}`" in info.value.short()


def test_no_capacity_explains_itself(backend_factory) -> None:
    running = backend_factory("--no-capacity", "VM.GPU.A10.1")
    settings = LLMSettings(backend="local", local_dir=str(running.state_dir))
    with pytest.raises(DeploymentFailedError) as info:
        api.deploy(MODEL, "VM.GPU.A10.1", name="nocap", progress=False, settings=settings)
    diagnosis = info.value.diagnosis
    assert diagnosis.kind == "no_capacity" and "no free capacity for VM.GPU.A10.1" in diagnosis.summary
    assert "Next step: Deploy on another shape that fits: " in info.value.short()
    assert "VM.GPU.A10.2" in diagnosis.suggested_shapes and "VM.GPU.A10.1" not in diagnosis.suggested_shapes
    assert info.value.work_request_errors[0]["code"] == "InternalError"
    assert "There is currently no capacity for the specified shape VM.GPU.A10.1" in str(info.value)


def test_wait_timeout_while_creating(backend_factory) -> None:
    running = backend_factory("--deploy-seconds", "60")
    settings = LLMSettings(backend="local", local_dir=str(running.state_dir))
    deployment = api.deploy(MODEL, "VM.GPU.A10.1", name="slow", wait=False, settings=settings)
    with pytest.raises(DeploymentNotActiveError) as info:
        deployment.wait(timeout=0, progress=False)
    assert info.value.state == "CREATING"


def test_build_params() -> None:
    assert api.build_params() == "--served-model-name odsc-llm --seed 42"
    assert api.build_params(2048, "--enforce-eager") == (
        "--served-model-name odsc-llm --seed 42 --max-model-len 2048 --enforce-eager"
    )
    for flag in api.RESTRICTED_FLAGS:
        with pytest.raises(ValidationError, match=flag):
            api.build_params(None, f"{flag} 1")
    with pytest.raises(ValidationError, match="given twice"):
        api.build_params(1024, "--max-model-len 2048")
