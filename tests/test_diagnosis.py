"""Failure diagnosis: known log and work-request signatures give the cause and the next step."""

from __future__ import annotations

import pytest

from odsc_magics.diagnosis import POLICY_STATEMENTS, Diagnosis, diagnose, log_messages, round_max_model_len
from odsc_magics.sizing import model_spec_from

LLAMA_8B = model_spec_from("Meta-Llama-3.1-8B-Instruct")
REGION = ["VM.GPU.A10.1", "VM.GPU.A10.2", "BM.GPU.A10.4", "VM.Standard.E4.Flex"]

KV_LINE = (
    "ValueError: The model's max seq len (131072) is larger than the maximum number of tokens that can be "
    "stored in KV cache (37696). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when "
    "initializing the engine."
)
KV_LINE_V1 = (
    "ValueError: To serve at least one request with the models's max seq len (131072), "
    "(16.00 GiB KV cache is needed, which is larger than the available KV cache memory (4.60 GiB). "
    "Based on the available memory, "
    "the estimated maximum model length is 37696. Try increasing `gpu_memory_utilization` or decreasing "
    "`max_model_len` when initializing the engine."
)
WR_TIMEOUT = {
    "code": "InternalError",
    "message": "Model deployment failed: Service timeout",
    "timestamp": "t",
}


@pytest.mark.parametrize(("tokens", "expected"), [(37696, 36864), (4096, 4096), (1500, 1024), (700, 512)])
def test_round_max_model_len(tokens, expected):
    assert round_max_model_len(tokens) == expected


@pytest.mark.parametrize("line", [KV_LINE, KV_LINE_V1])
def test_max_seq_len_larger_than_kv_cache(line):
    log = ["INFO 07-01 Loading model weights took 14.99 GB", line, "Traceback (most recent call last):"]
    d = diagnose(
        state="FAILED",
        work_request_errors=[WR_TIMEOUT],
        log_lines=log,
        shape="VM.GPU.A10.1",
        model=LLAMA_8B,
        available_shapes=REGION,
    )
    assert d.kind == "max_model_len"
    assert d.suggested_max_model_len == 36864
    assert "--max-model-len 36864" in d.next_step
    assert "131,072 tokens" in d.summary and "37,696" in d.summary
    assert d.suggested_shapes[0] == "VM.GPU.A10.2"
    assert d.evidence[0] == line
    assert "InternalError: Model deployment failed: Service timeout" in d.evidence


def test_cuda_out_of_memory_suggests_a_bigger_shape_that_fits():
    d = diagnose(
        state="FAILED",
        work_request_errors=[WR_TIMEOUT],
        log_lines=["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 224.00 MiB. GPU 0 has ..."],
        shape="VM.GPU.A10.1",
        model=model_spec_from("gemma-2-27b-it"),
        available_shapes=REGION,
    )
    assert d.kind == "cuda_oom"
    assert d.suggested_shapes == ["BM.GPU.A10.4"]  # 27B at bf16: ≈ 57 GB, more than 2 × A10
    assert "BM.GPU.A10.4" in d.next_step
    assert "54.4 GB weights" in d.summary


def test_out_of_memory_without_a_model_still_says_what_to_do():
    d = diagnose(state="FAILED", log_lines=["RuntimeError: CUDA out of memory."], shape="VM.GPU.A10.1")
    assert d.kind == "cuda_oom"
    assert "more GPU memory" in d.next_step
    d = diagnose(state="FAILED", log_lines=["ValueError: No available memory for the cache blocks."])
    assert d.kind == "cuda_oom"


def test_no_capacity_names_other_shapes_that_fit():
    d = diagnose(
        state="FAILED",
        work_request_errors=[
            {"code": "LimitExceeded", "message": "There is currently no capacity for the specified shape."}
        ],
        shape="VM.GPU.A10.2",
        model=LLAMA_8B,
        available_shapes=REGION,
        max_model_len=8192,
    )
    assert d.kind == "no_capacity"
    assert d.suggested_shapes == ["VM.GPU.A10.1", "BM.GPU.A10.4"]
    assert "VM.GPU.A10.1, BM.GPU.A10.4" in d.next_step
    assert "VM.GPU.A10.2" in d.summary


def test_out_of_host_capacity_without_model_lists_region_gpu_shapes():
    d = diagnose(
        state="FAILED", log_lines=["Out of host capacity."], shape="VM.GPU.A10.1", available_shapes=REGION
    )
    assert d.kind == "no_capacity"
    assert d.suggested_shapes == ["VM.GPU.A10.2", "BM.GPU.A10.4"]


