"""The deploy form, in-process: widget traits work without a frontend, so tests set values and click."""

from __future__ import annotations

import threading

import pytest

from odsc_magics.diagnosis import diagnose
from odsc_magics.errors import DeploymentFailedError, NotFoundError
from odsc_magics.sizing import SHAPES, model_spec_from
from odsc_magics.widgets import DeployForm, DeployRequest, ModelChoice

LLAMA = "Meta-Llama-3.1-8B-Instruct"
MODELS = [
    ModelChoice("ocid1.model.llama8b", LLAMA),
    ModelChoice("ocid1.model.llama70b", "Llama-3.3-70B-Instruct"),
    ModelChoice("ocid1.model.mistral", "Mistral-7B-Instruct-v0.3"),
    ModelChoice("ocid1.model.custom", "in-house-chat"),  # no size in its name
]
REGION = ["VM.GPU.A10.1", "VM.GPU.A10.2", "BM.GPU.A10.4", "VM.Standard.E4.Flex"]


class Recorder:
    """An on_deploy that reports progress like a work-request poller, then finishes as told."""

    def __init__(self, outcome="done", gate: threading.Event | None = None):
        self.outcome = outcome
        self.gate = gate
        self.requests: list[DeployRequest] = []

    def __call__(self, request, sink):
        self.requests.append(request)
        sink.update(10, "CREATING", "Creating the model deployment")
        if self.gate is not None:
            assert self.gate.wait(10)
        sink.update(60, "CREATING", "Starting the model server")
        if self.outcome == "done":
            sink.done(f"http://127.0.0.1:1/{request.name}", request.name)
        elif self.outcome == "return":
            return {"url": "http://127.0.0.1:1/ret", "name": request.name}
        elif self.outcome == "oom":
            sink.failed(
                diagnose(
                    state="FAILED",
                    log_lines=["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB"],
                    shape=request.shape,
                    model=model_spec_from(request.model_name),
                    available_shapes=REGION,
                )
            )
        elif self.outcome == "raise-failed":
            diagnosis = diagnose(
                state="FAILED",
                work_request_errors=[{"code": "LimitExceeded", "message": "Out of host capacity."}],
                shape=request.shape,
                model=model_spec_from(request.model_name),
                available_shapes=REGION,
                max_model_len=request.max_model_len,
            )
            raise DeploymentFailedError("Deployment FAILED", diagnosis=diagnosis)
        elif self.outcome == "raise":
            raise RuntimeError("the control plane exploded")
        elif self.outcome == "raise-service":
            raise NotFoundError(
                "No such compartment", hint="Check the compartment OCID.", opc_request_id="R1"
            )
        return None


def make_form(on_deploy=None, **kwargs):
    return DeployForm(MODELS, REGION, on_deploy=on_deploy or Recorder(), **kwargs)


def deploy_and_wait(form):
    form.deploy_button.click()
    assert form.thread is not None
    form.thread.join(10)
    assert not form.thread.is_alive()


def test_builds_with_a_default_selection():
    form = make_form()
    assert form.state == "idle"
    assert form.model_select.value == "ocid1.model.llama8b"
    # Llama 3.1 8B at its full 131k context needs ≈ 33 GB: the smallest fitting region shape is picked
    assert form.shape_select.value == "VM.GPU.A10.2"
    labels = dict((v, k) for k, v in form.shape_select.options)
    assert labels["VM.GPU.A10.2"] == "VM.GPU.A10.2 · 48 GB · ✓ fits"
    assert labels["VM.GPU.A10.1"] == "VM.GPU.A10.1 · 24 GB · ✗ needs ≈ 33.2 GB"
    assert labels["VM.Standard.E4.Flex"].endswith("✗ no GPU")
    assert form.name_text.value == "meta-llama-3-1-8b-instruct"
    assert "8 B parameters" in form.model_info.value
    assert not form.deploy_button.disabled
    assert "odsc-state-idle" in form.widget._dom_classes
    assert form._repr_mimebundle_() == form.widget._repr_mimebundle_()


def test_search_filters_models_and_keeps_the_selection():
    form = make_form()
    form.model_search.value = "mistral"
    assert [v for _, v in form.model_select.options] == ["ocid1.model.mistral"]
    assert form.model_select.value == "ocid1.model.mistral"
    form.model_search.value = "llama instruct"
    assert [v for _, v in form.model_select.options] == ["ocid1.model.llama8b", "ocid1.model.llama70b"]
    form.model_search.value = "nothing-like-this"
    assert form.model_select.options == ()
    assert "No model matches" in form.model_info.value
    assert form.deploy_button.disabled


