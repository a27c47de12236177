"""Server-sent events: the data of whole events, as the WHATWG EventSource parser defines them."""

from __future__ import annotations

import json

from odsc_magics.sse import iter_data


def test_data_lines_of_one_event_join_with_a_newline() -> None:
    # One event whose JSON is split over three data lines, then a one-line event
    stream = b'data: {"choices":\ndata: [{"text": "a"}]\ndata: }\n\ndata: [DONE]\n\n'
    events = list(iter_data([stream[:7], stream[7:30], stream[30:]]))
    assert events == [b'{"choices":\n[{"text": "a"}]\n}', b"[DONE]"]
    assert json.loads(events[0]) == {"choices": [{"text": "a"}]}


def test_one_leading_space_is_removed_and_an_empty_data_line_counts() -> None:
    assert list(iter_data([b"data:  x\ndata\ndata:y\n\n"])) == [b"x\n\ny"]


def test_an_event_without_its_blank_line_is_not_dispatched() -> None:
    assert list(iter_data([b"data: 1\n\ndata: 2\n"])) == [b"1"]


def test_crlf_line_ends_and_other_fields() -> None:
    assert list(iter_data([b"id: 7\r\nevent: x\r\n: comment\r\ndata: a\r\ndata: b\r\n\r\n"])) == [b"a\nb"]
