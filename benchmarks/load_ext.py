"""How long `%load_ext odsc_magics` takes in fresh processes, beside `import oci` measured in the same run."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 7
TARGET_S = 0.15

LOAD_EXT = """
import json, socket, sys, time
calls = []
_connect = socket.socket.connect
def connect(self, address):
    calls.append(str(address))
    return _connect(self, address)
socket.socket.connect = connect
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
t = time.perf_counter()
ip.run_line_magic("load_ext", "odsc_magics")
elapsed = time.perf_counter() - t
heavy = [m for m in ("oci", "pandas", "requests", "ipywidgets", "jinja2", "tqdm") if m in sys.modules]
print(json.dumps({"s": elapsed, "heavy": heavy, "connects": calls}))
"""

IMPORT_OCI = """
import json, time
t = time.perf_counter()
import oci
print(json.dumps({"s": time.perf_counter() - t}))
"""


def measure(code: str, env: dict[str, str]) -> list[dict]:
    """Run ``code`` in RUNS fresh interpreters; each prints one JSON line."""
    results = []
    for _ in range(RUNS):
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def main() -> int:
    """Print the medians side by side; exit 0 unless a run failed."""
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ODSC_MAGICS_")}
        env.update(HOME=home, PYTHONPATH=str(ROOT))
        load = measure(LOAD_EXT, env)
        oci = measure(IMPORT_OCI, env)
    load_s = [r["s"] for r in load]
    oci_s = [r["s"] for r in oci]
    median_load, median_oci = statistics.median(load_s), statistics.median(oci_s)
    heavy = sorted({m for r in load for m in r["heavy"]})
    connects = sorted({c for r in load for c in r["connects"]})
    print(f"%load_ext odsc_magics over {RUNS} fresh processes (IPython already imported, as in a kernel)")
    print(
        f"  %load_ext odsc_magics  median {median_load * 1000:7.1f} ms  (min {min(load_s) * 1000:.1f}, "
        f"max {max(load_s) * 1000:.1f})   target <= {TARGET_S * 1000:.0f} ms"
    )
    print(
        f"  import oci (baseline)  median {median_oci * 1000:7.1f} ms  (min {min(oci_s) * 1000:.1f}, "
        f"max {max(oci_s) * 1000:.1f})"
    )
    print(f"  ratio %load_ext / import oci: {median_load / median_oci:.3f}")
    print(f"  heavy modules imported by %load_ext: {', '.join(heavy) or 'none'}")
    print(f"  network connections made by %load_ext: {len(connects)}")
    print(f"  within target: {'yes' if median_load <= TARGET_S else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
