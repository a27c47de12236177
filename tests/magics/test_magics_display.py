"""The streaming display's pure parts: throttle, status line, durable bundle, terminal view."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from odsc_magics.display import (
    TerminalStreamView,
    Throttle,
    max_per_window,
    result_bundle,
    status_line,
    table_bundle,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeResult:
    text: str = "Hello"
    finish_reason: str | None = "stop"
    usage: dict = field(default_factory=lambda: {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})
    latency_s: float = 0.5
    ttft_s: float | None = 0.01
    opc_request_id: str | None = "REQ"
    route: str = "/v1/completions"
    deployment: str = "ocid1.datasciencemodeldeployment.oc1..x"
    params: dict = field(default_factory=lambda: {"max_tokens": 8})
    interrupted: bool = False
    attempts: int = 1


def test_throttle_allows_at_most_ten_per_second_at_1000_tokens_per_second() -> None:
    clock = FakeClock()
    throttle = Throttle(clock=clock)
    sent = 0
    for _ in range(3000):  # 3 s of tokens at 1,000 tokens/s
        clock.now += 0.001
        sent += throttle.ready()
    assert 28 <= sent <= 31
    assert throttle.count == sent


def test_throttle_slows_down_for_big_payloads() -> None:
    clock = FakeClock()
    throttle = Throttle(clock=clock, bytes_per_s=100_000)
    sent = 0
    for _ in range(1000):
        clock.now += 0.001
        sent += throttle.ready(payload_bytes=50_000)  # 0.5 s per update at this size
    assert sent <= 3


def test_throttle_force_counts_the_final_flush() -> None:
    throttle = Throttle(clock=FakeClock())
    assert throttle.ready()
    assert not throttle.ready()
    throttle.force()
    assert throttle.count == 2


def test_status_line() -> None:
    assert status_line(0, 0.2, None) == "0 tokens"
    assert status_line(11, 1.1, 0.1) == "11 tokens · 10.0 tok/s · TTFT 100 ms"


def test_result_bundle_is_markdown_text_and_metadata() -> None:
    data, metadata = result_bundle(FakeResult())
    assert data == {"text/markdown": "Hello", "text/plain": "Hello"}
    meta = metadata["odsc_magics"]
    assert set(meta) >= {
        "deployment",
        "route",
        "params",
        "usage",
        "finish_reason",
        "latency_s",
        "ttft_s",
        "opc_request_id",
    }
    assert meta["usage"]["completion_tokens"] == 2 and meta["opc_request_id"] == "REQ"


def test_interrupted_result_is_marked() -> None:
    data, metadata = result_bundle(FakeResult(text="Hel", interrupted=True, usage={}), tokens=4)
    assert data["text/markdown"].startswith("Hel") and "interrupted after 4 tokens" in data["text/markdown"]
    assert "[interrupted after 4 tokens" in data["text/plain"]
    assert metadata["odsc_magics"]["interrupted"] is True


def test_terminal_view_prints_deltas_as_they_arrive() -> None:
    out = io.StringIO()
    view = TerminalStreamView(out)
    view.start()
    for delta in ["Hel", "lo", "!"]:
        view.add(delta)
    assert out.getvalue() == "Hello!"
    view.finish(FakeResult(text="Hello!"))
    assert out.getvalue() == "Hello!\n"


def test_table_bundle_escapes_pipes() -> None:
    bundle = table_bundle("T", ["a", "b"], [("x|y", "z")])
    assert "x\\|y" in bundle["text/markdown"]
    assert bundle["text/plain"].splitlines()[2].startswith("x|y")


def test_max_per_window() -> None:
    assert max_per_window([]) == 0
    assert max_per_window([0.0, 0.1, 0.2, 1.5]) == 3
    assert max_per_window([i * 0.1 for i in range(30)]) == 10


# ------------------------------------------------------------------------ untrusted text in every bundle

IMG = '<img src=x onerror="alert(1)">'


def _assert_inert(markdown: str, *seen: str) -> None:
    """Rendered as JupyterLab and nbconvert render it: nothing active, every ``seen`` text visible."""
    from rendering import inspect, render_both, visible

    for output in render_both([markdown])[0]:
        assert not inspect(output).problems(), output
        for text in seen:
            assert text in visible(output), (text, output)


def test_answer_bundle_shows_html_as_text_and_keeps_the_answers_markdown() -> None:
    from rendering import inspect, render_both

    answer = f"**Sure.** {IMG}\n\n```\n{IMG}\n```\n[x](javascript:alert(1)) ![t](https://e.example/t.png)"
    data, _ = result_bundle(FakeResult(text=answer))
    assert data["text/plain"] == answer
    _assert_inert(data["text/markdown"], f"Sure. {IMG}", IMG)
    assert "strong" in inspect(render_both([data["text/markdown"]])[0][0]).elements


def test_interrupted_answer_bundle_is_escaped_and_the_mark_stays_outside_an_open_fence() -> None:
    data, _ = result_bundle(FakeResult(text=f"{IMG}\n```\n{IMG}", interrupted=True, usage={}), tokens=3)
    _assert_inert(data["text/markdown"], IMG, "interrupted after 3 tokens")
    assert data["text/markdown"].endswith("\n```\n\n*(interrupted after 3 tokens: partial answer)*")


def test_table_bundle_title_header_and_cells_are_text() -> None:
    bundle = table_bundle(f"Conversation {IMG}", ["#", f"role {IMG}"], [(1, f"user\n{IMG} | `x` **b**")])
    _assert_inert(bundle["text/markdown"], f"Conversation {IMG}", f"role {IMG}", f"user {IMG} | `x` **b**")
    assert bundle["text/markdown"].count("\n|") == 3  # header, rule and one row: the cell did not break the table


def test_dry_run_bundle_prompt_cannot_break_out_of_its_code_block() -> None:
    from odsc_magics.display import dry_run_bundle

    prompt = f"Summarise:\n````\n{IMG}\n````"
    request = {"url": f"http://x/{IMG}", "route": "/v1/completions", "headers": {}, "body": {"prompt": prompt}}
    bundle = dry_run_bundle(prompt, request)
    _assert_inert(bundle["text/markdown"], prompt, f"POST http://x/{IMG}")


def test_live_view_html_is_escaped() -> None:
    from rendering import inspect

    from odsc_magics.display import KernelStreamView

    view = KernelStreamView(label=f"dep {IMG}")
    view.parts = [IMG, "<script>x</script>"]
    found = inspect(view._html("1 token"))
    assert set(found.elements) == {"div", "pre"}
    assert f"dep {IMG}" in found.text and f"{IMG}<script>x</script>" in found.text


def test_deploy_tables_and_notes_are_text_in_markdown_and_html() -> None:
    from types import SimpleNamespace

    from rendering import inspect

    from odsc_magics.magics.deploy import Table, deployment_bundle

    name = f"evil`{IMG}"
    deployment = SimpleNamespace(
        name=name, id="ocid1.x", state="FAILED", url=f"http://x/{IMG}", shape="VM", model_name=IMG,
        time_created=None, lifecycle_details=f"failed: {IMG}",
    )  # fmt: skip
    bundle = deployment_bundle(deployment, note=f"`%llm_deploy activate *x* {IMG}` starts it again.")
    _assert_inert(bundle["text/markdown"], f"Model deployment {name}", f"failed: {IMG}", f"activate *x* {IMG}")
    html_found = inspect(bundle["text/html"])
    assert set(html_found.elements) <= {"b", "table", "thead", "tbody", "tr", "th", "td", "p"}
    assert f"failed: {IMG}" in html_found.text
    listing = Table("Model deployments: 1", ["name"], [(f"* {name}",)], "* the default target")._repr_mimebundle_()
    _assert_inert(listing["text/markdown"], f"* {name}", "* the default target")


def test_log_bundle_lines_cannot_break_out_of_the_code_block() -> None:
    from odsc_magics.magics.deploy import _log_bundle

    records = [
        {"time": "t1", "kind": "predict", "message": f"```\n{IMG}"},
        {"time": "t2", "kind": "access", "message": f"````` {IMG} `````"},
    ]
    bundle = _log_bundle(f"dep {IMG}", records)
    _assert_inert(bundle["text/markdown"], f"Logs of dep {IMG}", IMG, f"````` {IMG} `````")


def test_deployment_repr_markdown_is_text() -> None:
    from types import SimpleNamespace

    from odsc_magics.control_plane import Deployment

    raw = SimpleNamespace(
        id="ocid1.x", display_name=f"d {IMG}", lifecycle_state="FAILED", model_deployment_url="http://x",
        freeform_tags={"aqua_model_name": f"m|{IMG}"}, lifecycle_details=f"reason {IMG}",
        model_deployment_configuration_details=None, time_created=None,
    )  # fmt: skip
    markdown = Deployment(raw, context=None)._repr_markdown_()
    _assert_inert(markdown, f"Model deployment d {IMG}", f"m|{IMG}", f"reason {IMG}")
