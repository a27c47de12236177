"""``--as oci-cli|python|openai`` in a real kernel: the program shown runs as printed against the local backend
and gets the answer the magic gets; the prompt cannot break out of the program or of its code block."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from kernel_helpers import failed, texts

pytestmark = pytest.mark.slow

VENV_BIN = Path(sys.executable).parent
FORMATS = ("oci-cli", "python", "openai")
OPTIONS = "--temperature 0 --max-tokens 12"
SYSTEM = "--system \"Be 'brief'.\""


def hostile(canary: Path) -> str:
    """A prompt that is shell and Python syntax: quotes, substitutions, backticks, triple quotes, fences."""
    return (
        f"It's \"quoted\" $(touch {canary}) `touch {canary}` ${{HOME}} \\n \\\\' ''' \"\"\"\n"
        "```\n<img src=x onerror=alert(1)>\n````\nend"
    )


@pytest.fixture(scope="module")
def session(backend, tmp_path_factory):
    """One kernel: each format for a completion and a chat turn, the magic's own answers, and refused uses."""
    import nbformat
    from kernel_helpers import RecordingClient, kernel_env

    work = tmp_path_factory.mktemp("snippets")
    canary = work / "ran"
    prompt = hostile(canary)
    cells = {"setup": "%load_ext odsc_magics"}
    for as_ in FORMATS:
        cells[f"predict {as_}"] = f"%%llm_predict -d test-llm --as {as_} {OPTIONS}\n{prompt}"
        cells[f"chat {as_}"] = f"%%llm_chat -d test-chat --as {as_} {OPTIONS} {SYSTEM}\n{prompt}"
    cells.update(
        {
            "whole": f"%%llm_predict -d test-llm --as openai --no-stream {OPTIONS}\n{prompt}",
            "whole_chat": f"%%llm_chat -d test-chat --as openai --no-stream {OPTIONS} {SYSTEM}\n{prompt}",
            "dry_output": f"%%llm_predict -d test-llm --dry-run --as python -o program {OPTIONS}\n{prompt}",
            "dry_output_check": "print(type(program).__name__, len(program))",
            "count": "%llm_chat --history",
            "reference": f"%%llm_predict -d test-llm --no-stream -o reference {OPTIONS}\n{prompt}",
            "chat_reference": f"%%llm_chat -d test-chat --no-stream -o chat_reference {OPTIONS} {SYSTEM}\n{prompt}",
            "answers": "import json; print(json.dumps([reference, chat_reference]))",
            "bad_format": "%llm_predict -d test-llm --as curl hi",
            "help": "print(get_ipython().find_line_magic('llm_predict').__doc__)",
        }
    )
    names = list(cells)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells.values()])
    before = backend.stats()
    client = RecordingClient(nb, kernel_name="python3", timeout=120, allow_errors=True)
    client.execute(env=kernel_env(backend, tmp_path_factory.mktemp("home")))
    after = backend.stats()
    by_name = {name: nb.cells[i] for i, name in enumerate(names)}
    reference, chat_reference = json.loads(texts(by_name["answers"]).strip())
    return {
        "cell": by_name,
        "work": work,
        "canary": canary,
        "prompt": prompt,
        "answers": {"predict": reference, "chat": chat_reference},
        "stats": (before, after),
    }


def shown_program(cell) -> tuple[str, str]:
    """(text/plain, text/markdown) of the one output a ``--as`` cell shows."""
    assert not failed(cell), texts(cell)
    (output,) = cell.outputs
    assert output.output_type == "display_data"
    return output.data["text/plain"], output.data["text/markdown"]


