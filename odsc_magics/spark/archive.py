"""`odsc-magics dataflow-archive`: the dependency archive an OCI Data Flow run installs before it starts.

Layout, as Data Flow's "Providing a Dependency Archive" documents it (docs.oracle.com/iaas/data-flow/using/
third-party-provide-archive.htm, read 2026-11-29): a zip whose ``python/lib/python<X.Y>/site-packages/`` holds
the Python libraries added to every Spark node's runtime, beside a ``version.txt``. Wheels only, for Linux
x86_64 and the chosen CPython, fetched by pip with ``--platform``/``--only-binary`` (so a wheel with native code,
such as ``cryptography`` that the oci SDK signs with, matches Data Flow's nodes, not this machine). PySpark
itself is not included: the run's Spark provides it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# Data Flow's newest runtime: Spark 3.5.0 with Python 3.11 (docs.oracle.com/iaas/data-flow/using/
# migrate-spark-350.htm, read 2026-11-29).
DEFAULT_PYTHON = "3.11"
# manylinux2014 = glibc 2.17: wheels built for it run on every Oracle Linux that Data Flow's nodes use.
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64")
# Beside odsc-magics's dependencies and its `spark` extra (less PySpark, which the run's Spark brings): the oci://
# file system (ocifs) that the Python workers write checkpoint files to on Data Flow.
OBJECT_STORE = ("ocifs>=1.3",)
_SKIP = ("__pycache__", "labextension")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odsc-magics dataflow-archive",
        description="Build the dependency archive (archive.zip layout) that an OCI Data Flow application "
        "installs on its Spark nodes: odsc-magics and its dependencies as Linux x86_64 wheels for one Python "
        "version. Upload it to Object Storage and name it in the application's archive URI (or spark.archives).",
    )
    parser.add_argument("out", type=Path, metavar="OUT.zip", help="the archive to write")
    parser.add_argument(
        "--python",
        default=DEFAULT_PYTHON,
        metavar="X.Y",
        help=f"the Data Flow runtime's Python version (default {DEFAULT_PYTHON}, Spark 3.5's)",
    )
    parser.add_argument(
        "--requirement",
        "-r",
        action="append",
        default=[],
        metavar="SPEC",
        help="another package your application needs (repeatable), e.g. -r 'scikit-learn==1.5.*'",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the subcommand; returns the exit code."""
    args = build_parser().parse_args(argv)
    if not re.fullmatch(r"3\.\d{1,2}", args.python):
        print(f"odsc-magics dataflow-archive: --python {args.python!r} must look like 3.11", file=sys.stderr)
        return 2
    try:
        count = build(args.out, python=args.python, extra=args.requirement)
    except ArchiveError as exc:
        print(f"odsc-magics dataflow-archive: {exc}", file=sys.stderr)
        return 1
    size = args.out.stat().st_size / 1e6
    print(f"wrote {args.out} ({count} files, {size:.1f} MB) for Python {args.python} on Linux x86_64")
    return 0


class ArchiveError(Exception):
    """The archive could not be built (pip failed, or the output cannot be written)."""


def site_packages(python: str) -> str:
    """Where the archive keeps its Python libraries."""
    return f"python/lib/python{python}/site-packages"


def requirements() -> list[str]:
    """odsc-magics's runtime dependencies, its `spark` extra but PySpark, and the oci:// file system."""
    from importlib import metadata

    try:
        declared = metadata.requires("odsc-magics") or []
        plain = [spec.split(";")[0].strip() for spec in declared if "extra ==" not in spec]
        spark = [spec.split(";")[0].strip() for spec in declared if re.search(r"extra\s*==\s*['\"]spark['\"]", spec)]
    except metadata.PackageNotFoundError:
        plain, spark = _from_pyproject()
    spark = [spec for spec in spark if not re.match(r"pyspark\b", spec, re.IGNORECASE)]
    return [*plain, *spark, *OBJECT_STORE]


def _from_pyproject() -> tuple[list[str], list[str]]:
    import tomllib

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    with open(pyproject, "rb") as fh:
        project = tomllib.load(fh)["project"]
    return list(project["dependencies"]), list(project["optional-dependencies"]["spark"])


def build(out: Path, *, python: str = DEFAULT_PYTHON, extra: list[str] | tuple[str, ...] = ()) -> int:
    """Write the archive to ``out``; returns the number of files in it."""
    with tempfile.TemporaryDirectory(prefix="odsc-dataflow-") as work:
        target = Path(work) / site_packages(python)
        target.mkdir(parents=True)
        _install_wheels(target, python, [*requirements(), *extra])
        _copy_package(target / "odsc_magics")
        (Path(work) / "version.txt").write_text(_version_text(python), encoding="utf-8")
        return _zip(Path(work), out)


def _install_wheels(target: Path, python: str, specs: list[str]) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
               "--target", str(target), "--implementation", "cp", "--python-version", python,
               "--only-binary=:all:"]  # fmt: skip
    for platform in PLATFORMS:
        command += ["--platform", platform]
    done = subprocess.run([*command, *specs], capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-12:])
        raise ArchiveError(f"pip could not fetch Linux x86_64 wheels for Python {python}:\n{tail}")


def _copy_package(destination: Path) -> None:
    """This odsc_magics package, pure Python, without its JupyterLab extension (no notebook server there)."""
    source = Path(__file__).resolve().parents[1]
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns(*_SKIP, "*.pyc"))


def _version_text(python: str) -> str:
    from odsc_magics import __version__

    return (
        f"odsc-magics {__version__} dependency archive\n"
        f"python {python}, platform {PLATFORMS[0]}\n"
        "built by: odsc-magics dataflow-archive\n"
    )


def _zip(root: Path, out: Path) -> int:
    out = out.expanduser()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        count = 0
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for directory, names, files in os.walk(root):
                names.sort()
                for name in sorted(files):
                    path = Path(directory) / name
                    archive.write(path, path.relative_to(root).as_posix())
                    count += 1
        partial.replace(out)
    except OSError as exc:
        raise ArchiveError(f"cannot write {out}: {exc.strerror or exc}") from None
    return count
