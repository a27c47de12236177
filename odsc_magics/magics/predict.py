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

__all__ = ["PredictMagics", "generation_arguments", "output_format_of", "structured_arguments"]


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


def structured_arguments(func: Any) -> Any:
    """The options that ask for a typed answer (vLLM's guided decoding); at most one of them."""
    decorators = [
        argument(
            "--schema",
            metavar="S",
            help="answer JSON that fits S: the name of a JSON-schema dict or a pydantic BaseModel class "
            "in the notebook; -o VAR gets the parsed value",
        ),
        argument("--choice", action="append", metavar="TEXT", help="answer one of these choices (repeatable)"),
        argument("--regex", metavar="R", help="answer text that matches the regular expression R"),
        argument("--json", action="store_true", help="answer any JSON object"),
    ]
    for decorate in reversed(decorators):
        func = decorate(func)
    return func


def output_format_of(args: Any, user_ns: dict[str, Any]) -> Any:
    """The OutputFormat the options ask for (None: free text); a bad name or schema is a UsageError."""
    schema = getattr(args, "schema", None)
    if schema is None and not args.choice and args.regex is None and not args.json:
        return None
    from odsc_magics.structured_output import output_format

    value = None
    if schema is not None:
        value = _named_value(schema, user_ns)
    return output_format(schema=value, choices=args.choice, regex=args.regex, json_object=args.json, name=schema or "")


def _named_value(name: str, user_ns: dict[str, Any]) -> Any:
    """``name`` (``x`` or ``module.Model``) looked up in the notebook without evaluating anything."""
    parts = name.split(".")
    if not all(part.isidentifier() for part in parts):
        raise UsageError(f"--schema needs the name of a dict or pydantic model class in the notebook, not {name!r}")
    if parts[0] not in user_ns:
        raise UsageError(
            f"--schema {name}: no variable {parts[0]!r} in the notebook; define a JSON-schema dict or a pydantic "
            f"BaseModel class named {parts[0]} in a cell above, then run this cell again."
        )
    value = user_ns[parts[0]]
    for index, part in enumerate(parts[1:], 1):
        if part.startswith("_") or not hasattr(value, part):
            raise UsageError(f"--schema {name}: {'.'.join(parts[:index])} has no attribute {part!r}")
        value = getattr(value, part)
    return value


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
    @structured_arguments
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
        output_format = output_format_of(args, self.shell.user_ns)
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
                params={**params, **(output_format.request_fields() if output_format is not None else {})},
                stream=not args.no_stream,
                output_var=output_var,
            )
            return
        if args.dry_run:
            fields = output_format.request_fields() if output_format is not None else {}
            request = endpoint.build_request(
                prompt=None if chat else prompt, messages=messages, stream=not args.no_stream, **params, **fields
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
            output_format=output_format,
        )
