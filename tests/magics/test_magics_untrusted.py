"""Model and service text in a real kernel: answers, history, names, log lines and failure reasons stay text."""

from __future__ import annotations

import pytest
from kernel_helpers import failed, llm_outputs, texts
from rendering import inspect, render_both, visible
from stub_server import answering, openai_app, serve_in_thread

pytestmark = pytest.mark.slow

IMG = "<img src=x onerror=alert(document.domain)>"
# What a model could answer when a prompt carries someone else's document.
ANSWER = (
    f"**Done.** {IMG}\n\n"
    "```\nend of the block?\n```` \n"
    f"{IMG}\n```\n\n"
    "[details](javascript:alert(1)) ![pixel](http://127.0.0.1:9/leak.png) <script>alert(2)</script>"
)
NAME = f"evil {IMG}"
REASON = f"Launch failed: {IMG}"


@pytest.fixture(scope="module")
def stub_model():
    """An OpenAI-compatible server on a loopback port whose every answer is ANSWER."""
    with serve_in_thread(openai_app(answering(ANSWER))) as url:
        yield url


@pytest.fixture(scope="module")
def session(stub_model, tmp_path_factory):
    """One kernel against a local backend relaying to the stub model, with a deployment named NAME."""
    import nbformat
    from kernel_helpers import RecordingClient, kernel_env

    from odsc_magics.local.testing import start_backend

    flags = ("--deploy-seconds", "0.2", "--ttft-ms", "0", "--tokens-per-s", "0", "--engine", f"openai:{stub_model}")
    backend = start_backend(tmp_path_factory.mktemp("backend"), *flags)
    try:
        backend.create_deployment("relay")
        backend.create_deployment("relay-chat", chat=True)
        backend.create_deployment(NAME, logs=True)
        cells = {
            "setup": "%load_ext odsc_magics",
            "predict": "%%llm_predict -d relay\nSummarise the attached document.",
            "predict_no_stream": "%%llm_predict -d relay --no-stream\nSummarise it again.",
            "chat": "%%llm_chat -d relay-chat\nAnd now as a chat.",
            "history": "%llm_chat --history",
            "list": "%llm_deploy list",
            "status": f"%llm_deploy status '{NAME}'",
            "logs": f"%llm_deploy logs '{NAME}'",
            "create": "%llm_deploy create --model Mistral-7B-Instruct-v0.3 --shape VM.GPU.A10.1 "
            f"--name '{NAME} 2' --max-model-len 4096",
            "failing": "%llm_deploy create --model Mistral-7B-Instruct-v0.3 --shape VM.GPU.A10.1 --name doomed "
            f"--max-model-len 4096 --env 'EMULATOR_FAIL={REASON}'",
        }
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells.values()])
        home = tmp_path_factory.mktemp("home")
        client = RecordingClient(nb, kernel_name="python3", timeout=180, allow_errors=True)
        client.execute(env=kernel_env(backend, home))
        yield {**{name: nb.cells[i] for i, name in enumerate(cells)}, "client": client}
    finally:
        backend.stop()


def _displays(cell) -> list[dict]:
    return [o.data for o in cell.outputs if o.output_type in ("display_data", "execute_result")]


def _assert_inert(cell, *seen: str) -> None:
    """Every Markdown and HTML output of the cell renders with nothing active; each ``seen`` text is visible."""
    markdown = [d["text/markdown"] for d in _displays(cell) if "text/markdown" in d]
    html = [d["text/html"] for d in _displays(cell) if "text/html" in d]
    assert markdown or html, texts(cell)
    shown = ""
    for pair in render_both(markdown):
        for output in pair:
            assert not inspect(output).problems(), output
            shown += visible(output)
    for value in html:
        assert not inspect(value).problems({"b", "p", "table", "thead", "tbody", "tr", "th", "td"}), value
        shown += visible(value)
    for text in seen:
        assert text in shown, (text, shown)


@pytest.mark.parametrize("name", ["predict", "predict_no_stream", "chat"])
def test_an_answer_carrying_html_shows_it_as_text(session, name) -> None:
    cell = session[name]
    assert not failed(cell), texts(cell)
    (answer,) = llm_outputs(cell)
    assert answer.data["text/plain"] == ANSWER
    _assert_inert(cell, f"Done. {IMG}", IMG, "<script>alert(2)</script>")


def test_chat_history_shows_the_answer_as_text(session) -> None:
    _assert_inert(session["history"], IMG, "<script>alert(2)</script>")


def test_deployment_names_in_list_status_and_logs_are_text(session) -> None:
    _assert_inert(session["list"], NAME)
    _assert_inert(session["status"], f"Model deployment {NAME}")
    _assert_inert(session["logs"], f"Logs of {NAME}")


def test_a_failure_reason_in_the_diagnosis_is_text(session) -> None:
    cell = session["failing"]
    assert failed(cell)
    _assert_inert(cell, REASON)


def test_every_widget_html_the_kernel_sent_is_inert(session) -> None:
    # the live answer views and the progress bars of the deployments named NAME
    values = [
        e["state"]["value"]
        for e in session["client"].comm_log
        if isinstance(e["state"].get("value"), str) and e["type"] in ("comm_open", "comm_msg")
    ]
    widget_elements = {"div", "pre", "b", "br", "small", "code", "p"}
    for value in values:
        assert not inspect(value).problems(widget_elements), value
    shown = [inspect(v).text.replace("\u2007", " ") for v in values]
    assert any(f"{NAME} 2" in t for t in shown), values  # the progress bar of the deployment named NAME 2
    assert any(IMG in t and "alert(2)" in t for t in shown), values  # the live view of an answer