def test_unfit_shape_disables_deploy_and_explains():
    form = make_form()
    form.shape_select.value = "VM.GPU.A10.1"
    assert form.shape_select.value == "VM.GPU.A10.1"
    assert form.deploy_button.disabled
    assert "does not fit VM.GPU.A10.1" in form.fit_info.value
    assert "--max-model-len 16384" in form.fit_info.value
    # a shorter context makes it fit: the verdicts follow the max model length
    form.max_len_text.value = 8192
    assert not form.deploy_button.disabled
    assert "1.1 GB KV cache at 8,192 tokens; VM.GPU.A10.1 has 24 GB" in form.fit_info.value
    labels = dict((v, k) for k, v in form.shape_select.options)
    assert labels["VM.GPU.A10.1"].endswith("✓ fits")
    # so does --max-model-len in the extra flags
    form.max_len_text.value = 0
    form.flags_text.value = "--max-model-len 4096 --enforce-eager"
    assert not form.deploy_button.disabled


def test_too_big_is_refused_before_anything_is_sent():
    recorder = Recorder()
    form = make_form(recorder)
    form.model_select.value = "ocid1.model.llama70b"
    form.shape_select.value = "BM.GPU.A10.4"
    form.max_len_text.value = 8192
    form.deploy_button.click()  # a disabled button still fires in Python: the form refuses itself
    assert form.thread is None
    assert recorder.requests == []
    assert form.state == "refused"
    assert "odsc-state-refused" in form.widget._dom_classes
    assert "does not fit BM.GPU.A10.4" in form.result_html.value
    assert "no listed shape has enough GPU memory" in form.result_html.value  # the region tops out at 96 GB
    assert "does not fit" in form.status_html.value


def test_refusal_names_the_suggestion():
    form = make_form()
    form.shape_select.value = "VM.GPU.A10.1"
    assert form.deploy() is None
    assert form.state == "refused"
    assert "pick VM.GPU.A10.2 or set Max model length to 16384" in form.result_html.value


def test_deploy_reports_progress_and_the_ready_cell():
    gate = threading.Event()
    recorder = Recorder(gate=gate)
    form = make_form(recorder)
    form.name_text.value = "my llm"
    form.instances_text.value = 2
    form.max_len_text.value = 8192
    form.shape_select.value = "VM.GPU.A10.1"
    form.flags_text.value = "--enforce-eager"
    form.mode_toggle.value = "chat"
    form.bandwidth_text.value = 20
    form.deploy_button.click()
    try:
        assert form.state == "deploying"
        assert form.deploy_button.disabled
        assert "odsc-state-deploying" in form.widget._dom_classes
        assert form.deploy() is form.thread  # a second click does not start a second deployment
    finally:
        gate.set()
    form.thread.join(10)
    assert form.state == "active"
    assert form.progress_bar.value == 100
    assert "State: <b>ACTIVE</b>" in form.progress_html.value
    assert "Starting the model server" in form.progress_html.value
    assert "elapsed 0:0" in form.progress_html.value
    assert form.url == "http://127.0.0.1:1/my llm"
    assert form.predict_cell_text == "%%llm_chat -d 'my llm'\nSay hello in one sentence."
    assert "%%llm_chat -d &#x27;my llm&#x27;" in form.result_html.value or "%%llm_chat -d 'my llm'" in (
        form.result_html.value
    )
    assert "http://127.0.0.1:1/my llm" in form.result_html.value
    assert not form.deploy_button.disabled
    (request,) = recorder.requests
    assert (request.model_id, request.shape, request.name, request.instance_count) == (
        "ocid1.model.llama8b",
        "VM.GPU.A10.1",
        "my llm",
        2,
    )
    assert request.chat and request.bandwidth_mbps == 20
    assert (request.max_model_len, request.vllm_flags) == (8192, "--enforce-eager")


def test_on_deploy_may_just_return_the_deployment():
    form = make_form(Recorder("return"))
    deploy_and_wait(form)
    assert form.state == "active"
    assert form.url == "http://127.0.0.1:1/ret"
    assert form.predict_cell_text.startswith("%%llm_predict -d meta-llama-3-1-8b-instruct")