def test_not_authorized_gives_policy_statements():
    class WorkRequestError:  # the SDK's WorkRequestError has attributes, not keys
        code = "NotAuthorizedOrNotFound"
        message = "Authorization failed or requested resource not found."

    d = diagnose(state="FAILED", work_request_errors=[WorkRequestError()])
    assert d.kind == "not_authorized"
    assert d.policies == POLICY_STATEMENTS
    assert any("manage data-science-family" in p for p in d.policies)
    assert any("read objects" in p for p in d.policies)
    assert any("virtual-network-family" in p for p in d.policies)
    assert any("log-content" in p for p in d.policies)
    assert "allow group <group> to manage data-science-family" in str(d)
    assert d.evidence[0].startswith("NotAuthorizedOrNotFound: Authorization failed")


def test_unsupported_architecture():
    line = "ValueError: Model architectures ['FancyForCausalLM'] are not supported for now."
    d = diagnose(state="FAILED", log_lines=[line])
    assert d.kind == "unsupported_architecture"
    assert "FancyForCausalLM" in d.summary


def test_trust_remote_code():
    line = (
        "ValueError: Loading /opt/ds/model/deployed_model requires you to execute the configuration file "
        "in that repo on your local machine. Make sure you have read the code there to avoid malicious use, "
        "then set the option `trust_remote_code=True` to remove this error."
    )
    d = diagnose(state="FAILED", log_lines=["starting", line])
    assert d.kind == "trust_remote_code"
    assert "--trust-remote-code" in d.next_step


def test_image_pull():
    d = diagnose(state="FAILED", work_request_errors=["Failed to pull image dsmc://odsc-vllm-serving:bad"])
    assert d.kind == "image_pull"


def test_unknown_shows_last_lines_and_the_work_request_error():
    log = [f"line {i}" for i in range(30)]
    d = diagnose(
        state="FAILED", work_request_errors=[{"code": "InternalError", "message": "boom"}], log_lines=log
    )
    assert d.kind == "unknown"
    assert d.summary == "The deployment is FAILED: InternalError: boom"
    assert d.evidence == ["InternalError: boom", *log[-10:]]
    assert "predict-log" in d.next_step


def test_timeout_without_a_known_cause():
    d = diagnose(state="FAILED", work_request_errors=[WR_TIMEOUT], log_lines=["INFO starting"])
    assert d.kind == "timeout"


def test_first_signature_wins_over_generic_errors():
    # the KV-cache message is also an engine start-up failure; it must not read as a generic OOM or timeout
    d = diagnose(state="FAILED", work_request_errors=[WR_TIMEOUT], log_lines=["CUDA out of memory", KV_LINE])
    assert d.kind == "max_model_len"


def test_rendering():
    d = Diagnosis("x", "Summary.", "Do this.", ["e1"], policies=["allow a"])
    assert str(d) == "Summary.\nNext step: Do this.\n  allow a"
    assert d.to_text().endswith("Evidence:\n  e1")
    assert d._repr_markdown_() == "**Summary\\.**\n\nNext step: Do this\\.\n\n```text\nallow a\n```\n\n```text\ne1\n```"


def test_markdown_shows_service_text_as_text():
    from rendering import inspect, render_both, visible

    img = '<img src=x onerror="alert(1)">'
    d = diagnose(
        state="FAILED",
        work_request_errors=[{"code": "InternalError", "message": f"Model *x* failed {img}"}],
        log_lines=[
            "Model architectures [<svg/onload=alert(1)>] are not supported",
            f"```\n{img}",
            "```` <svg onload=alert(1)>",
        ],
    )
    for output in render_both([d._repr_markdown_()])[0]:
        assert not inspect(output).problems(), output
        assert "does not support <svg/onload=alert(1)>" in visible(output)
        assert "```\n" + img in visible(output) and "```` <svg onload=alert(1)>" in visible(output)
    plain = diagnose(state="FAILED", work_request_errors=[f"Model *x* failed {img}"])
    for output in render_both([plain._repr_markdown_()])[0]:
        assert f"Model *x* failed {img}" in visible(output) and "em" not in inspect(output).elements


def test_log_messages_from_logging_search_results():
    def record(ms, message):
        return {"data": {"datetime": ms, "logContent": {"data": {"message": message}, "source": "ocid1.md"}}}

    class SearchResult:
        def __init__(self, data):
            self.data = data

    results = [record(3000, "third"), SearchResult(record(2000, "second")["data"]), record(1000, "first")]
    results.append(
        {"data": {"datetime": 500, "logContent": {"data": {}}}}
    )  # an access record without message
    assert log_messages(results) == ["first", "second", "third"]
