"""A line magic's prompt that ends in ``?`` is sent as the prompt, not read as IPython's ``obj?`` help syntax."""

from __future__ import annotations

import tokenize

from IPython.core.inputtransformer2 import (
    assemble_continued_line,
    find_end_of_continued_line,
    make_tokens_by_line,
)

__all__ = ["PROMPT_MAGICS", "keep_prompts_ending_in_question_marks"]

# The line magics whose text after the options is a prompt.
PROMPT_MAGICS = frozenset({"llm_predict", "llm_chat"})


def keep_prompts_ending_in_question_marks(lines: list[str]) -> list[str]:
    """An input transformer (``shell.input_transformers_cleanup``) for ``%llm_predict What is x?``.

    IPython's help syntax turns any line ending in ``word?`` into ``pinfo word``, so the magic never ran.
    A line that starts with one of ``PROMPT_MAGICS`` and ends in ``?`` becomes the same call IPython
    makes for a magic line (``get_ipython().run_line_magic(name, text)``), which the help syntax leaves
    alone. ``%llm_predict?`` (help on the magic itself), cell magics and lines inside strings are untouched.
    """
    if not lines or lines[0].startswith("%%") or not any(f"%{m}" in line for line in lines for m in PROMPT_MAGICS):
        return lines
    for _ in range(len(lines)):
        found = _first_prompt_line(lines)
        if found is None:
            break
        row, col, end, text = found
        name, _, args = text[1:].partition(" ")
        call = f"get_ipython().run_line_magic({name!r}, {args!r})"
        lines = [*lines[:row], lines[row][:col] + call + "\n", *lines[end + 1 :]]
    return lines


def _first_prompt_line(lines: list[str]) -> tuple[int, int, int, str] | None:
    """(first line, column of ``%``, last line, the joined text) of the first prompt magic line ending in ``?``."""
    for tokens in make_tokens_by_line(lines):
        ix = 0
        while ix < len(tokens) and tokens[ix].type in (tokenize.INDENT, tokenize.DEDENT):
            ix += 1
        if ix + 1 >= len(tokens):
            continue
        escape, name = tokens[ix], tokens[ix + 1]
        if escape.string != "%" or name.type != tokenize.NAME or name.string not in PROMPT_MAGICS:
            continue
        row, col = escape.start[0] - 1, escape.start[1]
        if name.start != (row + 1, col + 1):  # `% llm_chat` or `%%llm_chat`: not our line magic
            continue
        end = find_end_of_continued_line(lines, row)
        text = assemble_continued_line(lines, (row, col), end)
        if text[1 + len(name.string) : 2 + len(name.string)] == " " and text.rstrip().endswith("?"):
            return row, col, end, text
    return None
