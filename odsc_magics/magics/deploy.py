"""``%llm_deploy``: deploy a model (``create``, then wait until ACTIVE) and make it the default target."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments

from odsc_magics.display import show, table_bundle
from odsc_magics.magics._base import LLMMagicsBase, check_var_name, parse_magic_words, usage, usage_errors

__all__ = ["DeployMagics", "deployment_bundle"]


def deployment_bundle(deployment: Any, *, note: str = "") -> dict:
    """A deployment as a small table (name, OCID, state, URL)."""
    rows = [
        ("name", deployment.name),
        ("id", deployment.id),
        ("state", deployment.state),
        ("url", deployment.url),
    ]
    bundle = table_bundle(f"Model deployment {deployment.name}", ["", ""], rows)
    if note:
        bundle = {key: f"{value}\n\n{note}" for key, value in bundle.items()}
    return bundle


@magics_class
class DeployMagics(LLMMagicsBase):
    """The deployment magic; subcommands are routed by name."""

    @line_magic
    @no_var_expand
    @usage_errors
    @magic_arguments()
    @argument("subcommand", choices=["create"], help="create: deploy a model and wait until it is ACTIVE")
    @argument("--model", metavar="M", help="model name from the catalog (or a model OCID)")
    @argument("--shape", metavar="S", help="compute shape, e.g. VM.GPU.A10.1")
    @argument("--name", metavar="N", help="display name of the deployment")
    @argument("--chat", action="store_true", help="serve /v1/chat/completions (default /v1/completions)")
    @argument("--no-wait", action="store_true", help="return once created, without waiting for ACTIVE")
    @argument("-o", "--output", metavar="VAR", help="store the Deployment object in the variable VAR")
    def llm_deploy(self, line: str = "") -> None:
        """Deploy an LLM on OCI Data Science (or the local backend) and make it the default target."""
        args = parse_magic_words(self.llm_deploy, line)
        routes = {"create": self._create}
        routes[args.subcommand](args)

    def _create(self, args: Any) -> None:
        output_var = check_var_name(args.output)
        missing = [flag for flag, value in (("--model", args.model), ("--shape", args.shape)) if not value]
        if missing:
            needed = " and ".join(missing)
            raise UsageError(f"%llm_deploy create needs {needed}\n{usage(self.llm_deploy.parser)}")
        from odsc_magics.deploy import deploy

        deployment = deploy(
            args.model,
            args.shape,
            name=args.name,
            chat=args.chat,
            wait=not args.no_wait,
            progress=True,
            settings=self,
        )
        if output_var:
            self.shell.user_ns[output_var] = deployment
        if deployment.state == "ACTIVE":
            note = "It is now the default target of `%%llm_predict` and `%%llm_chat`."
        else:
            note = f"State {deployment.state}: it serves predictions once ACTIVE."
        show(deployment_bundle(deployment, note=note))
