"""The public API with wrong argument types or ranges: ValidationError naming the argument, nothing sent."""

from __future__ import annotations

import pytest

import odsc_magics as om
from odsc_magics.config import LLMSettings
from odsc_magics.errors import ValidationError

MODEL, SHAPE = "Mistral-7B-Instruct-v0.3", "VM.GPU.A10.1"


@pytest.fixture
def settings(backend) -> LLMSettings:
    return LLMSettings(backend="local", local_dir=str(backend.state_dir))


def _cases(backend, settings):
    endpoint = om.connect(backend.deployment["id"], settings=settings)
    deployment = om.get_deployment(backend.deployment["id"], settings=settings)

    def deploy(**kwargs):
        return lambda: om.deploy(MODEL, SHAPE, wait=False, settings=settings, **kwargs)

    return [
        ("target", lambda: om.connect(5, settings=settings)),
        ("id_or_name", lambda: om.get_deployment(None, settings=settings)),
        ("id_or_name", lambda: om.get_deployment(5, settings=settings)),
        ("instances", deploy(instances="2")),
        ("instances", deploy(instances=0)),
        ("instances", deploy(instances=True)),
        ("max_model_len", deploy(max_model_len="4096")),
        ("bandwidth_mbps", deploy(bandwidth_mbps=None)),
        ("env", deploy(env=["A=1"])),
        ("vllm_params", deploy(vllm_params=5)),
        ("name", deploy(name=5)),
        ("chat", deploy(chat="yes")),
        ("model", lambda: om.deploy(5, SHAPE, settings=settings)),
        ("include_deleted", lambda: om.deployments(include_deleted="no", settings=settings)),
        ("max_retries", lambda: endpoint.complete("hi", max_retries="a")),
        ("max_retries", lambda: endpoint.stream_complete("hi", max_retries=-1)),
        ("timeout", lambda: endpoint.complete("hi", timeout=0)),
        ("timeout", lambda: endpoint.chat([{"role": "user", "content": "hi"}], timeout="x")),
        ("max_tokens", lambda: endpoint.complete("hi", max_tokens="abc")),
        ("temperature", lambda: endpoint.complete("hi", temperature=-1)),
        ("prompt", lambda: endpoint.complete(None)),
        ("prompt", lambda: endpoint.stream_complete(5)),
        ("messages", lambda: endpoint.chat("hi")),
        ("messages", lambda: endpoint.stream_chat([1])),
        ("url", lambda: om.Endpoint(5, settings=settings)),
        ("tail", lambda: deployment.logs(tail="x")),
        ("timeout", lambda: deployment.wait(timeout="soon", progress=False)),
        ("interval", lambda: deployment.follow_logs(interval=-1)),
        ("timeout", lambda: deployment.follow_logs(timeout="x")),
        ("settings", lambda: om.deployments(settings=5)),
        ("settings", lambda: om.connect(backend.deployment["id"], settings={"backend": "local"})),
        ("route", lambda: endpoint.complete("hi", route=5)),
    ]


def test_wrong_arguments_raise_validation_errors_naming_them(backend, settings) -> None:
    before = (backend.stats(), len(om.deployments(include_deleted=True, settings=settings)))
    for argument, call in _cases(backend, settings):
        with pytest.raises(ValidationError) as info:
            call()
        assert info.value.target == argument, (argument, info.value.message)
        assert info.value.message.startswith(f"{argument} must be "), info.value.message
    # Nothing was created or predicted
    assert (backend.stats(), len(om.deployments(include_deleted=True, settings=settings))) == before


def test_right_arguments_still_work(backend, settings) -> None:
    endpoint = om.connect(backend.deployment["id"], settings=settings)
    assert endpoint.complete("hi", max_tokens=2, timeout=30, max_retries=0, temperature=0).text
    assert om.deployments(include_deleted=True, settings=settings)
