"""``%llm_config``: every effective setting, its value and where it came from (never a secret)."""

from __future__ import annotations

from IPython.core.magic import line_magic, magics_class
from IPython.core.magic_arguments import magic_arguments

from odsc_magics.display import show, table_bundle
from odsc_magics.magics._base import LLMMagicsBase, parse_magic_words, usage_errors

__all__ = ["ConfigMagics"]


@magics_class
class ConfigMagics(LLMMagicsBase):
    """The settings magic; change a setting with ``%config LLMMagics.<name> = value``."""

    @line_magic
    @usage_errors
    @magic_arguments()
    def llm_config(self, line: str = "") -> None:
        """Show each effective setting and its source (%config, env, profile, local backend, default).

        Change one with `%config LLMMagics.<name> = value`; `%config LLMMagics` lists them with help.
        """
        parse_magic_words(self.llm_config, line)
        from odsc_magics.config import describe

        rows = describe(self)
        show(table_bundle("odsc-magics settings", ["setting", "value", "source"], rows))
