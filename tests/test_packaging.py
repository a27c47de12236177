"""Packaging: every import is a declared requirement; extras split by purpose; `make test` installs them all."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Import name -> distribution name, where they differ.
DISTRIBUTIONS = {"IPython": "ipython"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> dict[str, set[str]]:
    """Distribution -> where it is declared ("dependencies" or the extra's name)."""
    project = PYPROJECT["project"]
    found: dict[str, set[str]] = {}
    groups = {"dependencies": project["dependencies"], **project["optional-dependencies"]}
    for group, requirements in groups.items():
        for text in requirements:
            found.setdefault(_normal(Requirement(text).name), set()).add(group)
    return found


def _third_party_imports() -> dict[str, str]:
    """Top-level module -> one file of the package importing it (at module level or lazily)."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "odsc_magics").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "odsc_magics":
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_declared():
    declared = _declared()
    missing = {
        module: where
        for module, where in _third_party_imports().items()
        if _normal(DISTRIBUTIONS.get(module, module)) not in declared
    }
    assert missing == {}, "imported but not declared in pyproject.toml"


def test_packages_the_client_imports_are_runtime_dependencies():
    declared = _declared()
    for module in ("requests", "urllib3", "oci", "traitlets"):
        assert "dependencies" in declared[_normal(module)], module


def test_extras_are_split_by_purpose():
    extras = {name: {_normal(Requirement(r).name) for r in reqs} for name, reqs in
              PYPROJECT["project"]["optional-dependencies"].items()}  # fmt: skip
    assert "playwright" in extras["e2e"] and "ruff" in extras["lint"]
    assert not {"playwright", "ruff"} & extras["test"]
    assert {"jupyterlab", "jupyter-server"} <= extras["lab"]
    assert "matplotlib" in extras["bench"] and "matplotlib" not in extras["test"]  # only the benchmarks plot


def test_make_test_installs_every_extra_the_suite_uses():
    makefile = (ROOT / "Makefile").read_text()
    (extras,) = re.findall(r"pip install -q -e '\.\[([a-z0-9,]+)\]'", makefile)
    assert set(extras.split(",")) == {"test", "e2e", "lint", "lab", "bench"}
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == "make test"
    assert not [line for line in ci if re.search(r"\bpip\b|\bpytest\b", line)]
