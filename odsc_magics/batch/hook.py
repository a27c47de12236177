"""Registers the `df.llm` accessor as soon as pandas is imported, without importing pandas itself."""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from typing import Any


def register_accessor_when_pandas_loads() -> None:
    """Register now if pandas is loaded, else once something imports it (``%load_ext`` stays pandas-free)."""
    if "pandas" in sys.modules:
        _register()
        return
    if not any(isinstance(finder, _PandasWatcher) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PandasWatcher())


def _register() -> None:
    try:
        import odsc_magics.pandas  # noqa: F401  (importing registers the accessors)
    except Exception:  # never break the user's `import pandas` over an accessor
        return


class _PandasWatcher(importlib.abc.MetaPathFinder):
    """Finds pandas the usual way, then runs the registration right after pandas has executed."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "pandas":
            return None
        sys.meta_path.remove(self)  # one shot; also keeps the look-up below from finding us again
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


class _RegisteringLoader(importlib.abc.Loader):
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def create_module(self, spec: Any) -> Any:
        return self._inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._inner.exec_module(module)
        _register()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
