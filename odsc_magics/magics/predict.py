"""``%%llm_predict`` / ``%llm_predict``: one prompt to a model deployment, streamed into the cell."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import line_cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments

from odsc_magics.display import dry_run_bundle, show
from odsc_magics.magics._base import (
    LLMMagicsBase,
    check_var_name,
    generation_params,
    parse_magic_line,
    usage_errors,
)
from odsc_magics.magics._run import run_request, show_snippet
from odsc_magics.request_snippets import FORMATS as SNIPPET_FORMATS

__all__ = ["PredictMagics", "generation_arguments"]


def generation_arguments(func: Any) -> Any:
    """The options every prompting magic shares."""
    decorators = [
        argument(
            "-d",
            "--deployment",
            metavar="TARGET",
            help="deployment OCID, URL or display name "
            "(default: the last deployed, or the `deployment` setting)",
        ),
        argument("--max-tokens", type=int, metavar="N", help="maximum tokens to generate"),
        argument("--temperature", type=float, metavar="T", help="sampling temperature, 0-2"),
        argument("--top-p", type=float, metavar="P", help="nucleus sampling probability, (0, 1]"),
        argument("--stop", action="append", metavar="TEXT", help="stop sequence (repeatable)"),
        argument("--no-stream", action="store_true", help="wait for the whole answer instead of streaming"),
        argument(
            "--param",
            action="append",
            metavar="NAME=VALUE",
            help="any other request field, VALUE as JSON if it parses (e.g. --param seed=7); repeatable",
        ),
        argument("-o", "--output", metavar="VAR", help="also store the answer's text in the variable VAR"),
        argument(
            "--dry-run", action="store_true", help="show the rendered prompt and the request; send nothing"
        ),
        argument(
            "--as",
            dest="as_",
            choices=SNIPPET_FORMATS,
            metavar="FORMAT",
            help="show the request as a program that sends it: oci-cli (oci raw-request), python (requests + "
            "oci.signer.Signer) or openai (the openai client); implies --dry-run",
        ),
    ]
    for decorate in reversed(decorators):
        func = decorate(func)
    return func


@magics_class
class PredictMagics(LLMMagicsBase):
    """The single-prompt magic."""

    @line_cell_magic
    @no_var_expand
    @usage_errors
    @magic_arguments()
    @argument("--chat", action="store_true", help="send as a chat message (/v1/chat/completions)")
    @argument("--system", metavar="TEXT", help="system message (implies --chat)")
    @generation_arguments
    @argument(
        "prompt",
        nargs="*",
        help="the prompt of the line magic; %%%%llm_predict takes the cell body. "
        "{{ name }} is filled from the notebook's variables; everything else is sent as written",
    )
    def llm_predict(self, line: str, cell: str | None = None) -> None:
        """Send a prompt to an LLM model deployment and stream the answer into the cell.

        The answer ends as Markdown with the request's metadata; `_llm_last` holds the last Result.
        """
        args, rest = parse_magic_line(self.llm_predict, line, free_text=cell is None)
        output_var = check_var_name(args.output, self.shell.user_ns)
        params = generation_params(args)
        text = cell.rstrip("\n") if cell is not None else rest
        if not text.strip():
            raise UsageError(
                "No prompt: write it in the cell body of %%llm_predict or after the options of %llm_predict."
            )
        prompt = self.render(text)
        chat = args.chat or args.system is not None
        messages = None
        if chat:
            messages = []
            if args.system is not None:
                messages.append({"role": "system", "content": self.render(args.system)})
            messages.append({"role": "user", "content": prompt})
        endpoint = self.connect(args.deployment)
        if args.as_:  # implies --dry-run
            show_snippet(
                self.shell,
                endpoint,
                args.as_,
                prompt=None if chat else prompt,
                messages=messages,
                params=params,
                stream=not args.no_stream,
                output_var=output_var,
            )
            return
        if args.dry_run:
            request = endpoint.build_request(
                prompt=None if chat else prompt, messages=messages, stream=not args.no_stream, **params
            )
            show(dry_run_bundle(messages if chat else prompt, request))
            if output_var:
                self.shell.user_ns[output_var] = request
            return
        run_request(
            self.shell,
            endpoint,
            prompt=None if chat else prompt,
            messages=messages,
            params=params,
            stream=not args.no_stream,
            output_var=output_var,
        )
