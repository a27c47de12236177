"""The magics in real kernels (nbclient) against the local backend: streaming, chat, templating, errors."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from kernel_helpers import failed, llm_outputs, texts
from nbclient.exceptions import CellExecutionError

from odsc_magics.display import max_per_window

pytestmark = pytest.mark.slow

SETUP = "%load_ext odsc_magics"
METADATA_KEYS = {
    "deployment",
    "route",
    "params",
    "usage",
    "finish_reason",
    "latency_s",
    "ttft_s",
    "opc_request_id",
}


@pytest.fixture(scope="module")
def session(backend, tmp_path_factory):
    """One kernel running the everyday cells; the tests below read its outputs."""
    import nbformat
    from kernel_helpers import RecordingClient, kernel_env

    cells = {
        "setup": SETUP,
        "stream": "%%llm_predict -d test-llm --max-tokens 20\nSay hello.",
        "no_stream": "%%llm_predict -d test-llm --no-stream --max-tokens 8\nSay hello.",
        "predict_chat": "%%llm_predict -d test-chat --system 'Be brief.' --max-tokens 5\nHi",
        "vars": 'topic = "tides"\nx = {"k": 1}',
        "dry_run": "%%llm_predict -d test-llm --dry-run --max-tokens 7\n"
        'About {{ topic }}: {"json": {"a": 1}} {single} $x',
        "dry_line": '%llm_predict -d test-llm --dry-run What\'s {"a": 1} $HOME {x} {{ topic | upper }}',
        "refused": "%%llm_predict -d test-llm\n{{ x.__class__ }}",
        "undefined": "%%llm_predict -d test-llm\nTell me about {{ not_defined_anywhere }}",
        "output": "%%llm_predict -d test-llm -o kept --max-tokens 6\nHi",
        "output_check": "print(repr(kept)); print(_llm_last.text == kept, type(_llm_last).__name__)",
        "chat1": '%%llm_chat -d test-chat --max-tokens 5 --system "Be brief."\nHello {{ topic }}',
        "chat2": "%%llm_chat -d test-chat --max-tokens 5\nAnd again",
        "history": "%llm_chat --history",
        "reset": "%llm_chat --reset",
        "history_empty": "%llm_chat --history",
        "not_found": "%%llm_predict -d no-such-deployment\nhi",
        "bad_value": "%llm_predict --temperature hot hi",
        "help": "print(get_ipython().find_line_magic('llm_predict').__doc__)",  # what `%llm_predict?` shows
        "config": "%llm_config",
    }
    names = list(cells)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells.values()])
    home = tmp_path_factory.mktemp("home")
    before = backend.stats()
    client = RecordingClient(nb, kernel_name="python3", timeout=120, allow_errors=True)
    client.execute(env=kernel_env(backend, home))
    return {
        "cell": {name: nb.cells[i] for i, name in enumerate(names)},
        "index": {name: i for i, name in enumerate(names)},
        "client": client,
        "nb": nb,
        "stats": (before, backend.stats()),
    }


def test_streaming_ends_as_one_durable_markdown_output(session) -> None:
    cell = session["cell"]["stream"]
    assert not failed(cell), texts(cell)
    (answer,) = llm_outputs(cell)
    assert answer.output_type == "display_data"
    assert set(answer.data) == {"text/markdown", "text/plain"}
    assert answer.data["text/plain"].strip()
    meta = answer.metadata["odsc_magics"]
    assert set(meta) >= METADATA_KEYS
    assert meta["route"] == "/v1/completions"
    assert meta["deployment"].startswith("ocid1.datasciencemodeldeployment")
    assert meta["params"]["max_tokens"] == 20
    assert meta["usage"]["completion_tokens"] > 0
    assert meta["opc_request_id"] and meta["finish_reason"]
    assert meta["ttft_s"] is not None and meta["latency_s"] >= meta["ttft_s"]


def test_streaming_used_a_live_widget_whose_state_is_saved(session) -> None:
    client, index = session["client"], session["index"]["stream"]
    updates = client.live_updates(index)
    assert updates, "the live view sent no widget update"
    last = updates[-1]["state"]["value"]
    assert "tokens" in last and "TTFT" in last
    widgets = session["nb"].metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert any(w["model_name"] == "HTMLModel" and "TTFT" in w["state"].get("value", "") for w in widgets.values())


def test_predict_with_a_system_message_uses_the_chat_route(session) -> None:
    (answer,) = llm_outputs(session["cell"]["predict_chat"])
    assert answer.metadata["odsc_magics"]["route"] == "/v1/chat/completions"


def test_no_stream_shows_the_answer_without_a_widget(session) -> None:
    cell = session["cell"]["no_stream"]
    (answer,) = llm_outputs(cell)
    assert answer.metadata["odsc_magics"]["params"]["max_tokens"] == 8
    assert not session["client"].live_updates(session["index"]["no_stream"])
    assert not any(o.get("data", {}).get("application/vnd.jupyter.widget-view+json") for o in cell.outputs)


def test_dry_run_renders_the_template_and_sends_nothing(session) -> None:
    shown = texts(session["cell"]["dry_run"])
    assert 'About tides: {"json": {"a": 1}} {single} $x' in shown
    assert "nothing was sent" in shown
    assert '"max_tokens": 7' in shown and "/predictWithResponseStream" in shown
    assert "authorization" not in shown.lower()
    line = texts(session["cell"]["dry_line"])
    assert 'What\'s {"a": 1} $HOME {x} TIDES' in line  # IPython's own {x}/$x expansion left it alone


def test_only_the_sending_cells_reached_the_deployment(session, backend) -> None:
    before, after = session["stats"]
    deployment_id = backend.deployment["id"]

    def requests(stats: dict) -> int:
        return stats["deployments"].get(deployment_id, {}).get("predict_requests", 0)

    # stream, no_stream and output sent one request each; dry runs and refused templates sent nothing.
    assert requests(after) - requests(before) == 3


def test_template_refuses_internals_and_names_undefined(session) -> None:
    refused = texts(session["cell"]["refused"])
    assert "UsageError: refused" in refused and "__class__" in refused
    undefined = texts(session["cell"]["undefined"])
    assert "UsageError: undefined name 'not_defined_anywhere'" in undefined
    for name in ("refused", "undefined"):
        assert "Traceback" not in texts(session["cell"][name])
        assert not llm_outputs(session["cell"][name])


def test_output_variable_keeps_the_text(session) -> None:
    printed = texts(session["cell"]["output_check"]).splitlines()
    assert printed[0].startswith("'") and len(printed[0]) > 2
    assert printed[1] == "True Result"


def test_chat_keeps_the_conversation_across_cells(session) -> None:
    for name in ("chat1", "chat2"):
        (answer,) = llm_outputs(session["cell"][name])
        assert answer.metadata["odsc_magics"]["route"] == "/v1/chat/completions"
    history = texts(session["cell"]["history"])
    assert "5 messages" in history
    assert "Be brief." in history and "Hello tides" in history and "And again" in history
    assert "Conversation reset." in texts(session["cell"]["reset"])
    assert "empty" in texts(session["cell"]["history_empty"])


def test_unknown_deployment_gets_the_hint(session) -> None:
    shown = texts(session["cell"]["not_found"])
    assert "UsageError: No model deployment named 'no-such-deployment'" in shown
    assert "%llm_deploy" in shown or "deployments()" in shown
    assert "Traceback" not in shown


def test_bad_option_value_gets_the_usage(session) -> None:
    shown = texts(session["cell"]["bad_value"])
    assert "invalid float value: 'hot'" in shown and "Usage: %llm_predict" in shown


def test_help_and_config(session) -> None:
    assert "--dry-run" in texts(session["cell"]["help"])
    config = texts(session["cell"]["config"])
    assert "backend" in config and "local" in config and "env ODSC_MAGICS_BACKEND" in config
    assert "PRIVATE KEY" not in config


def test_no_secret_in_any_output(session) -> None:
    everything = "\n".join(texts(c) for c in session["nb"].cells)
    for secret_marker in ("PRIVATE KEY", "Signature version", "keyId=", "authorization:"):
        assert secret_marker not in everything


def test_a_failing_cell_stops_run_all(backend, run_cells) -> None:
    with pytest.raises(CellExecutionError) as info:
        run_cells(
            backend,
            [SETUP, "%%llm_predict -d no-such-deployment\nhi", "print('not reached')"],
            allow_errors=False,
        )
    assert "UsageError" in str(info.value)


def test_widget_updates_are_coalesced_and_interrupt_keeps_the_partial(backend_factory, run_cells) -> None:
    fast = backend_factory("--tokens-per-s", "1000")
    fast.create_deployment("rate")
    interrupt_cell = 3

    def on_comm(client, msg, cell_index):
        # The first live update of that cell means tokens are arriving: press "stop" then.
        state = (msg["content"].get("data") or {}).get("state") or {}
        first = not getattr(client, "interrupted", False)
        if first and cell_index == interrupt_cell and msg["msg_type"] == "comm_msg" and "value" in state:
            client.interrupted = True
            client.interrupt_soon()

    nb, client = run_cells(
        fast,
        [
            SETUP,
            "%%llm_predict -d rate --max-tokens 1500 --param ignore_eos=true\nWrite an essay about the sea.",
            "print(_llm_last.usage['completion_tokens'], _llm_last.latency_s)",
            "%%llm_predict -d rate --max-tokens 3500 -o partial\nWrite a very long essay about the sea.",
            "print(_llm_last.interrupted, len(partial) > 0, partial == _llm_last.text)",
        ],
        on_comm=on_comm,
    )
    # 1,500 tokens at 1,000 tokens/s: the live view updated all along, but at most ~10 times in any second.
    assert texts(nb.cells[2]).split()[0] == "1500"
    updates = client.live_updates(1)
    times = [datetime.fromisoformat(str(u["date"]).replace("Z", "+00:00")).timestamp() for u in updates]
    assert len(updates) >= 5
    assert max_per_window(times, 1.0) <= 12, len(updates)

    # Interrupted mid-stream: the partial answer is the durable output, marked, and kept in `partial`.
    cell = nb.cells[interrupt_cell]
    (error,) = [o for o in cell.outputs if o.output_type == "error"]
    # One line, no frames of the HTTP read it was stopped in; still an interrupt, so Run All stops.
    (line,) = error.traceback
    assert re.fullmatch(
        r"KeyboardInterrupt: Stopped after \d+ tokens; the partial answer is kept above and in `partial` and "
        r"`_llm_last`\.",
        line,
    ), line
    assert error.ename == "Interrupted"
    (answer,) = llm_outputs(cell)
    assert "interrupted" in answer.data["text/markdown"]
    assert answer.metadata["odsc_magics"]["interrupted"] is True
    assert texts(nb.cells[4]).split() == ["True", "True", "True"]
