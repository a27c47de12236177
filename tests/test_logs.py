"""Deployment logs: Logging Search records, newest last; following; the local backend's log group."""

from __future__ import annotations

import datetime as dt
import importlib
import itertools

import pytest

from odsc_magics.config import LLMSettings
from odsc_magics.errors import NotFoundError, ValidationError
from odsc_magics.logs import (
    FOLLOW_MEMORY,
    MAX_LIMIT,
    _as_datetime,
    _record,
    follow_logs,
    list_log_groups,
    list_logs,
    resolve_log_ids,
)

api = importlib.import_module("odsc_magics.control_plane")


def _result(ms: int, message: str, kind: str = "predict", ident: str | None = None) -> dict:
    return {
        "data": {
            "datetime": ms,
            "logContent": {
                "id": ident or f"id-{ms}",
                "time": "ignored",
                "source": "ocid1.datasciencemodeldeployment.oc1..x",
                "type": f"com.oraclecloud.datascience.modeldeployment.{kind}",
                "data": {"message": message},
            },
        }
    }


def test_a_search_result_becomes_a_record() -> None:
    record = _record(_result(1_700_000_000_123, "POST /predict 1.1", "access"), "predict")
    assert record["time"] == "2023-11-14T22:13:20.123Z"
    assert record["kind"] == "access"  # the record's type wins over the log it came from
    assert record["message"] == "POST /predict 1.1"
    assert _record({"data": {"logContent": {}}}, "access") is None


def test_since_accepts_times_and_durations() -> None:
    assert _as_datetime("2025-01-31T12:00:00Z") == dt.datetime(2025, 1, 31, 12, tzinfo=dt.timezone.utc)
    ago = _as_datetime(dt.timedelta(minutes=5))
    assert dt.datetime.now(dt.timezone.utc) - ago >= dt.timedelta(minutes=5)
    with pytest.raises(ValidationError, match="is not a time"):
        _as_datetime("yesterday")


def test_follow_yields_new_records_once() -> None:
    batches = [
        [{"id": "a", "time": "t1", "kind": "access", "message": "one"}],
        [
            {"id": "a", "time": "t1", "kind": "access", "message": "one"},
            {"id": "b", "time": "t2", "kind": "predict", "message": "two"},
        ],
        [{"id": "c", "time": "t3", "kind": "predict", "message": "three"}],
    ]
    calls = []

    def fetch(tail: int, since):
        calls.append((tail, since))
        return batches[len(calls) - 1] if len(calls) <= len(batches) else []

    sleeps = []
    stream = follow_logs(fetch, tail=5, interval=2.0, sleep=sleeps.append)
    assert [next(stream)["message"] for _ in range(3)] == ["one", "two", "three"]
    assert calls[0] == (5, None) and calls[1][1] == "t1" and calls[2][1] == "t2"
    assert sleeps == [2.0, 2.0]


def test_follow_remembers_a_bounded_number_of_record_ids() -> None:
    fetches = 6

    def fetch(tail: int, since) -> list[dict]:
        first = len(calls) * MAX_LIMIT
        calls.append(since)
        if len(calls) > fetches:
            return []
        numbers = range(first, first + MAX_LIMIT)
        return [{"id": f"r{n}", "time": f"t{n:06d}", "kind": "access", "message": "m"} for n in numbers]

    calls: list = []
    stream = follow_logs(fetch, tail=MAX_LIMIT, interval=0, sleep=lambda _s: None)
    shown = list(itertools.islice(stream, fetches * MAX_LIMIT))
    assert len({r["id"] for r in shown}) == fetches * MAX_LIMIT
    assert len(stream.gi_frame.f_locals["seen"]) <= FOLLOW_MEMORY < fetches * MAX_LIMIT


@pytest.fixture
def settings(backend) -> LLMSettings:
    return LLMSettings(backend="local", local_dir=str(backend.state_dir))


@pytest.fixture
def local_logs(settings: LLMSettings) -> dict:
    """The local backend's log group and its access and predict logs."""
    groups = list_log_groups(settings=settings)
    (group,) = [g for g in groups if g["display_name"] == "odsc-magics-local"]
    logs = {entry["display_name"]: entry["id"] for entry in list_logs(group["id"], settings=settings)}
    return {"group": group["id"], "access": logs["access"], "predict": logs["predict"]}


def test_logs_of_a_deployment_newest_last(settings: LLMSettings, local_logs: dict) -> None:
    deployment = api.deploy(
        "Mistral-7B-Instruct-v0.3",
        "VM.GPU.A10.1",
        name="logged",
        log_group_id=local_logs["group"],
        access_log_id=local_logs["access"],
        predict_log_id=local_logs["predict"],
        progress=False,
        settings=settings,
    )
    for _ in range(3):
        deployment.complete("Hello", max_tokens=2)
    records = deployment.logs(tail=100)
    assert {r["kind"] for r in records} == {"access", "predict"}
    times = [r["time"] for r in records]
    assert times == sorted(times)
    assert sum(r["kind"] == "access" for r in records) >= 4  # the smoke test and three predictions
    assert all(set(r) >= {"time", "kind", "message"} for r in records)
    assert len(deployment.logs(tail=2)) == 2
    assert {r["kind"] for r in deployment.logs(kind="predict")} == {"predict"}
    assert list(deployment.follow_logs(tail=3, timeout=0))[-1] == records[-1]


def test_log_ids_from_names_or_ocids(settings: LLMSettings, local_logs: dict) -> None:
    expected = {
        "log_group_id": local_logs["group"],
        "access_log_id": local_logs["access"],
        "predict_log_id": local_logs["predict"],
    }
    assert resolve_log_ids("odsc-magics-local", settings=settings) == expected
    assert (
        resolve_log_ids(local_logs["group"], access_log="access", predict_log=local_logs["predict"], settings=settings)
        == expected
    )
    with pytest.raises(NotFoundError, match=r"No log group named 'nope' .*odsc-magics-local"):
        resolve_log_ids("nope", settings=settings)
    with pytest.raises(NotFoundError, match=r"No log named 'audit' in log group odsc-magics-local .*access"):
        resolve_log_ids("odsc-magics-local", access_log="audit", settings=settings)
