"""`%llm_deploy shapes --model M` in a real kernel: what each fitting shape delivers and costs, priced by the
gpu_prices setting over OCI's list prices."""

from __future__ import annotations

import re

import pytest
from kernel_helpers import failed, texts

pytestmark = pytest.mark.slow

MODEL = "Mistral-7B-Instruct-v0.3"
CELLS = [
    "%load_ext odsc_magics",
    f"%llm_deploy shapes --model {MODEL}",
    "%config LLMMagics.gpu_prices = {'A10': 1.0}",
    f"%llm_deploy shapes --model {MODEL} --max-model-len 4096",
    "%llm_deploy shapes",
    "%config LLMMagics.gpu_prices = {'A10': -1}",
    f"%llm_deploy shapes --model {MODEL} --max-model-len 0",
]


def table(cell) -> tuple[str, dict[str, dict[str, str]]]:
    """The plain-text title line and the Markdown table's rows by shape, as {column: cell}."""
    (output,) = [o for o in cell.outputs if o.output_type == "execute_result"]
    markdown = output.data["text/markdown"]
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    header = [shown(h) for h in lines[0][2:-2].split(" | ")]
    rows = {}
    for line in lines[1:]:
        cells = [shown(c) for c in line[2:-2].split(" | ")]
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return output.data["text/plain"].splitlines()[0], rows


def shown(cell: str) -> str:
    """A Markdown cell as a reader sees it (backslash escapes removed)."""
    return re.sub(r"\\(.)", r"\1", cell.strip())


def number(text: str) -> float:
    return float(re.search(r"[\d,]+(?:\.\d+)?", text).group(0).replace(",", ""))


@pytest.fixture(scope="module")
def cells(backend, tmp_path_factory):
    import nbformat
    from kernel_helpers import RecordingClient, kernel_env

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    client = RecordingClient(nb, kernel_name="python3", timeout=180, allow_errors=True)
    client.execute(env=kernel_env(backend, tmp_path_factory.mktemp("home")))
    return nb.cells


def test_fitting_shapes_show_sequences_speed_and_price(cells) -> None:
    title, rows = table(cells[1])
    assert "estimates for Mistral-7B-Instruct-v0.3 at 1,024 in / 256 out tokens per request" in title
    a10 = rows["VM.GPU.A10.1"]
    assert a10["fit of Mistral-7B-Instruct-v0.3"] == "✓ fits"
    assert a10["USD/hour"] == "$2.00" and rows["VM.GPU.A10.2"]["USD/hour"] == "$4.00"  # OCI list: $2.00/A10-hour
    assert number(a10["sequences at 32,768 tokens"]) >= 1
    assert number(rows["VM.GPU.A10.2"]["sequences at 32,768 tokens"]) > number(a10["sequences at 32,768 tokens"])
    single, saturated = number(a10["output tok/s, 1 request"]), number(a10["output tok/s, saturated"])
    assert 0 < single < saturated
    # USD per million output tokens is the hourly price spread over an hour of saturated output.
    assert number(a10["USD/M output tokens"]) == pytest.approx(2.00 / (saturated * 3600) * 1e6, rel=0.02)
    assert rows["VM.Standard.E4.Flex"]["USD/hour"] == ""  # not a fitting GPU shape: no estimate
    assert rows["VM.GPU2.1"]["output tok/s, 1 request"] == ""


def test_the_price_setting_and_a_shorter_context(cells) -> None:
    assert not failed(cells[2])
    _, before = table(cells[1])
    _, rows = table(cells[3])
    assert rows["VM.GPU.A10.2"]["USD/hour"] == "$2.00"  # {'A10': 1.0} × 2 GPUs
    assert "with %config gpu_prices for A10" in "".join(o.data["text/plain"] for o in cells[3].outputs)
    shorter = number(rows["VM.GPU.A10.1"]["sequences at 4,096 tokens"])
    longer = number(before["VM.GPU.A10.1"]["sequences at 32,768 tokens"])
    assert shorter >= 7 * longer  # 8× shorter sequences: about 8× as many fit (vLLM caps at 256)


def test_without_a_model_the_table_is_unchanged(cells) -> None:
    title, rows = table(cells[4])
    assert "estimates" not in title
    assert "USD/hour" not in rows["VM.GPU.A10.1"]


def test_a_bad_price_is_refused(cells) -> None:
    text = "".join(str(o.get("text", "")) + str(o.get("evalue", "")) for o in cells[5].outputs)
    assert "gpu_prices must be USD per GPU-hour as a number of 0 or more; 'A10' has -1" in text


def test_a_context_length_below_one_is_refused(cells) -> None:
    assert failed(cells[6])
    assert "UsageError: max_model_len must be at least 1, not 0." in texts(cells[6])
