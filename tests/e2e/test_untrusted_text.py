"""Text from the model and the service is shown as text in JupyterLab, never run as markup or script.

A stub OpenAI-compatible server answers markup that would run a handler (``<img onerror>``, ``<svg onload>``,
``<script>``, ``javascript:`` links), reached through the local backend's ``--engine openai:URL``; a deployment
whose display name, model name, failure reason and predict-log lines carry the same markup fails on that
backend. A notebook prompts, chats, lists, diagnoses and reads logs in a real JupyterLab; then it is saved and
opened from disk in a fresh JupyterLab server. Every handler writes to ``window.__odsc_xss``, which must stay
unset.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import time
from pathlib import Path

import pytest
from stub_server import answering, openai_app, serve_in_thread

from odsc_magics.local.testing import DEFAULT_MODEL, start_backend
from odsc_magics.vllm_container import BASE_PARAMS, deployment_details
from tests.e2e.conftest import needs_browser_and_extension, running_lab

TIMEOUT = 90_000
HOOK = "__odsc_xss"
RUN = f"window.{HOOK}=(window.{HOOK}||0)+1"
IMG = f'<img src=x onerror="{RUN}">'
SVG = f'<svg onload="{RUN}"></svg>'
SCRIPT = f"<script>{RUN}</script>"
AUTOLINK = f"<javascript:{RUN}>"
LINK = f"[read more](javascript:{RUN})"
# What the model answers: every form, each shown as the text it is (the Markdown link may render as a link,
# but never with a javascript: target).
ANSWER = f"Summary: {IMG} and {SVG} then {SCRIPT} or {AUTOLINK} and {LINK} done."
AS_TEXT = (IMG, SVG, SCRIPT, AUTOLINK)
# The failed deployment: its display name, its model name and its failure reason (a multi-line reason whose
# second line would close a code fence) carry the markup too.
FAILED_NAME = f"failed {IMG}"
MODEL_NAME = f"model {SVG}"
REASON = f"CUDA error {IMG} {SCRIPT}\n````\n{SVG} {AUTOLINK} {LINK}"
CHAT = "xss-chat"
COMPLETION = "xss-llm"
NOTEBOOK = "untrusted.ipynb"

# Before JupyterLab loads: record every element that carries the payload's handler, a script with it, or a
# javascript: URL, anywhere and at any time (a live view that is replaced later counts too).
WATCH = """
(() => {
  window.__odsc_bad = [];
  const hook = '__HOOK__';
  const note = (kind, node) => window.__odsc_bad.push(kind + ': ' + node.outerHTML.slice(0, 300));
  const inspect = root => {
    if (!(root instanceof Element)) {
      return;
    }
    for (const node of [root, ...root.querySelectorAll('*')]) {
      if (node.tagName.toLowerCase() === 'script' && node.textContent.includes(hook)) {
        note('script', node);
      }
      for (const attr of Array.from(node.attributes)) {
        const name = attr.name.toLowerCase();
        if (name.startsWith('on') && attr.value.includes(hook)) {
          note(name, node);
        }
        if (/^\\s*javascript:/i.test(attr.value)) {
          note(name, node);
        }
      }
    }
  };
  new MutationObserver(records => {
    for (const record of records) {
      record.addedNodes.forEach(inspect);
      if (record.type === 'attributes') {
        inspect(record.target);
      }
    }
  }).observe(document, { subtree: true, childList: true, attributes: true });
})();
""".replace("__HOOK__", HOOK)

# Elements that are markup (not text) in the output areas and the panel, now.
MARKUP_NOW = """
() => {
  const found = [];
  for (const root of document.querySelectorAll('.jp-OutputArea, #odsc-magics-deployments')) {
    for (const node of root.querySelectorAll('*')) {
      const tag = node.tagName.toLowerCase();
      const handlers = Array.from(node.attributes).filter(a => a.name.toLowerCase().startsWith('on'));
      const scriptUrl = Array.from(node.attributes).some(a => /^\\s*javascript:/i.test(a.value));
      if (tag === 'script' || handlers.length || scriptUrl || (tag === 'img' && node.getAttribute('src') === 'x')) {
        found.push(node.outerHTML.slice(0, 300));
      }
    }
  }
  return found;
}
"""

# The visible text of each code cell's output area, by cell.
OUTPUT_TEXTS = """
() => Array.from(
  document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')
).map(cell => {
  const output = cell.querySelector('.jp-OutputArea');
  return output ? output.innerText : '';
})
"""

# The kernel answered: the status bar shows its state (Run All before that may run nothing).
KERNEL_IDLE = """
() => Array.from(document.querySelectorAll('.jp-StatusBar-TextItem')).some(item => item.textContent.includes('| Idle'))
"""

# Each code cell's prompt ("[3]:", "[*]:", "[ ]:") and whether the kernel is idle.
PROGRESS = """
() => ({
  prompts: Array.from(
    document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt')
  ).map(prompt => prompt.innerText.trim()),
  idle: document.querySelector(".jp-Notebook-ExecutionIndicator[data-status='idle']") !== null,
})
"""


def _cells() -> list[str]:
    return [
        "%load_ext odsc_magics",
        f"%%llm_predict -d {COMPLETION}\nSummarise the attached document.",
        f"%%llm_chat -d {CHAT}\nSummarise the attached document.",
        "%llm_chat --history",
        "%llm_deploy list",
        f"%llm_deploy status {shlex.quote(FAILED_NAME)}",
        f"%llm_deploy logs {shlex.quote(FAILED_NAME)}",
    ]


def _squash(text: str) -> str:
    """The text as a reader sees it: runs of white space as one space, zero-width characters dropped."""
    return re.sub(r"\s+", " ", re.sub("[\u200b-\u200d\u2060\ufeff]", "", text)).strip()


# ----------------------------------------------------------------------------------- the stub model server


@pytest.fixture(scope="module")
def stub_model():
    """An OpenAI-compatible server on a loopback port whose every answer is ANSWER (streamed slowly enough that
    the live view shows half-written markup)."""
    with serve_in_thread(openai_app(answering(ANSWER, piece=9, pause=0.05))) as url:
        yield url


# --------------------------------------------------------------------------------- backend and deployments


def _create(backend, name: str, *, chat: bool = False, model_name: str = DEFAULT_MODEL, env=None) -> dict:
    """A vLLM deployment created through the oci SDK, with its access and predict logs; waits until it ends."""
    import oci

    models = oci.data_science.models
    ids = backend.log_ids()
    details = deployment_details(
        name=name,
        model_id=backend.service_model_id(DEFAULT_MODEL),
        model_name=model_name,
        base_model=f"service_models/{DEFAULT_MODEL}/artifact",
        project_id=backend.project_id,
        compartment_id=backend.compartment_id,
        shape="VM.GPU.A10.1",
        params=f"{BASE_PARAMS} --max-model-len 4096",
        chat=chat,
        env=env,
        logs=models.CategoryLogDetails(
            access=models.LogDetails(log_group_id=ids["group"], log_id=ids["access"]),
            predict=models.LogDetails(log_group_id=ids["group"], log_id=ids["predict"]),
        ),
    )
    response = backend.data_science_client().create_model_deployment(details)
    work_request = backend.finish_work_request(response.headers["opc-work-request-id"])
    return {"id": response.data.id, "name": name, "status": work_request.status}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, stub_model):
    """The backend (relaying to the stub), its deployments, and the folder JupyterLab serves."""
    needs_browser_and_extension()
    base = tmp_path_factory.mktemp("untrusted")
    state_dir = base / "backend"
    fast = ("--deploy-seconds", "0.2", "--ttft-ms", "0", "--tokens-per-s", "0")
    backend = start_backend(state_dir, *fast, "--engine", f"openai:{stub_model}")
    try:
        made = [
            _create(backend, COMPLETION, model_name=MODEL_NAME),
            _create(backend, CHAT, chat=True),
            _create(backend, FAILED_NAME, model_name=MODEL_NAME, env={"EMULATOR_FAIL": REASON}),
        ]
        assert [d["status"] for d in made] == ["SUCCEEDED", "SUCCEEDED", "FAILED"], made
        root = base / "notebooks"
        root.mkdir()
        yield {"base": base, "state_dir": state_dir, "root": root, "backend": backend}
    finally:
        backend.stop()


@pytest.fixture(scope="module")
def first_lab(workspace):
    """The first JupyterLab server; ``stop()`` ends it (the reload test opens the notebook in a new one)."""
    stack = contextlib.ExitStack()
    lab = stack.enter_context(running_lab(workspace["base"], workspace["state_dir"], workspace["root"]))
    lab.stop = stack.close
    try:
        yield lab
    finally:
        stack.close()


def _open(browser, lab, notebook: str):
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    context.add_init_script(WATCH)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{lab.url}/lab/tree/{notebook}?token={lab.token}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook")
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", state="attached")
    page.wait_for_function(KERNEL_IDLE)
    return context, page


@pytest.fixture(scope="module")
def page(first_lab, browser):
    cells = [
        {"cell_type": "code", "source": source, "metadata": {}, "outputs": [], "execution_count": None}
        for source in _cells()
    ]
    first_lab.api(
        f"/api/contents/{NOTEBOOK}",
        method="PUT",
        body={
            "type": "notebook",
            "format": "json",
            "content": {
                "cells": cells,
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
                "nbformat": 4,
                "nbformat_minor": 5,
            },
        },
    )
    context, opened = _open(browser, first_lab, NOTEBOOK)
    yield opened
    context.close()


def _open_panel(page) -> None:
    panel = "#odsc-magics-deployments"
    if not page.locator(panel).is_visible():
        page.click('.jp-SideBar [data-id="odsc-magics-deployments"]')
    page.wait_for_selector(panel, state="visible")
    page.wait_for_selector(panel + ' .jp-OdscMagics-item[data-state="FAILED"]')


def _no_markup_ran(page) -> None:
    # An <img src=x> fails to load within milliseconds; give every handler time to run.
    page.wait_for_timeout(1500)
    ran, became, now = page.evaluate(f"window.{HOOK}"), page.evaluate("window.__odsc_bad"), page.evaluate(MARKUP_NOW)
    assert ran is None, f"handlers from untrusted text ran {ran} times in the page; markup seen: {became}"
    assert became == [], f"untrusted text became markup: {became}"
    assert now == [], f"untrusted text is markup in an output area or the panel: {now}"


def _shows_as_text(texts: list[str]) -> None:
    """Each output area shows the untrusted text it carries, character for character (spacing aside)."""
    assert len(texts) == len(_cells()), texts
    _, predict, chat, history, listing, status, logs = (_squash(t) for t in texts)
    for label, text in (("predict", predict), ("chat", chat), ("history", history)):
        for payload in AS_TEXT:
            assert _squash(payload) in text, f"{label} does not show {payload!r} as text: {text[:600]!r}"
        assert "read more" in text, f"{label}: {text[:600]!r}"
    assert _squash(FAILED_NAME) in listing and _squash(MODEL_NAME) in listing, listing
    assert _squash(FAILED_NAME) in status, status
    for payload in (IMG, SCRIPT, SVG, AUTOLINK):
        assert _squash(payload) in status, f"the failure reason does not show {payload!r} as text: {status!r}"
        assert _squash(payload) in logs, f"the log lines do not show {payload!r} as text: {logs!r}"
    assert _squash(FAILED_NAME) in logs, logs


def _panel_shows_as_text(page) -> None:
    item = page.locator('#odsc-magics-deployments .jp-OdscMagics-item[data-state="FAILED"]')
    assert item.locator(".jp-OdscMagics-name").inner_text() == FAILED_NAME
    assert _squash(MODEL_NAME) in _squash(item.locator(".jp-OdscMagics-meta").inner_text())
    item.locator('button[data-action="logs"]').click()
    logs = item.locator(".jp-OdscMagics-logs")
    page.wait_for_function("el => el.textContent.includes('CUDA error')", arg=logs.element_handle(), timeout=TIMEOUT)
    text = logs.inner_text()
    for line in REASON.splitlines():
        assert line in text, f"the panel's logs do not show {line!r}: {text!r}"


def _screenshot_end(page, path: Path) -> None:
    """The last outputs (status and logs): the notebook scrolled to its end."""
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-OutputArea").last.scroll_into_view_if_needed()
    page.screenshot(path=str(path))


def _wait_until_run(page, artifacts, timeout_s: float = 240) -> None:
    """Until every cell has run and the kernel is idle (a failing cell stops Run All: fail with the outputs)."""
    deadline = time.monotonic() + timeout_s
    progress: dict = {}
    while time.monotonic() < deadline:
        page.wait_for_timeout(1000)
        progress = page.evaluate(PROGRESS)
        ran = [bool(re.fullmatch(r"\[\d+\]:?", prompt)) for prompt in progress["prompts"]]
        if progress["idle"] and ran and all(ran):
            return
        if progress["idle"] and any(ran) and not all(ran) and "[*]:" not in progress["prompts"]:
            break  # stopped at a failing cell
    page.screenshot(path=str(artifacts / "untrusted-text-stopped.png"), full_page=True)
    pytest.fail(f"the notebook did not run to the end: {progress} {page.evaluate(OUTPUT_TEXTS)}")


def _run_all(page) -> None:
    page.click('.lm-MenuBar-itemLabel:text-is("Run")')
    page.click('.lm-Menu-itemLabel:text-is("Run All Cells")')


def test_untrusted_text_runs_no_handler_and_shows_as_text(page, artifacts):
    _run_all(page)
    _wait_until_run(page, artifacts)
    texts = page.evaluate(OUTPUT_TEXTS)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert errors.count() == 0, [errors.nth(i).inner_text() for i in range(errors.count())]
    _open_panel(page)
    _panel_shows_as_text(page)
    page.screenshot(path=str(artifacts / "untrusted-text.png"))
    _screenshot_end(page, artifacts / "untrusted-text-end.png")
    _no_markup_ran(page)
    _shows_as_text(texts)


def _saved_with_outputs(path: Path) -> bool:
    """True once the file on disk is a whole notebook with outputs (a read can land in the middle of a save)."""
    try:
        return any(cell.get("outputs") for cell in json.loads(path.read_text())["cells"])
    except ValueError:
        return False


def test_saved_notebook_runs_no_handler_in_a_fresh_lab(page, first_lab, workspace, browser, artifacts):
    import nbformat
    from nbformat.sign import NotebookNotary

    page.click('.lm-MenuBar-itemLabel:text-is("File")')
    page.click('.lm-Menu-itemLabel:text-is("Save Notebook")')
    path = Path(workspace["root"], NOTEBOOK)
    deadline = time.monotonic() + 60
    while not _saved_with_outputs(path):
        assert time.monotonic() < deadline, "the notebook was not saved with its outputs"
        time.sleep(0.2)
    time.sleep(1)  # the save is one write; let it finish before the server stops
    first_lab.stop()
    saved = nbformat.read(path, as_version=4)
    assert len(saved.cells) == len(_cells())
    # Signed as trusted: the fresh JupyterLab renders the outputs as it did in the session, unsanitised.
    notary = NotebookNotary(data_dir=str(workspace["base"] / "jupyter-data"))
    assert notary.check_signature(saved), "the saved notebook is not trusted, so reopening it proves little"

    with running_lab(workspace["base"], workspace["state_dir"], workspace["root"]) as fresh:
        assert fresh.process.pid != first_lab.process.pid
        context, reopened = _open(browser, fresh, NOTEBOOK)
        try:
            reopened.wait_for_function(
                "n => document.querySelectorAll('.jp-NotebookPanel .jp-OutputArea-output').length >= n",
                arg=len(_cells()) - 1,
            )
            _open_panel(reopened)
            _panel_shows_as_text(reopened)
            reopened.screenshot(path=str(artifacts / "untrusted-text-reopened.png"))
            _screenshot_end(reopened, artifacts / "untrusted-text-reopened-end.png")
            texts = reopened.evaluate(OUTPUT_TEXTS)
            _no_markup_ran(reopened)
            _shows_as_text(texts)
        finally:
            context.close()
