"""``%%llm_chat``: a multi-turn conversation kept across cells (``--reset``, ``--history``)."""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import line_cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments

from odsc_magics.display import dry_run_bundle, show, table_bundle
from odsc_magics.magics._base import (
    LLMMagicsBase,
    check_var_name,
    generation_params,
    parse_magic_line,
    usage_errors,
)
from odsc_magics.magics._run import run_request, show_snippet
from odsc_magics.magics.predict import generation_arguments, output_format_of, structured_arguments

__all__ = ["ChatMagics"]


@magics_class
class ChatMagics(LLMMagicsBase):
    """The conversation magic; the conversation lives as long as the kernel (or until ``--reset``)."""

    @property
    def conversation(self) -> list[dict]:
        """The messages so far: an optional system message, then user/assistant turns."""
        if not hasattr(self, "_conversation"):
            self._conversation: list[dict] = []
        return self._conversation

    def _set_system(self, text: str) -> None:
        messages = self.conversation
        if messages and messages[0]["role"] == "system":
            messages[0] = {"role": "system", "content": text}
        else:
            messages.insert(0, {"role": "system", "content": text})

    def _show_history(self) -> None:
        rows = [(i, m["role"], m["content"]) for i, m in enumerate(self.conversation, 1)]
        if not rows:
            show(
                {"text/plain": "The conversation is empty.", "text/markdown": "*The conversation is empty.*"}
            )
            return
        show(table_bundle(f"Conversation: {len(rows)} messages", ["#", "role", "content"], rows))

    @line_cell_magic
    @no_var_expand
    @usage_errors
    @magic_arguments()
    @argument("--system", metavar="TEXT", help="set or replace the conversation's system message")
    @argument("--reset", action="store_true", help="forget the conversation (system message included)")
    @argument("--history", action="store_true", help="show the conversation so far")
    @generation_arguments
    @structured_arguments
    @argument(
        "message",
        nargs="*",
        help="the message of the line magic; %%%%llm_chat takes the cell body. "
        "{{ name }} is filled from the notebook's variables",
    )
    def llm_chat(self, line: str, cell: str | None = None) -> None:
        """Chat with an LLM model deployment; each cell is one turn of the same conversation.

        A turn that fails or is interrupted is not added to the conversation.
        """
        args, rest = parse_magic_line(self.llm_chat, line, free_text=cell is None)
        output_var = check_var_name(args.output, self.shell.user_ns)
        params = generation_params(args)
        output_format = output_format_of(args, self.shell.user_ns)
        if args.reset:
            self.conversation.clear()
        if args.system is not None:
            self._set_system(self.render(args.system))
        text = cell.rstrip("\n") if cell is not None else rest
        if not text.strip():
            if args.history:
                self._show_history()
            elif args.reset or args.system is not None:
                note = "Conversation reset." if args.reset else ""
                if args.system is not None:
                    note = f"{note} System message set.".strip()
                show({"text/plain": note})
            else:
                raise UsageError("No message: write it in the cell body of %%llm_chat or after the options.")
            return
        user = {"role": "user", "content": self.render(text)}
        messages = [*self.conversation, user]
        endpoint = self.connect(args.deployment)
        if args.as_:  # implies --dry-run
            show_snippet(
                self.shell,
                endpoint,
                args.as_,
                messages=messages,
                params={**params, **(output_format.request_fields() if output_format is not None else {})},
                stream=not args.no_stream,
                output_var=output_var,
            )
            return
        if args.dry_run:
            fields = output_format.request_fields() if output_format is not None else {}
            request = endpoint.build_request(messages=messages, stream=not args.no_stream, **params, **fields)
            show(dry_run_bundle(messages, request))
            if output_var:
                self.shell.user_ns[output_var] = request
            return
        result = run_request(
            self.shell,
            endpoint,
            messages=messages,
            params=params,
            stream=not args.no_stream,
            output_var=output_var,
            output_format=output_format,
        )
        self.conversation.extend([user, {"role": "assistant", "content": result.text}])
        if args.history:
            self._show_history()
