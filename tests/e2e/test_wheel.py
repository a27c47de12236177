"""Packaging of the JupyterLab extension: one version, lazy imports, and a wheel that works without Node."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import odsc_magics
from odsc_magics._version import __version__

ROOT = Path(__file__).resolve().parents[2]


def test_package_json_version_is_the_python_version():
    package = json.loads((ROOT / "labextension" / "package.json").read_text())
    assert package["version"] == __version__
    built = ROOT / "odsc_magics" / "labextension" / "package.json"
    if built.exists():
        assert json.loads(built.read_text())["version"] == __version__


def test_extension_entry_points():
    assert odsc_magics._jupyter_labextension_paths() == [{"src": "labextension", "dest": "odsc-magics"}]
    assert odsc_magics._jupyter_server_extension_points() == [{"module": "odsc_magics.server"}]
    config = json.loads((ROOT / "jupyter-config" / "server-config" / "odsc_magics.json").read_text())
    assert config["ServerApp"]["jpserver_extensions"] == {"odsc_magics": True}


def test_import_stays_free_of_the_server_stack():
    code = (
        "import sys, odsc_magics; odsc_magics._jupyter_server_extension_points(); "
        "print(sorted(m for m in ('tornado', 'jupyter_server', 'oci', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def _path_without_node() -> str:
    keep = [
        folder
        for folder in os.environ.get("PATH", "").split(os.pathsep)
        if folder and not any(Path(folder, tool).exists() for tool in ("node", "npm", "jlpm", "yarn"))
    ]
    return os.pathsep.join(keep)


@pytest.mark.slow
def test_wheel_installs_a_working_prebuilt_extension_without_node(tmp_path):
    # Given the wheel, built once from this checkout
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(dist)],
        check=True,
        cwd=ROOT,
    )
    wheel = next(dist.glob("odsc_magics-*.whl"))
    # And a fresh venv, with no Node on PATH
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bin_dir = venv / "bin"
    path = os.pathsep.join([str(bin_dir), _path_without_node()])
    assert shutil.which("node", path=path) is None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PATH=path, JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_DATA_DIR=str(tmp_path / "data"))
    # When the wheel is installed with JupyterLab (the wheel's other dependencies play no part in the listings)
    subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, env=env
    )
    subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "jupyterlab>=4.6,<5"], check=True, env=env)

    def listing(*command: str) -> str:
        done = subprocess.run(
            [str(bin_dir / "jupyter"), *command], capture_output=True, text=True, env=env, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr).split())

    # Then JupyterLab lists the prebuilt extension enabled, and the server extension is enabled and valid
    labextensions = listing("labextension", "list")
    assert f"odsc-magics v{__version__} enabled OK (python, odsc-magics)" in labextensions
    server = listing("server", "extension", "list")
    assert "odsc_magics enabled" in server
    assert f"odsc_magics {__version__} OK" in server
