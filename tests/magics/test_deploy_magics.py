"""%llm_deploy in a real kernel (nbclient) against a local backend: subcommands, errors, form, Python API."""

from __future__ import annotations

import re

import nbformat
import pytest
from kernel_helpers import RecordingClient, failed, kernel_env, llm_outputs, texts

from odsc_magics.local.testing import start_backend

pytestmark = pytest.mark.slow

MODEL = "Mistral-7B-Instruct-v0.3"
FAST = ("--deploy-seconds", "0.2", "--ttft-ms", "0", "--tokens-per-s", "0")
NO_CAPACITY = "VM.GPU.A10.2"  # the backend's region has none of it

CELLS = {
    "setup": "%load_ext odsc_magics",
    "models": "%llm_deploy models --search mistral",
    "shapes": "%llm_deploy shapes --model Meta-Llama-3.1-8B-Instruct",
    "create": f"%llm_deploy create --model {MODEL} --shape VM.GPU.A10.1 --name kdep --max-model-len 8192 "
    "--param --enforce-eager -o dep",
    "predict": "%%llm_predict --max-tokens 4\nHi",
    "list": "%llm_deploy list",
    "status": "%llm_deploy status kdep",
    "use": "%llm_deploy use kdep",
    "activate_active": "%llm_deploy activate kdep",
    "delete_active": "%llm_deploy delete kdep",
    "too_big": "%llm_deploy create --model Meta-Llama-3.1-8B-Instruct --shape VM.GPU.A10.1",
    "unknown_model": "%llm_deploy create --model Llama-9000 --shape VM.GPU.A10.1",
    "unknown_shape": f"%llm_deploy create --model {MODEL} --shape VM.GPU.Q1",
    "not_offered": f"%llm_deploy create --model {MODEL} --shape VM.GPU3.8",
    "restricted": f"%llm_deploy create --model {MODEL} --shape VM.GPU.A10.1 --param '--port 9000'",
    "logs_none": "%llm_deploy logs kdep",
    "deactivate": "%llm_deploy deactivate kdep",
    "predict_inactive": "%%llm_predict -d kdep\nHi",
    "activate": "%llm_deploy activate kdep",
    "twin1": f"%llm_deploy create --model {MODEL} --shape VM.GPU.A10.1 --name twin --no-wait",
    "twin2": f"%llm_deploy create --model {MODEL} --shape VM.GPU.A10.1 --name twin --no-wait",
    "ambiguous": "%llm_deploy status twin",
    "oom": "%llm_deploy create --model Meta-Llama-3.1-70B-Instruct --shape VM.GPU.A10.1 --name oom --no-fit-check",
    "capacity": f"%llm_deploy create --model {MODEL} --shape {NO_CAPACITY} --name nocap",
    "status_failed": "%llm_deploy status nocap",
    "api": "from odsc_magics import deployments, get_deployment\n"
    "d = get_deployment('kdep')\n"
    "print(d.to_dict()['state'], d.complete('Hi', max_tokens=2).deployment == d.id, len(deployments()))",
    "delete": "%llm_deploy delete kdep --yes",
    "form": "form = %llm_deploy\nprint(form.state, len(form.model_select.options))",
    "fill": "form.model_search.value = 'mistral'\n"
    "form.shape_select.value = 'VM.GPU.A10.1'\n"
    "form.name_text.value = 'formdep'\n"
    "form.deploy_button.click()\n"
    "print(form.state)",
    "form_done": "form.thread.join(60)\nprint(form.state, form.progress_bar.value, form.url is not None)",
    "form_refused": "form.model_search.value = 'llama 3.1 8b'\n"
    "form.shape_select.value = 'VM.GPU.A10.1'\n"
    "print(form.deploy(), form.state)",
    "after": "%llm_deploy list --all",
}


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """One kernel runs the cells above against a backend of its own; the tests read the outputs."""
    running = start_backend(tmp_path_factory.mktemp("deploy-magics"), *FAST, "--no-capacity", NO_CAPACITY)
    try:
        names = list(CELLS)
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS.values()])
        client = RecordingClient(nb, kernel_name="python3", timeout=180, allow_errors=True)
        client.execute(env=kernel_env(running, tmp_path_factory.mktemp("home")))
        client_deployments = (
            running.data_science_client().list_model_deployments(compartment_id=running.compartment_id).data
        )
        yield {
            "cell": {n: nb.cells[i] for i, n in enumerate(names)},
            "index": {n: i for i, n in enumerate(names)},
            "client": client,
            "nb": nb,
            "deployments": client_deployments,
        }
    finally:
        running.stop()


