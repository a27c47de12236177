"""Magic-line parsing, help and the UsageError boundary, in a plain IPython shell (nothing is sent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from odsc_magics.errors import NotFoundError, OdscMagicsError
from odsc_magics.magics._base import generation_params, parse_magic_line, split_options, usage_errors


@pytest.fixture(scope="module")
def ip() -> InteractiveShell:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "odsc_magics")
    return shell


def magic(ip: InteractiveShell, name: str):
    return ip.magics_manager.magics["line"][name]


def test_magics_are_registered_and_configurable(ip: InteractiveShell) -> None:
    line, cell = ip.magics_manager.magics["line"], ip.magics_manager.magics["cell"]
    assert {"llm_predict", "llm_chat", "llm_deploy", "llm_config"} <= set(line)
    assert {"llm_predict", "llm_chat"} <= set(cell)
    instance = magic(ip, "llm_predict").__self__
    assert instance in ip.configurables
    ip.run_line_magic("config", "LLMMagics.max_tokens = 77")
    assert instance.max_tokens == 77
    ip.run_line_magic("config", "LLMMagics.max_tokens = None")


@pytest.mark.parametrize(
    ("line", "argv", "rest"),
    [
        ("-d foo What's up {x}?", ["-d", "foo"], "What's up {x}?"),
        ('--max-tokens=5 {"a": 1, "b": [2]}', ["--max-tokens=5"], '{"a": 1, "b": [2]}'),
        ("--temperature -0.5 --stop '###' --stop END -- -starts with a dash", None, "-starts with a dash"),
        ('--system "be brief" hi  there', ["--system", "be brief"], "hi  there"),
        ("--no-stream", ["--no-stream"], ""),
        ("", [], ""),
        ("just a prompt with $money and {braces}", [], "just a prompt with $money and {braces}"),
    ],
)
def test_split_options_keeps_free_text_verbatim(ip: InteractiveShell, line: str, argv, rest: str) -> None:
    got_argv, got_rest = split_options(line, magic(ip, "llm_predict").parser)
    if argv is not None:
        assert got_argv == argv
    assert got_rest == rest


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--max-tokens abc hi", "invalid int value: 'abc'"),
        ("--temperature", "expected one argument"),
        ("--bogus hi", "unrecognized arguments: --bogus"),
        ("--system 'unbalanced hi", "unbalanced quote"),
    ],
)
def test_bad_options_raise_usage_with_the_usage_line(ip: InteractiveShell, line: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_magic_line(magic(ip, "llm_predict"), line, free_text=True)
    assert message in str(info.value)
    assert "Usage: %llm_predict" in str(info.value)


def test_cell_magic_line_takes_no_free_text(ip: InteractiveShell) -> None:
    with pytest.raises(UsageError, match="unexpected text after the options"):
        parse_magic_line(magic(ip, "llm_predict"), "-d x stray words", free_text=False)


def test_generation_params_only_the_given_ones(ip: InteractiveShell) -> None:
    args, _ = parse_magic_line(magic(ip, "llm_predict"), "--max-tokens 9 --top-p 0.5 --stop A --stop B", free_text=True)
    assert generation_params(args) == {"max_tokens": 9, "top_p": 0.5, "stop": ["A", "B"]}
    extra, _ = parse_magic_line(
        magic(ip, "llm_predict"), "--param seed=7 --param ignore_eos=true --param tag=x", free_text=True
    )
    assert generation_params(extra) == {"seed": 7, "ignore_eos": True, "tag": "x"}
    bad, _ = parse_magic_line(magic(ip, "llm_predict"), "--temperature 7", free_text=True)
    with pytest.raises(UsageError, match="temperature"):
        generation_params(bad)


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        ("max_tokens=abc", "--param max_tokens=abc: max_tokens needs an integer (e.g. --param max_tokens=256)"),
        ("max_tokens=1.5", "max_tokens needs an integer"),
        ("max_tokens=true", "max_tokens needs an integer"),
        ("temperature=null", "--param temperature=null: temperature needs a number (e.g. --param temperature=0.7)"),
        ("top_p=high", "top_p needs a number"),
    ],
)
def test_param_of_the_wrong_type_is_a_usage_error(ip: InteractiveShell, param: str, expected: str) -> None:
    for magic_name in ("llm_predict", "llm_chat"):
        result = ip.run_cell(f"%{magic_name} --param {param} hi")
        assert isinstance(result.error_in_exec, UsageError), repr(result.error_in_exec)
        assert expected in str(result.error_in_exec)


def test_param_values_of_the_right_type_pass(ip: InteractiveShell) -> None:
    args, _ = parse_magic_line(
        magic(ip, "llm_predict"), "--param max_tokens=5 --param temperature=1 --param top_p=0.5", free_text=True
    )
    assert generation_params(args) == {"max_tokens": 5, "temperature": 1, "top_p": 0.5}


def test_help_shows_every_option(ip: InteractiveShell) -> None:
    doc = magic(ip, "llm_predict").__doc__
    for option in (
        "--deployment",
        "--chat",
        "--system",
        "--max-tokens",
        "--temperature",
        "--top-p",
        "--stop",
        "--no-stream",
        "--output",
        "--dry-run",
    ):
        assert option in doc
    assert "--reset" in magic(ip, "llm_chat").__doc__
    assert "--history" in magic(ip, "llm_chat").__doc__


def test_magic_lines_are_not_var_expanded(ip: InteractiveShell) -> None:
    for name in ("llm_predict", "llm_chat", "llm_deploy"):
        assert getattr(magic(ip, name), "_ipython_magic_no_var_expand", False), name


def test_usage_errors_turns_our_errors_into_a_bare_usage_error() -> None:
    @usage_errors
    def failing() -> None:
        raise NotFoundError("No deployment named 'x'.", hint="Run `%llm_deploy list`.", opc_request_id="R1")

    with pytest.raises(UsageError) as info:
        failing()
    assert str(info.value) == "No deployment named 'x'. (opc-request-id R1)\nRun `%llm_deploy list`."
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert not isinstance(info.value, OdscMagicsError)


def test_usage_errors_keeps_bugs_as_they_are() -> None:
    @usage_errors
    def buggy() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        buggy()


def test_a_failing_magic_fails_the_cell(ip: InteractiveShell) -> None:
    result = ip.run_cell("%llm_predict --max-tokens nope hi")
    assert not result.success
    assert isinstance(result.error_in_exec, UsageError)


def test_bad_output_variable_is_refused_before_sending(ip: InteractiveShell) -> None:
    result = ip.run_cell("%llm_predict -o 1abc hello")
    assert isinstance(result.error_in_exec, UsageError)
    assert "-o/--output" in str(result.error_in_exec)


def test_deploy_needs_model_and_shape(ip: InteractiveShell) -> None:
    result = ip.run_cell("%llm_deploy create --name x")
    assert "needs --model and --shape" in str(result.error_in_exec)
    result = ip.run_cell("%llm_deploy destroy")
    assert "invalid choice" in str(result.error_in_exec)


def test_public_api_is_lazy_and_deploy_stays_a_function() -> None:
    import importlib

    import odsc_magics

    importlib.import_module("odsc_magics.control_plane")  # importing the module keeps deploy a function
    assert callable(odsc_magics.deploy)
    assert odsc_magics.deploy.__module__ == "odsc_magics.control_plane"
    assert {"connect", "deploy", "deployments", "get_deployment", "Endpoint", "Deployment", "Result"} <= set(
        dir(odsc_magics)
    )
    with pytest.raises(AttributeError):
        odsc_magics.nope  # noqa: B018


def test_load_ext_imports_neither_oci_nor_pandas() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from IPython.core.interactiveshell import InteractiveShell; "
        "InteractiveShell.instance().run_line_magic('load_ext', 'odsc_magics'); "
        "print(sorted(m for m in ('oci', 'pandas', 'requests', 'ipywidgets', 'jinja2') if m in sys.modules))"
    )
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=root)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert done.stdout.strip() == "[]"


def test_unload_and_reload(ip: InteractiveShell) -> None:
    ip.run_line_magic("unload_ext", "odsc_magics")
    assert "llm_predict" not in ip.magics_manager.magics["cell"]
    assert not any(type(c).__name__ == "LLMMagics" for c in ip.configurables)
    ip.run_line_magic("load_ext", "odsc_magics")
    assert "llm_predict" in ip.magics_manager.magics["cell"]
    from odsc_magics.config import current_settings

    assert current_settings() is magic(ip, "llm_predict").__self__


def test_terminal_ipython_prints_the_stream(
    ip: InteractiveShell, backend, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ODSC_MAGICS_BACKEND", "local")
    monkeypatch.setenv("ODSC_MAGICS_LOCAL_DIR", str(backend.state_dir))
    result = ip.run_cell("%%llm_predict -d test-llm --max-tokens 12 -o said\nSay something.")
    assert result.success, result.error_in_exec
    out = capsys.readouterr().out
    assert ip.user_ns["said"] and ip.user_ns["said"] in out
    assert ip.user_ns["_llm_last"].usage["completion_tokens"] > 0


def test_terminal_interrupt_keeps_the_partial_and_ends_with_one_line(
    ip: InteractiveShell, backend, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from odsc_magics.magics import _run

    monkeypatch.setenv("ODSC_MAGICS_BACKEND", "local")
    monkeypatch.setenv("ODSC_MAGICS_LOCAL_DIR", str(backend.state_dir))
    make_view = _run.make_stream_view

    def view_interrupted_at_the_third_token(shell, **kwargs):
        view = make_view(shell, **kwargs)
        add = view.add

        def add_then_ctrl_c(delta: str) -> None:
            add(delta)
            if view.tokens == 3:
                raise KeyboardInterrupt  # what Ctrl-C raises while the answer streams

        view.add = add_then_ctrl_c
        return view

    monkeypatch.setattr(_run, "make_stream_view", view_interrupted_at_the_third_token)
    result = ip.run_cell("%%llm_predict -d test-llm --max-tokens 40 -o part\nTell me a story.")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    assert "[interrupted after 3 tokens: partial answer]" in shown
    assert "KeyboardInterrupt: Stopped after 3 tokens; the partial answer is kept above and in `part`" in shown
    assert "Traceback" not in shown and "File " not in shown
    assert ip.user_ns["_llm_last"].interrupted and ip.user_ns["part"] == ip.user_ns["_llm_last"].text


def test_follow_ends_the_cell_as_interrupted_and_keeps_a_bounded_window(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import weakref

    from odsc_magics.magics import deploy as deploy_magics

    class Record(dict):
        """A log record the test can tell is still held (a weak reference to it stays alive)."""

    held_at_interrupt: list[int] = []

    class Followed:
        name = "followed"

        def follow_logs(self, *, tail: int, kind: str):
            shown = []
            for n in range(50):
                record = Record(time=f"t{n:02d}", kind="access", message=f"line {n}")
                shown.append(weakref.ref(record))
                yield record
            del record
            held_at_interrupt.append(sum(ref() is not None for ref in shown))
            raise KeyboardInterrupt  # the user stops following

    monkeypatch.setattr(deploy_magics, "FOLLOW_WINDOW", 5, raising=False)
    monkeypatch.setattr(deploy_magics.DeployMagics, "_get", lambda self, target: Followed())
    result = ip.run_cell("%llm_deploy logs followed --follow\nprint('not reached')")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert held_at_interrupt == [5]
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    assert "not reached" not in shown
    assert shown.rstrip().endswith("KeyboardInterrupt: Stopped following the logs of followed.")
    final = shown[shown.rindex("Logs of followed") :]
    assert final.startswith("Logs of followed: 5 records, newest last\n") and "(following" not in final
    assert "line 45" in final and "line 49" in final and "line 44" not in final


@pytest.fixture
def local_env(backend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODSC_MAGICS_BACKEND", "local")
    monkeypatch.setenv("ODSC_MAGICS_LOCAL_DIR", str(backend.state_dir))


def test_the_deploy_form_in_a_terminal_says_how_to_deploy(ip: InteractiveShell, local_env) -> None:
    result = ip.run_cell("%llm_deploy")
    assert isinstance(result.error_in_exec, UsageError), result.result
    message = str(result.error_in_exec)
    assert message.startswith("The deploy form needs a notebook front end")
    assert "From a terminal: `%llm_deploy create --model MODEL --shape SHAPE`" in message


def test_an_output_variable_hiding_a_builtin_or_a_module_warns_and_is_still_stored(
    ip: InteractiveShell, local_env, capsys: pytest.CaptureFixture[str]
) -> None:
    import builtins

    capsys.readouterr()
    result = ip.run_cell("%llm_predict -d test-llm --dry-run -o print hi")
    assert result.success, result.error_in_exec
    assert capsys.readouterr().err == "Warning: -o print hides the builtin print; `del print` brings it back.\n"
    assert ip.user_ns.pop("print") is not builtins.print
    ip.run_cell("import json")
    result = ip.run_cell("%%llm_predict -d test-llm --max-tokens 2 --no-stream -o json\nhi")
    assert result.success, result.error_in_exec
    assert capsys.readouterr().err == "Warning: -o json replaces the module json.\n"
    assert isinstance(ip.user_ns.pop("json"), str)
    for _ in range(2):  # an earlier answer is replaced without a word
        result = ip.run_cell("%%llm_predict -d test-llm --max-tokens 2 --no-stream -o answer\nhi")
        assert result.success, result.error_in_exec
    assert capsys.readouterr().err == ""
