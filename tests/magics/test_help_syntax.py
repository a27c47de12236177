"""A line magic's prompt ending in ``?`` is sent, in terminal-style IPython and in a real kernel."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell
from kernel_helpers import failed, llm_outputs, texts

from odsc_magics.magics.help_syntax import keep_prompts_ending_in_question_marks


@pytest.fixture
def ip(backend, monkeypatch: pytest.MonkeyPatch) -> InteractiveShell:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "odsc_magics")
    monkeypatch.setenv("ODSC_MAGICS_BACKEND", "local")
    monkeypatch.setenv("ODSC_MAGICS_LOCAL_DIR", str(backend.state_dir))
    return shell


@pytest.mark.parametrize(
    ("cell", "code"),
    [
        ("%llm_chat What does it eat?", "get_ipython().run_line_magic('llm_chat', 'What does it eat?')\n"),
        (
            "%llm_predict -d x --max-tokens 5 What is x??",
            "get_ipython().run_line_magic('llm_predict', '-d x --max-tokens 5 What is x??')\n",
        ),
        (
            "for i in range(2):\n    %llm_predict What is {{ i }}?\n",
            "for i in range(2):\n    get_ipython().run_line_magic('llm_predict', 'What is {{ i }}?')\n",
        ),
    ],
)
def test_a_prompt_line_ending_in_a_question_mark_runs_the_magic(ip: InteractiveShell, cell: str, code: str) -> None:
    assert ip.transform_cell(cell) == code


@pytest.mark.parametrize(
    ("cell", "code"),
    [
        ("%llm_predict?", "get_ipython().run_line_magic('pinfo', '%llm_predict')\n"),  # help on the magic itself
        ("len?", "get_ipython().run_line_magic('pinfo', 'len')\n"),  # other help requests are IPython's
        (
            "%%llm_chat\n%llm_chat is a magic?",
            "get_ipython().run_cell_magic('llm_chat', '', '%llm_chat is a magic?\\n')\n",
        ),
        ('s = """\n%llm_chat in a string?\n"""', 's = """\n%llm_chat in a string?\n"""\n'),
    ],
)
def test_everything_else_is_left_to_ipython(ip: InteractiveShell, cell: str, code: str) -> None:
    assert ip.transform_cell(cell) == code


def test_terminal_ipython_sends_the_question(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    chat = ip.magics_manager.magics["line"]["llm_chat"].__self__
    chat.conversation.clear()
    result = ip.run_cell("%llm_chat -d test-chat --max-tokens 3 What does it eat?")
    assert result.success, result.error_in_exec
    assert chat.conversation[-2] == {"role": "user", "content": "What does it eat?"}
    assert ip.user_ns["_llm_last"].text == chat.conversation[-1]["content"]
    dry = ip.run_cell("%llm_predict -d test-llm --dry-run What is x?")
    assert dry.success, dry.error_in_exec
    out = capsys.readouterr().out
    assert "not found" not in out
    assert "What is x?" in out and "nothing was sent" in out
    chat.conversation.clear()


def test_unload_removes_the_transformer(ip: InteractiveShell) -> None:
    assert ip.input_transformers_cleanup.count(keep_prompts_ending_in_question_marks) == 1
    ip.run_line_magic("unload_ext", "odsc_magics")
    assert keep_prompts_ending_in_question_marks not in ip.input_transformers_cleanup
    assert ip.transform_cell("%llm_chat What does it eat?") == "get_ipython().run_line_magic('pinfo', 'eat')\n"
    ip.run_line_magic("load_ext", "odsc_magics")
    assert ip.input_transformers_cleanup.count(keep_prompts_ending_in_question_marks) == 1


@pytest.mark.slow
def test_a_notebook_sends_the_question(backend, run_cells) -> None:
    nb, _ = run_cells(
        backend,
        [
            "%load_ext odsc_magics",
            "%llm_predict -d test-llm --max-tokens 3 -o said What is x?",
            "%llm_chat -d test-chat --max-tokens 3 What does it eat?",
            "%llm_chat --history",
            "%llm_predict -d test-llm --dry-run What is x?",
        ],
    )
    for cell in nb.cells[1:]:
        assert not failed(cell), texts(cell)
        assert "not found" not in texts(cell)
    (answer,) = llm_outputs(nb.cells[1])
    assert answer.metadata["odsc_magics"]["usage"]["completion_tokens"] > 0
    (answer,) = llm_outputs(nb.cells[2])
    assert answer.metadata["odsc_magics"]["route"] == "/v1/chat/completions"
    assert "What does it eat?" in texts(nb.cells[3])
    assert '"prompt": "What is x?"' in texts(nb.cells[4])