def shown(session, name: str) -> str:
    return texts(session["cell"][name])


def test_create_waits_smoke_tests_and_sets_the_default(session) -> None:
    create = shown(session, "create")
    assert not failed(session["cell"]["create"]), create
    assert "ACTIVE" in create and "default target" in create
    (answer,) = llm_outputs(session["cell"]["predict"])
    assert answer.metadata["odsc_magics"]["deployment"].startswith("ocid1.datasciencemodeldeployment")
    kdep = next(d for d in session["deployments"] if d.display_name == "kdep")
    params = kdep.model_deployment_configuration_details.environment_configuration_details.environment_variables
    assert params["PARAMS"].endswith("--max-model-len 8192 --enforce-eager")


def test_tables_render_as_rich_outputs(session) -> None:
    for name in ("models", "shapes", "list"):
        cell = session["cell"][name]
        (output,) = [o for o in cell.outputs if o.output_type == "execute_result"]
        assert {"text/plain", "text/markdown", "text/html"} <= set(output.data)
    assert "Mistral-7B-Instruct-v0.3" in shown(session, "models")
    shapes = shown(session, "shapes")
    assert "VM.GPU.A10.2" in shapes and "✓ fits" in shapes and "--max-model-len 16384" in shapes
    listing = shown(session, "list")
    assert "* kdep" in listing and "VM.GPU.A10.1" in listing and MODEL in listing
    assert "ACTIVE" in shown(session, "status") and "default target" in shown(session, "use")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("activate_active", "UsageError: The model deployment kdep is already ACTIVE."),
        ("delete_active", "UsageError: The model deployment kdep is ACTIVE; deleting it ends its endpoint."),
        ("too_big", "UsageError: Meta-Llama-3.1-8B-Instruct does not fit VM.GPU.A10.1"),
        ("unknown_model", "UsageError: Unknown model 'Llama-9000'"),
        ("unknown_shape", "UsageError: Unknown shape 'VM.GPU.Q1'"),
        ("not_offered", "UsageError: Shape VM.GPU3.8 is not offered for model deployments"),
        ("restricted", "UsageError: The vLLM flag --port cannot be set"),
        ("logs_none", "UsageError: The model deployment kdep has no logs configured."),
        ("predict_inactive", "UsageError: The model deployment kdep is not ACTIVE (it is INACTIVE)"),
        ("ambiguous", "UsageError: 2 model deployments are named 'twin'"),
    ],
)
def test_each_refusal_is_a_usage_error_with_the_fix(session, name: str, expected: str) -> None:
    text = shown(session, name)
    assert expected in text
    assert "Traceback" not in text
    fixes = {
        "activate_active": "%llm_deploy deactivate kdep",
        "delete_active": "--yes",
        "too_big": "Use --shape VM.GPU.A10.2 or --max-model-len 16384",
        "unknown_model": "%llm_deploy models --search",
        "unknown_shape": "%llm_deploy shapes",
        "not_offered": "Pick one the region offers",
        "restricted": "Remove --port",
        "logs_none": "--log-group",
        "predict_inactive": "%llm_deploy activate kdep",
        "ambiguous": "Use the OCID",
    }
    assert fixes[name] in text


