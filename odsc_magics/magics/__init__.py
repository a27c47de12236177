"""The IPython magics of odsc-magics, assembled into one configurable ``LLMMagics``."""

from __future__ import annotations

from typing import Any

from IPython.core.magic import magics_class

from odsc_magics.config import LLMSettings, use_settings
from odsc_magics.magics.chat import ChatMagics
from odsc_magics.magics.config import ConfigMagics
from odsc_magics.magics.deploy import DeployMagics
from odsc_magics.magics.help_syntax import keep_prompts_ending_in_question_marks
from odsc_magics.magics.predict import PredictMagics

__all__ = ["LLMMagics", "load_ipython_extension", "unload_ipython_extension"]


@magics_class
class LLMMagics(PredictMagics, ChatMagics, DeployMagics, ConfigMagics, LLMSettings):
    """All odsc-magics magics; its traits are the settings (``%config LLMMagics.<name> = value``)."""


# @magics_class records only the magics defined in the class body; gather those of the families.
LLMMagics.magics = {
    kind: {
        name: method
        for family in (PredictMagics, ChatMagics, DeployMagics, ConfigMagics)
        for name, method in family.magics[kind].items()
    }
    for kind in ("line", "cell")
}

_loaded: dict[int, LLMMagics] = {}


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics and make them the settings every API call reads (imports nothing heavy).

    An input transformer keeps a line magic's prompt ending in ``?`` from being read as a help request.
    """
    magics = LLMMagics(shell=ipython)
    ipython.register_magics(magics)
    use_settings(magics)
    _loaded[id(ipython)] = magics
    if keep_prompts_ending_in_question_marks not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(keep_prompts_ending_in_question_marks)
    from odsc_magics.batch.hook import register_accessor_when_pandas_loads

    register_accessor_when_pandas_loads()


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the magics, their input transformer and their settings registration."""
    magics = _loaded.pop(id(ipython), None)
    if magics is None:
        return
    while keep_prompts_ending_in_question_marks in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.remove(keep_prompts_ending_in_question_marks)
    for kind, table in magics.magics.items():
        registered = ipython.magics_manager.magics[kind]
        for name in table:
            registered.pop(name, None)
    ipython.magics_manager.registry.pop(type(magics).__name__, None)
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)
    use_settings(None)  # type: ignore[arg-type]
