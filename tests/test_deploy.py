"""deploy(): the AQUA-style request, waiting on the work request, smoke test, failures, listing."""

from __future__ import annotations

import pytest

from odsc_magics import config
from odsc_magics.config import LLMSettings, default_target
from odsc_magics.deploy import VLLM_IMAGE, Deployment, deploy, deployments, get_deployment
from odsc_magics.errors import DeploymentFailedError, DeploymentNotActiveError, NotFoundError, ValidationError
from odsc_magics.local.testing import start_backend

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


def test_deploy_completion_model(own_backend, settings: LLMSettings) -> None:
    deployment = deploy(MODEL, "VM.GPU.A10.1", name="quick", progress=False, settings=settings)
    assert isinstance(deployment, Deployment)
    assert deployment.state == "ACTIVE" and deployment.name == "quick"
    assert deployment.url.endswith(deployment.id)
    assert default_target() == deployment.id
    assert own_backend.deployment_stats(deployment.id)["predict_requests"] == 1  # the smoke test

    raw = own_backend.data_science_client().get_model_deployment(deployment.id).data
    details = raw.model_deployment_configuration_details
    env_details = details.environment_configuration_details
    assert details.deployment_type == "SINGLE_MODEL"
    assert env_details.image == VLLM_IMAGE
    assert env_details.server_port == env_details.health_check_port == 8080
    assert env_details.predict_api_specification == "openai"
    env = env_details.environment_variables
    assert env["PARAMS"] == "--served-model-name odsc-llm --seed 42"
    assert env["MODEL_DEPLOY_PREDICT_ENDPOINT"] == "/v1/completions"
    assert env["BASE_MODEL"].startswith(f"service_models/{MODEL}/")
    assert env["PORT"] == env["HEALTH_CHECK_PORT"] == "8080"
    model_config = details.model_configuration_details
    assert model_config.bandwidth_mbps == 10
    assert model_config.scaling_policy.instance_count == 1
    assert model_config.instance_configuration.instance_shape_name == "VM.GPU.A10.1"
    assert raw.freeform_tags["OCI_AQUA"] == "active" and raw.freeform_tags["aqua_model_name"] == MODEL

    result = deployment.complete("Hello", max_tokens=3)
    assert result.text and result.deployment == deployment.id


def test_deploy_chat_model_by_ocid(own_backend, settings: LLMSettings) -> None:
    model_id = own_backend.service_model_id("Phi-3-mini-4k-instruct")
    deployment = deploy(model_id, "VM.GPU.A10.1", name="chatty", chat=True, progress=False, settings=settings)
    assert deployment.is_chat
    assert deployment.chat([{"role": "user", "content": "Hi"}], max_tokens=2).route == "/v1/chat/completions"
    assert "".join(deployment.stream_chat([{"role": "user", "content": "Hi"}], max_tokens=3))


def test_deploy_without_wait_then_wait(own_backend, settings: LLMSettings) -> None:
    deployment = deploy(MODEL, "VM.GPU.A10.1", name="later", wait=False, settings=settings)
    assert deployment.state == "CREATING" and deployment.work_request_id
    assert default_target() is None
    assert deployment.wait(progress=True) is deployment
    assert deployment.state == "ACTIVE"
    assert get_deployment("later", settings=settings).id == deployment.id
    assert get_deployment(deployment.id, settings=settings).name == "later"
    assert deployment.id in {d.id for d in deployments(settings=settings)}


def test_failed_deployment_reports_work_request_errors(settings: LLMSettings) -> None:
    with pytest.raises(DeploymentFailedError) as info:
        deploy(
            MODEL,
            "VM.GPU.A10.1",
            name="doomed",
            progress=False,
            env={"EMULATOR_FAIL": "CUDA out of memory"},
            settings=settings,
        )
    assert "CUDA out of memory" in str(info.value)
    assert info.value.diagnosis and "CUDA out of memory" in info.value.diagnosis[0]["message"]
    assert default_target() is None


def test_unknown_model(settings: LLMSettings) -> None:
    with pytest.raises(NotFoundError, match="No model named"):
        deploy("Not-A-Real-Model", "VM.GPU.A10.1", settings=settings)
    with pytest.raises(ValidationError):
        deploy("", "VM.GPU.A10.1", settings=settings)


def test_wait_timeout_while_creating(backend_factory) -> None:
    running = backend_factory("--deploy-seconds", "60")
    settings = LLMSettings(backend="local", local_dir=str(running.state_dir))
    deployment = deploy(MODEL, "VM.GPU.A10.1", name="slow", wait=False, settings=settings)
    with pytest.raises(DeploymentNotActiveError) as info:
        deployment.wait(timeout=0, progress=False)
    assert info.value.state == "CREATING"