def test_nothing_was_created_by_a_refused_create(session) -> None:
    names = [d.display_name for d in session["deployments"]]
    assert sorted(names) == sorted(["kdep", "twin", "twin", "oom", "nocap", "formdep"])


def test_failures_end_with_the_diagnosis_and_next_step(session) -> None:
    oom = shown(session, "oom")
    assert "ran out of GPU memory on VM.GPU.A10.1" in oom
    assert "Next step: Choose a shape with more GPU memory" in oom
    assert "UsageError: The model deployment oom" in oom and "FAILED" in oom and "CUDA out of memory" in oom
    capacity = shown(session, "capacity")
    assert f"no free capacity for {NO_CAPACITY}" in capacity
    assert "Next step: Deploy on another shape that fits: VM.GPU" in capacity
    assert "UsageError: The model deployment nocap" in capacity and "FAILED" in capacity
    status = shown(session, "status_failed")
    assert "FAILED" in status and "no free capacity" in status and not failed(session["cell"]["status_failed"])


def test_lifecycle_through_the_magics_and_the_api(session) -> None:
    assert "INACTIVE" in shown(session, "deactivate")
    assert "ACTIVE" in shown(session, "activate") and not failed(session["cell"]["activate"])
    assert shown(session, "api").split()[:2] == ["ACTIVE", "True"]
    assert "DELETED" in shown(session, "delete")
    assert "kdep" in shown(session, "after") and "DELETED" in shown(session, "after")


def test_the_form_deploys_in_the_background(session) -> None:
    assert "idle 12" in shown(session, "form")  # the local catalog: 8 generation and 4 embedding models
    (view,) = [
        o for o in session["cell"]["form"].outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert view.output_type == "display_data"  # shown once, not again as the cell's result
    assert shown(session, "fill").strip() == "deploying"  # the click returned at once: the kernel is free
    assert shown(session, "form_done").strip() == "active 100 True"
    # The widget models the frontend received while the background deploy ran: progress, state, result.
    cells = {session["index"]["fill"], session["index"]["form_done"]}
    updates = [e["state"] for e in session["client"].comm_log if e["cell"] in cells and e["type"] == "comm_msg"]
    values = [str(u.get("value", "")) for u in updates]
    assert any("State: <b>ACTIVE</b> · 100%" in v for v in values)
    assert {"value": 100} in updates and {"bar_style": "success"} in updates
    assert any("formdep is ACTIVE" in v and "%%llm_predict -d formdep" in v for v in values)
    assert {"_dom_classes": ["odsc-deploy-form", "odsc-state-active"]} in updates
    refused = shown(session, "form_refused")
    assert refused.strip() == "None refused"


def test_follow_stops_run_all_when_interrupted(backend, tmp_path) -> None:
    """`logs --follow` against the local Logging service, the log group given by name; stop = interrupt."""
    from nbclient.exceptions import CellExecutionError

    cells = [
        "%load_ext odsc_magics",
        f"%llm_deploy create --model {MODEL} --shape VM.GPU.A10.1 --name followed --log-group odsc-magics-local",
        "%%llm_predict -d followed --max-tokens 2\nHi",
        "%llm_deploy logs followed --follow --tail 3",
        "print('not reached')",
    ]
    follow_cell = 3

    def interrupt_once_records_show(client, msg, cell_index):
        if cell_index == follow_cell and msg["msg_type"] == "update_display_data" and not client.interrupted:
            client.interrupted = True
            client.interrupt_soon()

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = RecordingClient(nb, on_message=interrupt_once_records_show, kernel_name="python3", timeout=180)
    client.interrupted = False
    with pytest.raises(CellExecutionError) as info:
        client.execute(env=kernel_env(backend, tmp_path))
    assert "Stopped following the logs of followed." in str(info.value)
    assert "Traceback" not in str(info.value)
    assert not nb.cells[4].outputs  # Run All stopped at the interrupted cell
    for cell in nb.cells[1:3]:
        assert not failed(cell), texts(cell)
    (error,) = [o for o in nb.cells[follow_cell].outputs if o.output_type == "error"]
    assert error.traceback == ["KeyboardInterrupt: Stopped following the logs of followed."]
    (logs,) = [o for o in nb.cells[follow_cell].outputs if o.output_type == "display_data"]
    shown = logs.data["text/plain"]
    assert shown.startswith("Logs of followed: ") and "(following" not in shown
    assert re.search(r"\n\S+\s+(access|predict)\s", shown), shown  # the records shown until the interrupt


def test_every_hint_for_a_name_with_spaces_runs_as_printed(backend, monkeypatch, capsys) -> None:
    """Terminal IPython: each `%llm_deploy ...` command a note or error prints is run exactly as printed."""
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("ODSC_MAGICS_BACKEND", "local")
    monkeypatch.setenv("ODSC_MAGICS_LOCAL_DIR", str(backend.state_dir))
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "odsc_magics")

    def run(line: str, *, fails: bool = False) -> str:
        capsys.readouterr()
        result = ip.run_cell(line)
        assert result.success != fails, (line, result.error_in_exec)
        return f"{capsys.readouterr().out}\n{result.error_in_exec or ''}"

    def hinted(text: str, command: str) -> str:
        (line,) = {found for found in re.findall(r"`(%llm_deploy [^`]*)`", text) if found.startswith(command)}
        return line

    created = run(f"%llm_deploy create --model {MODEL} --shape VM.GPU.A10.1 --name 'two words' --no-wait")
    assert "%llm_deploy status 'two words'" in created
    assert "ACTIVE" in run(hinted(created, "%llm_deploy status"))
    refused = run("%llm_deploy activate 'two words'", fails=True)
    stopped = run(hinted(refused, "%llm_deploy deactivate"))
    assert "INACTIVE" in stopped
    inactive = run("%%llm_predict -d 'two words' --max-tokens 2\nHi", fails=True)
    assert hinted(inactive, "%llm_deploy activate") == hinted(stopped, "%llm_deploy activate")
    run(hinted(inactive, "%llm_deploy activate"))
    active = run("%llm_deploy delete 'two words'", fails=True)
    assert "DELETED" in run(hinted(active, "%llm_deploy delete"))


