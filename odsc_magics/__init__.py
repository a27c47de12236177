"""odsc-magics: deploy and prompt LLMs on OCI Data Science from Jupyter (imports stay lazy)."""

from __future__ import annotations

from odsc_magics._version import __version__

__all__ = ["__version__"]
