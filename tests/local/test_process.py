"""Start-up output, state that survives restarts, and the detached process helpers."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
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
        "instance",
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


def _stranger():
    """An unrelated live process of ours (its pid is what a recycled pid in a stale start.json looks like)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_stop_never_signals_a_process_that_is_not_the_backend(tmp_path, caplog):
    stranger = _stranger()
    try:
        stale = {
            "endpoint": "http://127.0.0.1:9",
            "pid": stranger.pid,
            "instance": "0" * 32,
            "config_file": str(tmp_path / "config"),
            "profile": "DEFAULT",
            "region": "us-ashburn-1",
        }
        (tmp_path / "start.json").write_text(json.dumps(stale))
        with caplog.at_level(logging.WARNING, logger="odsc_magics.local.process"):
            assert process.stop(tmp_path) is False
        assert stranger.poll() is None, "stop() signalled a process that is not the backend"
        assert not (tmp_path / "start.json").exists()
        assert str(stranger.pid) in caplog.text and "not the local backend" in caplog.text
    finally:
        stranger.kill()
        stranger.wait()


def test_stop_does_not_trust_a_live_backend_answering_for_another_pid(backend_factory):
    """start.json naming a live backend's endpoint and token but a stranger's pid: the stranger is spared."""
    running = backend_factory()
    stranger = _stranger()
    try:
        forged = {**running.info, "pid": stranger.pid}
        other_dir = running.state_dir.parent / f"{running.state_dir.name}-forged"
        other_dir.mkdir()
        (other_dir / "start.json").write_text(json.dumps(forged))
        assert process.stop(other_dir) is False
        assert stranger.poll() is None
        assert process.running(running.state_dir) is not None  # the real backend was not touched either
    finally:
        stranger.kill()
        stranger.wait()


def test_stop_stops_the_real_backend_and_running_needs_its_token(tmp_path):
    info = process.ensure_running(tmp_path, extra_args=FAST)
    try:
        assert process.running(tmp_path) == info
        tampered = {**info, "instance": "f" * 32}
        (tmp_path / "start.json").write_text(json.dumps(tampered))
        assert process.running(tmp_path) is None  # answering is not enough: it must be the same instance
        assert process.is_ours(tampered, tmp_path)  # ... but it holds the state dir's lock: still ours to stop
    finally:
        assert process.stop(tmp_path) is True
    assert not process.process_alive(info["pid"])
    assert not (tmp_path / "start.json").exists()


def test_process_alive_is_false_for_a_zombie_child():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    pid = child.pid
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    os.kill(pid, 0)  # signal 0 still succeeds for a zombie: why it cannot be the test of liveness
    assert process.process_alive(pid) is False
    child.wait()


def test_default_state_dir_is_the_local_dir_setting(tmp_path, monkeypatch):
    from odsc_magics import config

    monkeypatch.setattr(config, "_registered", config.LLMSettings(local_dir=str(tmp_path / "configured")))
    monkeypatch.setenv("ODSC_MAGICS_LOCAL_DIR", str(tmp_path / "env"))
    assert process.default_state_dir() == tmp_path / "configured"
