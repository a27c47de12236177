"""Start-up output, state that survives restarts, and the detached process helpers."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from odsc_magics.local import process
from odsc_magics.local.testing import start_backend

FAST = ("--deploy-seconds", "0.2", "--ttft-ms", "0", "--tokens-per-s", "0")


def test_start_line_and_state_dir(backend):
    start = json.loads((backend.state_dir / "start.json").read_text())
    assert start == backend.info
    assert set(start) >= {
        "endpoint",
        "config_file",
        "profile",
        "compartment_id",
        "project_id",
        "pid",
        "region",
    }
    assert start["endpoint"].startswith("http://127.0.0.1:")
    key = backend.state_dir / "key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"ENCRYPTED" not in key.read_bytes()


def test_state_survives_a_restart(tmp_path):
    first = start_backend(tmp_path, *FAST)
    try:
        deployment = first.create_deployment("persistent")
        config_text = (tmp_path / "config").read_text()
    finally:
        first.stop()
    assert not (tmp_path / "start.json").exists()

    second = start_backend(tmp_path, *FAST)
    try:
        assert (tmp_path / "config").read_text() == config_text
        assert second.compartment_id == first.compartment_id and second.project_id == first.project_id
        client = second.data_science_client()
        got = client.get_model_deployment(deployment["id"]).data
        assert got.lifecycle_state == "ACTIVE"
        assert got.model_deployment_url == f"{second.endpoint}/{deployment['id']}"
        work_requests = client.list_work_requests(
            compartment_id=second.compartment_id, resource_id=deployment["id"]
        ).data
        assert [w.status for w in work_requests] == ["SUCCEEDED"]
        response = second.session().post(got.model_deployment_url + "/predict", json={"prompt": "hi"})
        assert response.status_code == 200
    finally:
        second.stop()


def test_transition_due_while_stopped_completes_after_restart(tmp_path):
    first = start_backend(tmp_path, "--deploy-seconds", "3")
    try:
        created = first.create_deployment("slow", wait=False)
        assert first.data_science_client().get_model_deployment(created["id"]).data.lifecycle_state == "CREATING"
    finally:
        first.stop()
    second = start_backend(tmp_path, "--deploy-seconds", "3")
    try:
        client = second.data_science_client()
        work_requests = client.list_work_requests(compartment_id=second.compartment_id, resource_id=created["id"])
        second.wait_work_request(work_requests.data[0].id)
        assert client.get_model_deployment(created["id"]).data.lifecycle_state == "ACTIVE"
    finally:
        second.stop()


def test_second_backend_on_the_same_state_dir_refuses(tmp_path):
    first = start_backend(tmp_path, *FAST)
    try:
        with pytest.raises(RuntimeError, match="already running"):
            start_backend(tmp_path, *FAST, timeout=20)
    finally:
        first.stop()


def test_ensure_running_reuses_and_stop(tmp_path, monkeypatch):
    monkeypatch.setenv("ODSC_MAGICS_LOCAL_DIR", str(tmp_path / "default"))
    assert process.default_state_dir() == tmp_path / "default"
    info = process.ensure_running(extra_args=FAST)
    try:
        assert info["endpoint"].startswith("http://127.0.0.1:")
        again = process.ensure_running(extra_args=FAST)
        assert again["pid"] == info["pid"]
        assert process.running() is not None
    finally:
        assert process.stop() is True
    assert process.stop() is False
    assert process.running() is None
    with pytest.raises(ProcessLookupError):
        os.kill(info["pid"], 0)


def test_bad_flags_exit_with_usage(tmp_path):
    from odsc_magics.local.cli import main

    with pytest.raises(SystemExit) as info:
        main(["--state-dir", str(tmp_path), "--fault", "418:0.5"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main(["--state-dir", str(tmp_path), "--engine", "nope"])


def test_listens_on_loopback_only(backend):
    port = int(backend.endpoint.rsplit(":", 1)[1])
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                listening.append(address)
    assert listening == ["0100007F"]  # 127.0.0.1, nothing on other interfaces
