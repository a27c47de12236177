"""`%llm_deploy status` of a deleted deployment, in a real kernel against a local backend."""

from __future__ import annotations

import pytest
from kernel_helpers import failed, texts

pytestmark = pytest.mark.slow

MODEL = "Mistral-7B-Instruct-v0.3"


def test_status_of_a_deleted_deployment_shows_it_deleted(backend_factory, run_cells) -> None:
    running = backend_factory()
    created = running.create_deployment("retired")
    running.data_science_client().delete_model_deployment(created["id"])
    nb, _ = run_cells(
        running,
        [
            "%load_ext odsc_magics",
            "import time, odsc_magics\n"
            "while odsc_magics.get_deployment(" + repr(created["id"]) + ").state != 'DELETED': time.sleep(0.1)",
            "%llm_deploy list --all",
            "%llm_deploy status retired",
        ],
    )
    listing, status = texts(nb.cells[2]), texts(nb.cells[3])
    assert "retired" in listing and "DELETED" in listing
    assert not failed(nb.cells[3]), status
    assert "retired" in status and "DELETED" in status and created["id"] in status
