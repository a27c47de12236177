"""An embedding model through the magics in a real kernel: `%llm_deploy create`, then embed_frame on its default."""

from __future__ import annotations

import nbformat
import pytest
from kernel_helpers import RecordingClient, failed, kernel_env, texts

from odsc_magics.local.testing import start_backend

pytestmark = pytest.mark.slow

FAST = ("--deploy-seconds", "0.2", "--ttft-ms", "0")
CELLS = {
    "setup": "%load_ext odsc_magics",
    "models": "%llm_deploy models --search minilm",
    "create": "%llm_deploy create --model all-MiniLM-L6-v2 --shape VM.GPU.A10.1 --name vectors -o dep",
    "embed": "import pandas as pd\n"
    "out = pd.DataFrame({'t': ['red apples', 'green apples', '']}).llm.embed('t', progress=False)\n"
    "print(out['embedding'].iloc[0].shape, out['embedding'].iloc[0].dtype, out['error'].iloc[2])",
    "dry": "plan = dep.endpoint().build_embedding_request(['one', 'two'])\n"
    "print(plan['headers']['route'], plan['body']['input'], plan['url'].endswith('/predict'))",
    "predict": "%%llm_predict --max-tokens 4\nHi",
    "refused": "%llm_deploy create --model all-MiniLM-L6-v2 --shape VM.GPU.A10.1 --max-model-len 256",
}


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    running = start_backend(tmp_path_factory.mktemp("embed-magics"), *FAST)
    try:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS.values()])
        client = RecordingClient(nb, kernel_name="python3", timeout=180, allow_errors=True)
        client.execute(env=kernel_env(running, tmp_path_factory.mktemp("home")))
        yield {name: nb.cells[i] for i, name in enumerate(CELLS)}
    finally:
        running.stop()


def test_deploy_create_deploys_an_embedding_model_and_embed_frame_uses_it(cells) -> None:
    assert "all-MiniLM-L6-v2" in texts(cells["models"])
    create = texts(cells["create"])
    assert not failed(cells["create"]), create
    assert "ACTIVE" in create and "embed_frame(df, column)" in create
    embedded = texts(cells["embed"])
    assert not failed(cells["embed"]), embedded
    assert "(384,) float32 empty text: there is nothing to embed" in embedded
    assert "/v1/embeddings ['one', 'two'] True" in texts(cells["dry"])


def test_completions_on_it_and_vllm_flags_for_it_are_usage_errors(cells) -> None:
    predict = texts(cells["predict"])
    assert failed(cells["predict"]) and "UsageError" in predict and "serves an embedding model" in predict
    refused = texts(cells["refused"])
    assert "UsageError: all-MiniLM-L6-v2 is an embedding model" in refused and "Traceback" not in refused
