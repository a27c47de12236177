"""The checkpoint keeps finished rows across processes and tells successes from failures."""

from __future__ import annotations

import sqlite3

import pytest

from odsc_magics.batch.checkpoint import Checkpoint, row_key
from odsc_magics.errors import ValidationError


def test_row_key_depends_on_prompt_params_and_deployment():
    base = row_key("hello", {"max_tokens": 5}, "ocid1.x")
    assert base == row_key("hello", {"max_tokens": 5}, "ocid1.x")
    assert base != row_key("hello!", {"max_tokens": 5}, "ocid1.x")
    assert base != row_key("hello", {"max_tokens": 6}, "ocid1.x")
    assert base != row_key("hello", {"max_tokens": 5}, "ocid1.y")


def test_successes_survive_reopening_and_failures_are_not_done(tmp_path):
    path = tmp_path / "run.sqlite"
    first = Checkpoint(path)
    first.record(
        "a",
        {
            "text": "yes",
            "finish_reason": "stop",
            "prompt_tokens": 3,
            "completion_tokens": 1,
            "latency_s": 0.1,
            "attempts": 1,
            "error": None,
        },
    )
    first.record("b", {"text": None, "attempts": 6, "error": "HTTP 500"})
    first.close()
    again = Checkpoint(path)
    done = again.done(["a", "b", "c"])
    assert list(done) == ["a"]
    assert done["a"]["text"] == "yes"
    assert again.count() == (1, 1)
    again.record("b", {"text": "ok", "attempts": 1, "error": None})
    assert set(again.done(["a", "b"])) == {"a", "b"}


def test_a_sqlite_file_of_another_kind_is_refused_and_left_as_it_was(tmp_path):
    path = tmp_path / "other.sqlite"
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE rows (name TEXT)")
    other.execute("INSERT INTO rows VALUES ('kept')")
    other.commit()
    other.close()
    with pytest.raises(ValidationError, match="of another kind") as caught:
        Checkpoint(path)
    assert str(path) in caught.value.message
    again = sqlite3.connect(path)
    assert again.execute("SELECT name FROM rows").fetchall() == [("kept",)]
    again.close()
