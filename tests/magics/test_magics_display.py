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