def test_failure_shows_the_diagnosis_and_next_step():
    form = make_form(Recorder("oom"))
    form.model_select.value = "ocid1.model.mistral"
    form.shape_select.value = "VM.GPU.A10.1"
    form.max_len_text.value = 4096
    deploy_and_wait(form)
    assert form.state == "failed"
    assert form.diagnosis.kind == "cuda_oom"
    assert "ran out of GPU memory on VM.GPU.A10.1" in form.result_html.value
    assert "Next step:</b> Choose a shape with more GPU memory: VM.GPU.A10.2" in form.result_html.value
    assert "CUDA out of memory" in form.result_html.value  # the evidence
    assert form.progress_bar.bar_style == "danger"
    assert "odsc-state-failed" in form.widget._dom_classes


def test_deployment_failed_error_carries_the_diagnosis():
    form = make_form(Recorder("raise-failed"))
    form.max_len_text.value = 8192
    form.shape_select.value = "VM.GPU.A10.1"
    deploy_and_wait(form)
    assert form.state == "failed"
    assert form.diagnosis.kind == "no_capacity"
    assert "Deploy on another shape that fits: VM.GPU.A10.2, BM.GPU.A10.4" in form.result_html.value
    assert isinstance(form.error, DeploymentFailedError)


@pytest.mark.parametrize(
    ("outcome", "shown"),
    [
        ("raise", "RuntimeError: the control plane exploded"),
        ("raise-service", "No such compartment"),
    ],
)
def test_exceptions_in_on_deploy_are_shown_never_lost(outcome, shown):
    form = make_form(Recorder(outcome))
    deploy_and_wait(form)
    assert form.state == "failed"
    assert shown in form.status_html.value
    assert shown in form.result_html.value
    assert form.error is not None
    if outcome == "raise":
        assert "Traceback" in form.result_html.value


def test_reports_after_the_end_are_ignored():
    def on_deploy(request, sink):
        sink.done("http://x/1", request.name)
        sink.failed("late failure")
        sink.update(5, "CREATING", "late")

    form = make_form(on_deploy)
    deploy_and_wait(form)
    assert form.state == "active"
    assert "late" not in form.progress_html.value


def test_errors_in_widget_callbacks_are_shown():
    def logs(group):
        raise RuntimeError(f"cannot list the logs of {group}")

    form = make_form(log_groups=[("ml-logs", "ocid1.loggroup.a")], logs=logs)
    form.log_group_select.value = "ocid1.loggroup.a"
    assert "cannot list the logs of ocid1.loggroup.a" in form.status_html.value
    assert isinstance(form.errors[-1], RuntimeError)


def test_log_pickers_and_validation():
    logs = {
        "ocid1.loggroup.a": [("access", "ocid1.log.access"), {"display_name": "predict", "id": "ocid1.log.p"}]
    }
    form = make_form(log_groups=lambda: [("ml-logs", "ocid1.loggroup.a")], logs=logs)
    assert [v for _, v in form.log_group_select.options] == [None, "ocid1.loggroup.a"]
    form.log_group_select.value = "ocid1.loggroup.a"
    assert [label for label, _ in form.predict_log_select.options] == ["(none)", "access", "predict"]
    form.access_log_select.value = "ocid1.log.access"
    form.predict_log_select.value = "ocid1.log.p"
    values = form.values()
    assert (values["log_group_id"], values["access_log_id"], values["predict_log_id"]) == (
        "ocid1.loggroup.a",
        "ocid1.log.access",
        "ocid1.log.p",
    )
    form.flags_text.value = "--port 9000"
    assert form.deploy() is None
    assert "sets --port itself" in form.status_html.value
    form.flags_text.value = ""
    form.instances_text.value = 0
    form.deploy()
    assert form.state == "refused" and "Instances must be 1 or more" in form.status_html.value


def test_unknown_model_size_is_not_refused():
    form = make_form()
    form.model_select.value = "ocid1.model.custom"
    assert all(label.endswith("? size unknown") for label, _ in form.shape_select.options)
    assert "size unknown" in form.model_info.value
    assert not form.deploy_button.disabled
    deploy_and_wait(form)
    assert form.state == "active"