def test_a_failed_deploy_says_where_its_predict_log_lines_are(backend, monkeypatch, capsys) -> None:
    """The next step of an unrecognised failure points at lines that are shown, or at the command that reads them."""
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("ODSC_MAGICS_BACKEND", "local")
    monkeypatch.setenv("ODSC_MAGICS_LOCAL_DIR", str(backend.state_dir))
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "odsc_magics")
    fail = "--env 'EMULATOR_FAIL=the engine said something new'"
    create = f"%llm_deploy create --model {MODEL} --shape VM.GPU.A10.1 {fail}"

    capsys.readouterr()
    result = ip.run_cell(f"{create} --name 'no log'")
    shown = capsys.readouterr().out + str(result.error_in_exec)
    assert "FAILED" in str(result.error_in_exec)
    assert "below" not in shown
    assert "Next step: No predict-log lines could be read: `%llm_deploy logs 'no log'` reads them" in shown
    assert "Evidence:\n  ModelDeploymentFailed: Model deployment failed: the engine said something new\n" in shown

    result = ip.run_cell(f"{create} --name logged-fail --log-group odsc-magics-local")
    shown = capsys.readouterr().out + str(result.error_in_exec)
    assert "below" not in shown
    step = "Read the predict-log lines in the evidence, and the whole predict log with `%llm_deploy logs logged-fail`"
    assert step in shown
    evidence = shown[shown.index("Evidence:") :]
    assert "ERROR:    the engine said something new" in evidence  # the lines the next step points at
    assert ip.run_cell("%llm_deploy logs logged-fail --kind predict").success
    assert "ERROR:    the engine said something new" in capsys.readouterr().out
