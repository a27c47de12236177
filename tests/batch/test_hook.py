"""`%load_ext odsc_magics` makes `df.llm` available without importing pandas itself."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from IPython.testing.globalipapp import start_ipython
ip = start_ipython()
ip.run_line_magic("load_ext", "odsc_magics")
assert "pandas" not in sys.modules, "load_ext imported pandas"
import pandas as pd
assert hasattr(pd.DataFrame({"a": [1]}), "llm")
assert hasattr(pd.Series([1]), "llm")
print("ok")
"""

BEFORE = """
import pandas as pd
from IPython.testing.globalipapp import start_ipython
ip = start_ipython()
ip.run_line_magic("load_ext", "odsc_magics")
assert hasattr(pd.DataFrame({"a": [1]}), "llm")
print("ok")
"""


def test_accessor_registered_when_pandas_is_imported_after_load_ext():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().endswith("ok"), done.stdout + done.stderr


def test_accessor_registered_when_pandas_was_imported_before():
    done = subprocess.run([sys.executable, "-c", BEFORE], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().endswith("ok"), done.stdout + done.stderr