def test_explicit_shape_survives_a_model_change():
    form = make_form(default_shape="VM.GPU.A10.1", default_name="fixed")
    assert form.shape_select.value == "VM.GPU.A10.1"
    form.model_select.value = "ocid1.model.mistral"
    assert form.shape_select.value == "VM.GPU.A10.1"  # chosen by the user: never switched silently
    assert form.name_text.value == "fixed"


def test_deployment_configuration_shapes_win():
    models = [ModelChoice("m1", LLAMA, deployment_shapes=("BM.GPU.A10.4",))]
    form = DeployForm(models, REGION, on_deploy=Recorder())
    assert form.shape_select.value == "BM.GPU.A10.4"
    labels = dict((v, k) for k, v in form.shape_select.options)
    assert labels["VM.GPU.A10.2"].endswith("✗ not in the model's configuration")


def test_models_from_plain_data_and_custom_fit_fn():
    calls = []

    def fit_fn(spec, shape, **kwargs):
        calls.append(shape.name)
        from odsc_magics.sizing import fit

        return fit(spec, shape, **kwargs)

    form = DeployForm(
        [
            "Mistral-7B-Instruct-v0.3",
            ("id-2", "gemma-2-9b-it"),
            {"id": "id-3", "name": "Qwen2.5-7B-Instruct"},
        ],
        [SHAPES["VM.GPU.A10.1"], "VM.GPU.A10.2"],
        on_deploy=Recorder(),
        fit_fn=fit_fn,
    )
    assert [v for _, v in form.model_select.options] == ["Mistral-7B-Instruct-v0.3", "id-2", "id-3"]
    assert sorted(calls) == ["VM.GPU.A10.1", "VM.GPU.A10.2"]
    form.shape_select.value = "VM.GPU.A10.1"  # verdicts are cached per (model, max model length)
    assert len(calls) == 2


def test_raw_work_request_errors_are_diagnosed_by_the_form():
    def on_deploy(request, sink):
        sink.update(30, "CREATING")
        errors = [
            {"code": "InternalError", "message": "There is currently no capacity for the specified shape"}
        ]
        raise DeploymentFailedError("Deployment FAILED", diagnosis=errors)

    form = make_form(on_deploy)
    form.max_len_text.value = 8192
    form.shape_select.value = "VM.GPU.A10.1"
    deploy_and_wait(form)
    assert form.state == "failed"
    assert form.diagnosis.kind == "no_capacity"
    assert "Deploy on another shape that fits: VM.GPU.A10.2, BM.GPU.A10.4" in form.result_html.value


IMG = '<img src=x onerror="alert(1)">'
FORM_ELEMENTS = {"div", "b", "br", "code", "pre", "p", "small", "details", "summary", "a"}


def _inert(value: str, *seen: str) -> None:
    from rendering import inspect

    found = inspect(value)
    assert not found.problems(FORM_ELEMENTS), value
    for text in seen:
        assert text in found.text, (text, value)


def test_service_text_in_the_form_is_shown_as_text():
    def on_deploy(request, sink):
        sink.update(30, f"CREATING {IMG}", f"Pulling {IMG}")
        sink.done(f"javascript:alert(1)//{IMG}", f"dep {IMG}")

    form = make_form(on_deploy, default_name=f"dep {IMG}")
    form._started = 1.0
    deploy_and_wait(form)
    assert form.state == "active"
    _inert(form.result_html.value, f"dep {IMG} is ACTIVE", f"javascript:alert(1)//{IMG}")
    assert "<a " not in form.result_html.value  # a non-http URL is never a link
    _inert(form.status_html.value, f"dep {IMG}")
    _inert(form.progress_html.value, f"Pulling {IMG}")


def test_an_http_endpoint_is_a_link_opening_elsewhere():
    form = make_form(Recorder("done"))
    deploy_and_wait(form)
    assert '<a href="http://127.0.0.1:1/meta-llama-3-1-8b-instruct" target="_blank" rel="noopener noreferrer">' in (
        form.result_html.value
    )


def test_failure_reasons_in_the_form_are_shown_as_text():
    def on_deploy(request, sink):
        sink.failed(diagnose(state="FAILED", work_request_errors=[f"Boom {IMG}"], log_lines=[f"```\n{IMG}"]))

    form = make_form(on_deploy)
    deploy_and_wait(form)
    assert form.state == "failed"
    _inert(form.result_html.value, f"Boom {IMG}", IMG)
    _inert(form.status_html.value, f"Boom {IMG}")