def run(as_: str, program: str, cwd: Path) -> str:
    """Run the program as printed; the answer it prints (the oci CLI: the text in its JSON)."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    env.update(OCI_CLI_SUPPRESS_FILE_PERMISSIONS_WARNING="True", SUPPRESS_LABEL_WARNING="True")
    command = ["bash", "-c", program] if as_ == "oci-cli" else [sys.executable, "-c", program]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    if as_ != "oci-cli":
        assert done.stdout.endswith("\n")
        return done.stdout[:-1]
    reply = json.loads(done.stdout)
    assert reply["status"] == "200 OK", reply
    choice = reply["data"]["choices"][0]
    return choice["message"]["content"] if "message" in choice else choice["text"]


@pytest.mark.parametrize("kind", ["predict", "chat"])
@pytest.mark.parametrize("as_", FORMATS)
def test_the_program_shown_runs_and_gets_the_magics_answer(session, as_: str, kind: str) -> None:
    program, _ = shown_program(session["cell"][f"{kind} {as_}"])
    expected = session["answers"][kind]
    assert expected.strip()
    assert run(as_, program, session["work"]) == expected
    assert not session["canary"].exists()


@pytest.mark.parametrize("kind", ["predict", "chat"])
def test_without_streaming_the_openai_program_uses_predict_v1(session, backend, kind: str) -> None:
    program, _ = shown_program(session["cell"]["whole" if kind == "predict" else "whole_chat"])
    assert "/predict/v1" in program and "stream" not in program
    assert run("openai", program, session["work"]) == session["answers"][kind]
    deployment = backend.deployment if kind == "predict" else backend.chat_deployment
    suffix = "/v1/completions" if kind == "predict" else "/v1/chat/completions"
    with urllib.request.urlopen(f"{backend.endpoint}/_emulator/access_logs", timeout=10) as response:
        records = json.loads(response.read()).get(deployment["id"], [])
    assert any(r["path"] == "/predict" + suffix and r["status"] == 200 for r in records), records[-3:]


def test_the_streamed_request_is_shown_streaming_where_the_tool_can(session) -> None:
    cli, _ = shown_program(session["cell"]["predict oci-cli"])
    assert cli.startswith("# oci raw-request cannot stream")
    assert "/predict \\\n" in cli
    openai_program, _ = shown_program(session["cell"]["predict openai"])
    assert "/predictWithResponseStream/v1" in openai_program and "stream=True" in openai_program


@pytest.mark.parametrize("as_", FORMATS)
def test_the_code_block_shows_exactly_the_program(session, as_: str) -> None:
    """Rendered as nbconvert renders it: the program is one code block, nothing active, every character kept."""
    from rendering import inspect, render_mistune

    program, markdown = shown_program(session["cell"][f"predict {as_}"])
    assert markdown.startswith("**Dry run: nothing was sent.**")
    (rendered,) = render_mistune([markdown])
    assert not inspect(rendered).problems(), rendered
    blocks = re.findall(r"<pre><code[^>]*>(.*?)</code></pre>", rendered, re.DOTALL)
    assert [html.unescape(b) for b in blocks] == [program]


def test_dry_runs_sent_nothing(session, backend) -> None:
    before, after = session["stats"]

    def requests(stats: dict, deployment: dict) -> int:
        return stats["deployments"].get(deployment["id"], {}).get("predict_requests", 0)

    # Only the two reference cells sent a request; every --as cell was a dry run.
    assert requests(after, backend.deployment) - requests(before, backend.deployment) == 1
    assert requests(after, backend.chat_deployment) - requests(before, backend.chat_deployment) == 1


def test_a_dry_run_chat_turn_is_not_kept(session) -> None:
    # --system was set by the --as cells; none of their turns joined the conversation.
    assert "Conversation: 1 messages" in texts(session["cell"]["count"])


def test_output_variable_gets_the_program(session) -> None:
    program, _ = shown_program(session["cell"]["dry_output"])
    assert texts(session["cell"]["dry_output_check"]).strip() == f"str {len(program)}"


def test_unknown_format_is_a_usage_error(session) -> None:
    shown = texts(session["cell"]["bad_format"])
    assert "UsageError" in shown and "invalid choice: 'curl'" in shown and "Traceback" not in shown
    assert "--as FORMAT" in texts(session["cell"]["help"])


def test_no_secret_in_any_program(session, backend) -> None:
    keys = Path(backend.config_file).parent.glob("*.pem")
    pem_lines = [line for path in keys for line in path.read_text().splitlines()[1:3]]
    assert pem_lines
    for as_ in FORMATS:
        program, markdown = shown_program(session["cell"][f"predict {as_}"])
        assert backend.config_file in program  # named, as the platform's examples name ~/.oci/config
        for secret in ("PRIVATE KEY", "keyId", "authorization", *pem_lines):
            assert secret not in program and secret not in markdown, (as_, secret)
