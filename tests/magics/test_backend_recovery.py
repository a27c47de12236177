"""A kernel whose local backend dies recovers at the next magic, and %llm_config starts nothing."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from kernel_helpers import failed, llm_outputs, texts

from odsc_magics.local.process import process_alive, read_start
from odsc_magics.local.testing import start_backend

pytestmark = pytest.mark.slow

FAST = ("--deploy-seconds", "0.2", "--ttft-ms", "0", "--tokens-per-s", "0")
TIMED = """
import time
_t = time.perf_counter()
{call}
print(f"SECONDS {{time.perf_counter() - _t:.2f}}")
"""
KILL = """
import json, os, signal, time, pathlib
_dead = json.loads(pathlib.Path({state!r}, "start.json").read_text())["pid"]
os.kill(_dead, signal.SIGKILL)
while open(f"/proc/{{_dead}}/stat").read().rpartition(")")[2].split()[0] != "Z":
    time.sleep(0.01)
print("ZOMBIE", _dead)
"""
START_BY_HAND = """
import subprocess, sys, json, pathlib, time
_by_hand = subprocess.Popen(
    [sys.executable, "-m", "odsc_magics", "local", "--state-dir", {state!r}, *{fast!r}],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
)
_start = pathlib.Path({state!r}, "start.json")
while not (_start.exists() and json.loads(_start.read_text() or "{{}}").get("pid") == _by_hand.pid):
    time.sleep(0.05)
print("BY_HAND", _by_hand.pid)
"""
PREDICT = 'get_ipython().run_cell_magic("llm_predict", "--max-tokens 6", "Say hello.")'
LIST = 'get_ipython().run_line_magic("llm_deploy", "list")'


def _seconds(cell) -> float:
    found = re.search(r"SECONDS ([0-9.]+)", texts(cell))
    assert found, texts(cell)
    return float(found.group(1))


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A state dir holding an ACTIVE deployment named test-llm, with no backend running on it."""
    directory = tmp_path / "state"
    seeded = start_backend(directory, *FAST)
    try:
        seeded.create_deployment("test-llm")
    finally:
        seeded.stop()
    assert read_start(directory) is None
    return directory


def test_a_killed_backend_is_noticed_and_the_next_magic_succeeds(run_cells, state_dir: Path) -> None:
    state = str(state_dir)
    cells = [
        "%load_ext odsc_magics",
        '%config LLMMagics.backend = "local"',
        "%llm_config",
        "%llm_deploy use test-llm",  # starts the backend as this kernel's child
        PREDICT,
        KILL.format(state=state),
        TIMED.format(call=PREDICT),
        KILL.format(state=state),
        TIMED.format(call=LIST),
        KILL.format(state=state),
        START_BY_HAND.format(state=state, fast=FAST),  # what the hint says: start it again by hand
        TIMED.format(call=PREDICT),
    ]
    nb, _ = run_cells(SimpleNamespace(state_dir=state_dir), cells, timeout=180)
    try:
        for index in (3, 4, 6, 8, 11):
            assert not failed(nb.cells[index]), (index, texts(nb.cells[index]))
        config = texts(nb.cells[2])
        assert str(state_dir.resolve() / "config") in config and "us-ashburn-1" in config
        assert "~/.oci/config" not in config
        after_kill = _seconds(nb.cells[6])
        after_list = _seconds(nb.cells[8])
        after_by_hand = _seconds(nb.cells[11])
        print(f"after SIGKILL: %%llm_predict {after_kill:.2f} s, %llm_deploy list {after_list:.2f} s, "
              f"%%llm_predict on a backend started by hand {after_by_hand:.2f} s")
        # Before: 26 s, ~93 s, and failing for good once restarted by hand.
        assert after_kill < 10 and after_list < 10 and after_by_hand < 10
        killed = [int(re.search(r"ZOMBIE (\d+)", texts(nb.cells[i])).group(1)) for i in (5, 7, 9)]
        assert len(set(killed)) == 3  # each kill hit a new backend: the kernel had started another one
        by_hand = int(re.search(r"BY_HAND (\d+)", texts(nb.cells[10])).group(1))
        assert read_start(state_dir)["pid"] == by_hand  # the kernel used the one started by hand
        for index in (6, 11):
            assert llm_outputs(nb.cells[index]), texts(nb.cells[index])  # an answer came back
    finally:
        info = read_start(state_dir)
        if info and process_alive(info["pid"]):
            from odsc_magics.local.process import stop

            stop(state_dir)
