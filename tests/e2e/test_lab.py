"""End to end in headless Chromium: the LLM Deployments panel lists, inserts a working predict cell, deactivates."""

from __future__ import annotations

import pytest

PANEL = "#odsc-magics-deployments"
ITEM = PANEL + ' .jp-OdscMagics-item[data-deployment-name="e2e-llm"]'
TIMEOUT = 60_000

# Records every text the last code cell's output shows, so the test can see the answer arrive in pieces.
RECORD_OUTPUT = """
() => {
  window.__outputs = [];
  const notebook = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  const observer = new MutationObserver(() => {
    const cells = notebook.querySelectorAll('.jp-CodeCell');
    const output = cells[cells.length - 1].querySelector('.jp-OutputArea');
    const text = output ? output.innerText.trim() : '';
    if (text && window.__outputs[window.__outputs.length - 1] !== text) {
      window.__outputs.push(text);
    }
  });
  observer.observe(notebook, { subtree: true, childList: true, characterData: true });
}
"""


@pytest.fixture(scope="module")
def page(lab, browser):
    lab.api(
        "/api/contents/e2e.ipynb",
        method="PUT",
        body={
            "type": "notebook",
            "format": "json",
            "content": {
                "cells": [],
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
                "nbformat": 4,
                "nbformat_minor": 5,
            },
        },
    )
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT)
    opened.goto(f"{lab.url}/lab/tree/e2e.ipynb?token={lab.token}")
    opened.wait_for_selector(".jp-NotebookPanel .jp-Notebook")
    opened.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", state="attached")
    yield opened
    context.close()


def _open_panel(page) -> None:
    if not page.locator(PANEL).is_visible():
        page.click('.jp-SideBar [data-id="odsc-magics-deployments"]')
    page.wait_for_selector(PANEL, state="visible")


def test_panel_lists_a_deployment_created_through_the_python_api(page, lab, artifacts):
    _open_panel(page)
    item = page.locator(ITEM)
    item.wait_for()
    assert item.locator(".jp-OdscMagics-badge").inner_text() == "ACTIVE"
    meta = item.locator(".jp-OdscMagics-meta").inner_text()
    assert "VM.GPU.A10.1" in meta
    assert "Mistral-7B-Instruct-v0.3" in meta
    assert item.get_attribute("data-deployment-id") == lab.backend.deployment.id
    shot = artifacts / "panel.png"
    page.locator(PANEL).screenshot(path=str(shot))
    page.screenshot(path=str(artifacts / "lab-with-panel.png"))
    print(f"panel screenshot: {shot}")


def test_insert_predict_cell_runs_and_streams(page, artifacts):
    _open_panel(page)
    page.locator(ITEM + ' button[data-action="predict"]').click()
    sources = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-editor")
    sources.nth(1).wait_for()
    texts = [sources.nth(i).inner_text() for i in range(sources.count())]
    assert "%load_ext odsc_magics" in texts
    predict = next(t for t in texts if t.startswith("%%llm_predict"))
    assert predict.splitlines()[0] == "%%llm_predict -d e2e-llm"

    page.evaluate(RECORD_OUTPUT)
    page.click('.lm-MenuBar-itemLabel:text-is("Run")')
    page.click('.lm-Menu-itemLabel:text-is("Run All Cells")')
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='busy']", state="attached")
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", state="attached")

    cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell")
    answer = cells.nth(cells.count() - 1).locator(".jp-OutputArea").inner_text().strip()
    assert answer
    assert "Error" not in answer
    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    seen = page.evaluate("window.__outputs")
    # Streamed: the output showed at least one partial answer before the final one.
    assert len(seen) >= 2, seen
    assert seen[-1] == answer or answer.startswith(seen[0][: len(seen[0]) // 2])
    page.screenshot(path=str(artifacts / "lab-predict.png"))


def test_prompt_cell_body_is_edited_as_markdown(page):
    editors = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-editor")
    predict = next(
        editors.nth(i) for i in range(editors.count()) if editors.nth(i).inner_text().startswith("%%llm_predict")
    )
    # CodeMirror 6 tags the content with the language name of its mode.
    assert predict.locator(".cm-content").get_attribute("data-language") == "markdown"


def test_deactivate_from_the_panel_changes_the_badge(page, artifacts):
    _open_panel(page)
    page.locator(ITEM + ' button[data-action="deactivate"]').click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    assert "Deactivate e2e-llm?" in dialog.inner_text()
    dialog.locator("button.jp-mod-warn").click()
    page.wait_for_selector(ITEM + '[data-state="INACTIVE"]')
    assert page.locator(ITEM + " .jp-OdscMagics-badge").inner_text() == "INACTIVE"
    assert page.locator(ITEM + ' button[data-action="activate"]').count() == 1
    page.locator(PANEL).screenshot(path=str(artifacts / "panel-inactive.png"))
