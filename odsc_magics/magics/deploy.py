"""``%llm_deploy``: the deploy form, and subcommands to create, list, watch, use, log and manage deployments."""

from __future__ import annotations

import argparse
import shlex
from collections import deque
from collections.abc import Iterable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class, no_var_expand

from odsc_magics.display import show, table_bundle
from odsc_magics.errors import DeploymentFailedError
from odsc_magics.magics._base import LLMMagicsBase, check_var_name, usage_errors
from odsc_magics.markup import html_text, markdown_code_block, markdown_message, markdown_text

__all__ = ["DeployMagics", "Table", "build_parser", "deployment_bundle"]

FOLLOW_WINDOW = 1000  # `logs --follow` shows (and keeps) at most the newest this many records


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (with the usage line) instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}\n{self.format_usage().strip()}")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise UsageError(message or self.format_help())


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``%llm_deploy`` and its subcommands."""
    parser = _Parser(prog="%llm_deploy", description="Deploy and manage LLM model deployments.")
    sub = parser.add_subparsers(dest="subcommand", parser_class=_Parser, metavar="SUBCOMMAND")

    create = sub.add_parser("create", help="deploy a model, wait until ACTIVE, smoke-test it, make it the default")
    create.add_argument("--model", metavar="M", help="catalog or own model name, or a model OCID")
    create.add_argument("--shape", metavar="S", help="compute shape, e.g. VM.GPU.A10.1")
    create.add_argument("--name", metavar="N", help="display name (default: the model's name)")
    create.add_argument("--instances", type=int, default=1, metavar="K", help="instance count (default 1)")
    create.add_argument("--max-model-len", type=int, metavar="L", help="vLLM --max-model-len (context tokens)")
    create.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="FLAG",
        help="a vLLM flag, e.g. --param --enforce-eager or --param '--max-num-seqs 8' (repeatable)",
    )
    create.add_argument("--env", action="append", default=[], metavar="K=V", help="container env var (repeatable)")
    create.add_argument("--bandwidth", type=int, default=10, metavar="MBPS", help="load balancer Mbps (default 10)")
    create.add_argument("--log-group", metavar="G", help="log group (name or OCID) of the access/predict logs")
    create.add_argument("--access-log", metavar="LOG", help="access log (name or OCID; default: 'access' of G)")
    create.add_argument("--predict-log", metavar="LOG", help="predict log (name or OCID; default: 'predict' of G)")
    create.add_argument("--chat", action="store_true", help="serve /v1/chat/completions (default /v1/completions)")
    create.add_argument("--no-wait", action="store_true", help="return once created, without waiting")
    create.add_argument("--no-fit-check", action="store_true", help="skip the GPU-memory fit check")
    create.add_argument("-o", "--output", metavar="VAR", help="store the Deployment in the variable VAR")

    listing = sub.add_parser("list", help="the deployments: name, state, shape, model, created, URL")
    listing.add_argument("--all", action="store_true", help="include DELETED deployments")
    for name, text in (
        ("status", "state, details and (when FAILED) the diagnosis; watches a deployment in progress"),
        ("use", "make a deployment the default target of %%llm_predict and %%llm_chat"),
        ("activate", "start an INACTIVE deployment"),
        ("deactivate", "stop an ACTIVE deployment (no compute billed while INACTIVE)"),
        ("delete", "delete a deployment (an ACTIVE one only with --yes)"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("target", metavar="TARGET", help="deployment OCID or display name")
        if name == "delete":
            command.add_argument("--yes", action="store_true", help="confirm deleting an ACTIVE deployment")
        if name in ("activate", "deactivate", "delete"):
            command.add_argument("--no-wait", action="store_true", help="return once the request is accepted")
    logs = sub.add_parser("logs", help="the access and predict logs of a deployment, newest last")
    logs.add_argument("target", metavar="TARGET", help="deployment OCID or display name")
    logs.add_argument("--tail", type=int, default=50, metavar="N", help="how many records (default 50)")
    logs.add_argument("--kind", choices=["all", "access", "predict"], default="all", help="which log")
    logs.add_argument("--follow", action="store_true", help="keep showing new records until interrupted")
    models = sub.add_parser("models", help="the models you can deploy (service catalog and your own)")
    models.add_argument("--search", metavar="TEXT", help="only models whose name has every word of TEXT")
    shapes = sub.add_parser(
        "shapes", help="the region's shapes, with the fit of a model on each and what each it fits delivers and costs"
    )
    shapes.add_argument("--model", metavar="M", help="model to check the fit of and estimate on each shape")
    shapes.add_argument(
        "--max-model-len", type=int, metavar="L", help="context length for the fit check and the estimates"
    )
    return parser


PARSER = build_parser()


def _argv(line: str) -> list[str]:
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"{exc}\n{PARSER.format_usage().strip()}") from None
    # `--param --enforce-eager`: the value of --param is taken verbatim, even when it starts with "-".
    out: list[str] = []
    words_iter = iter(words)
    for word in words_iter:
        if word == "--param":
            value = next(words_iter, None)
            if value is None:
                raise UsageError("--param needs a vLLM flag, e.g. --param --enforce-eager")
            out.append(f"--param={value}")
        else:
            out.append(word)
    return out


class Table:
    """A titled table shown as HTML, Markdown and plain text; ``rows`` keeps the values.

    Every value is shown as text; in the ``note`` (text we write) `backticked` spans show as code.
    """

    def __init__(self, title: str, header: Iterable[str], rows: Iterable[Iterable[Any]], note: str = "") -> None:
        self.title = title
        self.header = [str(h) for h in header]
        self.rows = [["" if c is None else str(c) for c in row] for row in rows]
        self.note = note

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return self._repr_mimebundle_()["text/plain"]

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict:
        bundle = table_bundle(self.title, self.header, self.rows)
        head = "".join(f"<th>{html_text(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{html_text(c)}</td>" for c in row) + "</tr>" for row in self.rows)
        bundle["text/html"] = (
            f"<b>{html_text(self.title)}</b><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )
        if self.note:
            bundle["text/plain"] += f"\n{self.note}"
            bundle["text/markdown"] += f"\n\n{markdown_message(self.note)}"
            bundle["text/html"] += f"<p>{html_text(self.note)}</p>"
        return bundle


def deployment_bundle(deployment: Any, *, note: str = "") -> dict:
    """A deployment as a small table (name, OCID, state, shape, model, URL)."""
    return Table(f"Model deployment {deployment.name}", ["", ""], _status_rows(deployment), note)._repr_mimebundle_()


def _status_rows(deployment: Any) -> list[tuple[str, Any]]:
    rows = [
        ("name", deployment.name),
        ("id", deployment.id),
        ("state", deployment.state),
        ("url", deployment.url),
    ]
    for label, attr in (("shape", "shape"), ("model", "model_name"), ("created", "time_created")):
        value = getattr(deployment, attr, None)
        if value:
            rows.append((label, value))
    details = getattr(deployment, "lifecycle_details", None)
    if details:
        rows.append(("details", details))
    return rows


def _show_diagnosis(diagnosis: Any) -> None:
    if diagnosis is not None and hasattr(diagnosis, "to_text"):
        show({"text/markdown": diagnosis._repr_markdown_(), "text/plain": diagnosis.to_text()})


@magics_class
class DeployMagics(LLMMagicsBase):
    """The deployment magic; subcommands are routed by name."""

    @line_magic
    @no_var_expand
    @usage_errors
    def llm_deploy(self, line: str = "") -> Any:
        """Deploy an LLM on OCI Data Science (or the local backend) and manage deployments.

        %llm_deploy                      the deploy form (returns it: form.deploy(), form.state, ...)
        %llm_deploy create --model M --shape S [--name N] [--instances K] [--max-model-len L]
                    [--param FLAG]... [--env K=V]... [--log-group G [--access-log A] [--predict-log P]]
                    [--chat] [--no-wait] [--no-fit-check] [-o VAR]
        %llm_deploy list [--all]         name, state, shape, model, created, URL
        %llm_deploy status TARGET        state and details; watches one in progress; diagnoses a FAILED one
        %llm_deploy use TARGET           the default target of %%llm_predict / %%llm_chat
        %llm_deploy logs TARGET [--tail N] [--kind access|predict] [--follow]
        %llm_deploy activate TARGET | deactivate TARGET | delete TARGET [--yes]
        %llm_deploy models [--search TEXT]
        %llm_deploy shapes [--model M] [--max-model-len L]

        TARGET is a deployment OCID or display name. `%llm_deploy SUBCOMMAND -h` shows a subcommand's options.
        """
        if not line.strip():
            return self._form()
        args = PARSER.parse_args(_argv(line))
        return getattr(self, f"_{args.subcommand}")(args)

    # ---------------------------------------------------------------------------------------------- api

    def _api(self) -> Any:
        from odsc_magics import control_plane

        return control_plane

    def _get(self, target: str) -> Any:
        return self._api().get_deployment(target, settings=self)

    def _context(self) -> Any:
        from odsc_magics.context import get_context

        return get_context(self)

    # ------------------------------------------------------------------------------------------- create

    def _log_ids(self, args: Any) -> dict:
        if not args.log_group:
            if args.access_log or args.predict_log:
                raise UsageError("--access-log and --predict-log need --log-group")
            return {}
        from odsc_magics.logs import resolve_log_ids

        return resolve_log_ids(
            args.log_group, access_log=args.access_log, predict_log=args.predict_log, context=self._context()
        )

    def _create(self, args: Any) -> None:
        output_var = check_var_name(args.output, self.shell.user_ns)
        missing = [flag for flag, value in (("--model", args.model), ("--shape", args.shape)) if not value]
        if missing:
            raise UsageError(
                f"%llm_deploy create needs {' and '.join(missing)}\n"
                "Usage: %llm_deploy create --model M --shape S [options] (`%llm_deploy models`, `%llm_deploy shapes`)"
            )
        env = {}
        for item in args.env:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise UsageError(f"--env needs K=V, not {item!r}")
            env[key.strip()] = value
        try:
            deployment = self._api().deploy(
                args.model,
                args.shape,
                name=args.name,
                instances=args.instances,
                max_model_len=args.max_model_len,
                vllm_params=args.param or None,
                env=env or None,
                bandwidth_mbps=args.bandwidth,
                chat=args.chat,
                wait=not args.no_wait,
                progress=True,
                check_fit=not args.no_fit_check,
                settings=self,
                **self._log_ids(args),
            )
        except DeploymentFailedError as err:
            _show_diagnosis(err.diagnosis)
            raise
        if output_var:
            self.shell.user_ns[output_var] = deployment
        if deployment.state == "ACTIVE" and deployment.is_embedding:
            note = "It serves embeddings and is now the default target of `embed_frame(df, column)` (`df.llm.embed`)."
        elif deployment.state == "ACTIVE":
            note = "It is now the default target of `%%llm_predict` and `%%llm_chat`."
        else:
            status = f"%llm_deploy status {shlex.quote(deployment.name)}"
            note = f"State {deployment.state}: `{status}` watches it until it is ACTIVE."
        show(deployment_bundle(deployment, note=note))

    # ---------------------------------------------------------------------------------- other commands

    def _list(self, args: Any) -> Table:
        from odsc_magics.config import default_target

        found = self._api().deployments(include_deleted=args.all, settings=self)
        current = default_target(self)
        rows = [
            (
                ("* " if current in (d.id, d.name) else "") + d.name,
                d.state,
                d.shape,
                d.model_name,
                d.time_created,
                d.url,
            )
            for d in found
        ]
        note = "* the default target" if any(r[0].startswith("* ") for r in rows) else ""
        if not rows:
            note = "No model deployments yet: `%llm_deploy create --model M --shape S` or `%llm_deploy`."
        return Table(
            f"Model deployments: {len(rows)}", ["name", "state", "shape", "model", "created", "URL"], rows, note
        )

    def _status(self, args: Any) -> None:
        deployment = self._get(args.target)
        if deployment.state in ("CREATING", "UPDATING", "DELETING"):
            try:
                deployment.wait(progress=True)
            except DeploymentFailedError as err:
                show(deployment_bundle(deployment))
                _show_diagnosis(err.diagnosis)
                raise
        show(deployment_bundle(deployment))
        if deployment.state == "FAILED":
            _show_diagnosis(deployment.diagnose())

    def _use(self, args: Any) -> None:
        from odsc_magics.config import set_default_target

        deployment = self._get(args.target)
        set_default_target(deployment.id)
        note = "It is now the default target of `%%llm_predict` and `%%llm_chat`."
        if deployment.state != "ACTIVE":
            note += f" It is {deployment.state}: predictions need it ACTIVE."
        show(deployment_bundle(deployment, note=note))

    def _activate(self, args: Any) -> None:
        deployment = self._get(args.target).activate(wait=not args.no_wait, progress=True)
        show(deployment_bundle(deployment))

    def _deactivate(self, args: Any) -> None:
        deployment = self._get(args.target).deactivate(wait=not args.no_wait, progress=True)
        activate = f"%llm_deploy activate {shlex.quote(deployment.name)}"
        show(deployment_bundle(deployment, note=f"`{activate}` starts it again."))

    def _delete(self, args: Any) -> None:
        deployment = self._get(args.target).delete(wait=not args.no_wait, force=args.yes, progress=True)
        show(deployment_bundle(deployment))

    def _logs(self, args: Any) -> None:
        deployment = self._get(args.target)
        if args.tail < 1:
            raise UsageError("--tail must be at least 1")
        if args.follow:
            self._follow(deployment, args)
            return
        records = deployment.logs(tail=args.tail, kind=args.kind)
        show(_log_bundle(deployment.name, records))

    def _follow(self, deployment: Any, args: Any) -> None:
        from IPython.display import display

        records: deque[dict] = deque(maxlen=FOLLOW_WINDOW)
        handle = display(_log_bundle(deployment.name, records, following=True), raw=True, display_id=True)
        try:
            for record in deployment.follow_logs(tail=args.tail, kind=args.kind):
                records.append(record)
                handle.update(_log_bundle(deployment.name, records, following=True), raw=True)
        except KeyboardInterrupt:
            handle.update(_log_bundle(deployment.name, records), raw=True)
            # Interrupted on purpose, but the cell still fails as interrupted so Run All stops here.
            raise KeyboardInterrupt(f"Stopped following the logs of {deployment.name}.") from None

    def _models(self, args: Any) -> Table:
        from odsc_magics.catalog import list_models

        found = list_models(search=args.search, settings=self)
        rows = []
        for m in found:
            spec = m.spec
            rows.append(
                (
                    m.name,
                    "service" if m.category == "SERVICE" else "own",
                    m.task or "",
                    m.organization or "",
                    f"{spec.parameters_b:g} B" if spec else "?",
                    f"{spec.context:,}" if spec and spec.context else "",
                    m.id,
                )
            )
        title = f"Models: {len(rows)}" + (f" matching {args.search!r}" if args.search else "")
        return Table(title, ["name", "source", "task", "organization", "parameters", "context", "OCID"], rows)

    def _shapes(self, args: Any) -> Table:
        from odsc_magics.catalog import list_shapes
        from odsc_magics.config import resolve
        from odsc_magics.prices import READ_ON, format_usd
        from odsc_magics.shape_economics import workload_words
        from odsc_magics.sizing import format_gb

        found = list_shapes(model=args.model, max_model_len=args.max_model_len, settings=self)
        header = ["shape", "GPUs", "GPU", "GPU memory GB", "CPU memory GB"]
        estimated = [item.estimate for item in found if item.estimate is not None]
        if args.model:
            header.append(f"fit of {args.model}")
        if estimated:
            length = f"{estimated[0].max_model_len:,}" if args.max_model_len is None else f"{args.max_model_len:,}"
            header += [
                f"sequences at {length} tokens",
                "output tok/s, 1 request",
                "output tok/s, saturated",
                "USD/hour",
                "USD/M output tokens",
            ]
        rows = []
        for item in found:
            s = item.shape
            row = [
                s.name,
                s.gpu_count or "",
                s.gpu_model or "",
                format_gb(s.gpu_memory_gb) if s.gpu_memory_gb is not None else "",
                format_gb(s.cpu_memory_gb) if s.cpu_memory_gb is not None else "",
            ]
            if args.model:
                row.append(item.fit_label or "? size unknown")
            if estimated:
                e = item.estimate
                row += (
                    [
                        f"{e.sequences_at_max_len:,}",
                        f"≈ {e.output_tok_s_1:,.0f}",
                        f"≈ {e.output_tok_s_saturated:,.0f} (at {e.saturation_concurrency:,} requests)",
                        format_usd(e.usd_per_hour),
                        format_usd(e.usd_per_million_output),
                    ]
                    if e is not None
                    else [""] * 5
                )
            rows.append(row)
        title = f"Shapes offered in the region: {len(rows)}"
        note = ""
        if estimated:
            title += f"; estimates for {args.model} at {workload_words(estimated[0].max_model_len)}"
            note = (
                "Estimates for one instance with vLLM's defaults (max-num-seqs 256), from the model's size and "
                "the GPUs' datasheets, the same physics as `odsc-magics local`; real throughput varies. "
                f"Prices: OCI pay-as-you-go list prices read {READ_ON} (odsc_magics.prices)"
            )
            overrides, source = resolve("gpu_prices", settings=self)
            note += f", with {source} gpu_prices for {', '.join(overrides)}." if overrides else "."
        return Table(title, header, rows, note=note)

    # --------------------------------------------------------------------------------------------- form

    def _form(self) -> Any:
        from odsc_magics.display import in_kernel

        if not in_kernel(self.shell):
            raise UsageError(
                "The deploy form needs a notebook front end (JupyterLab, Jupyter Notebook, VS Code).\n"
                "From a terminal: `%llm_deploy create --model MODEL --shape SHAPE` "
                "(`%llm_deploy models` lists the models, `%llm_deploy shapes --model MODEL` the shapes that fit)."
            )
        from odsc_magics.catalog import list_models, region_shapes
        from odsc_magics.logs import list_log_groups, list_logs
        from odsc_magics.prices import gpu_prices
        from odsc_magics.widgets.deploy_form import DeployForm, ModelChoice

        context = self._context()
        models = [ModelChoice(m.id, m.name, metadata=m.metadata or None) for m in list_models(context=context)]
        shapes = region_shapes(context=context)
        api = self._api()

        def on_deploy(request: Any, sink: Any) -> Any:
            return api.deploy(
                request.model_id,
                request.shape,
                name=request.name,
                instances=request.instance_count,
                max_model_len=request.max_model_len,
                vllm_params=request.vllm_flags or None,
                bandwidth_mbps=request.bandwidth_mbps,
                log_group_id=request.log_group_id,
                access_log_id=request.access_log_id,
                predict_log_id=request.predict_log_id,
                chat=request.chat,
                progress=False,
                on_progress=sink.update,
                settings=self,
            )

        form = DeployForm(
            models,
            shapes,
            on_deploy=on_deploy,
            log_groups=lambda: list_log_groups(context=context),
            logs=lambda group: list_logs(group, context=context),
            prices=gpu_prices(self),
        )
        form.show(self.shell)
        return form


def _log_bundle(name: str, records: list[dict], *, following: bool = False) -> dict:
    lines = [f"{r.get('time') or ''}  {r['kind']:<7}  {r['message']}" for r in records]
    title = f"Logs of {name}: {len(records)} records, newest last"
    if following:
        title += " (following; interrupt the kernel to stop)"
    if not lines:
        lines = ["(no records yet)"]
    text = "\n".join(lines)
    markdown = f"**{markdown_text(title)}**\n\n{markdown_code_block(text)}"
    return {"text/plain": f"{title}\n{text}", "text/markdown": markdown}
