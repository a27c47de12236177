"""Model deployments on the Data Science control plane: deploy an AQUA-style vLLM deployment, wait, list."""

from __future__ import annotations

import random
import string
import time
from collections.abc import Iterator
from typing import Any

from odsc_magics.config import LLMSettings, current_settings, set_default_target
from odsc_magics.errors import (
    ConfigurationError,
    DeploymentFailedError,
    DeploymentNotActiveError,
    NotFoundError,
    ValidationError,
)

__all__ = ["VLLM_IMAGE", "Deployment", "deploy", "deployments", "get_deployment"]

VLLM_IMAGE = "dsmc://odsc-vllm-serving:0.6.4.post1.2"
SERVED_MODEL_NAME = "odsc-llm"
PORT = 8080
BANDWIDTH_MBPS = 10
MIN_CALL_INTERVAL = 1.0  # at most one control-plane call per second while waiting
MAX_POLL_INTERVAL = 10.0
_TERMINAL_WR = ("SUCCEEDED", "FAILED", "CANCELED")


def _retry_token() -> str:
    return "".join(random.choices(string.ascii_letters + string.digits, k=30))


class _Pacer:
    """Keeps calls at least ``interval`` seconds apart."""

    def __init__(self, interval: float = MIN_CALL_INTERVAL) -> None:
        self.interval = interval
        self._last = 0.0

    def wait(self, at_least: float = 0.0) -> None:
        due = self._last + max(self.interval, at_least)
        now = time.monotonic()
        if self._last and due > now:
            time.sleep(due - now)
        self._last = time.monotonic()


def _context(settings: LLMSettings | None) -> Any:
    from odsc_magics.context import get_context

    return get_context(settings if settings is not None else current_settings())


def _env(raw: Any) -> dict:
    try:
        env = raw.model_deployment_configuration_details.environment_configuration_details
        return dict(env.environment_variables or {})
    except AttributeError:
        return {}


class Deployment:
    """One model deployment: its OCID, display name, lifecycle state and data-plane URL."""

    def __init__(
        self,
        raw: Any,
        *,
        context: Any,
        settings: LLMSettings | None = None,
        work_request_id: str | None = None,
    ) -> None:
        self.context = context
        self.settings = settings
        self.work_request_id = work_request_id
        self._set(raw)

    def _set(self, raw: Any) -> None:
        self.raw = raw
        self.id: str = raw.id
        self.name: str = raw.display_name
        self.state: str = raw.lifecycle_state
        self.url: str = (raw.model_deployment_url or "").rstrip("/")

    def __repr__(self) -> str:
        return f"<Deployment {self.name!r} {self.state} {self.id}>"

    @property
    def is_chat(self) -> bool:
        """True when the deployment serves /v1/chat/completions by default."""
        return _env(self.raw).get("MODEL_DEPLOY_PREDICT_ENDPOINT") == "/v1/chat/completions"

    def to_dict(self) -> dict:
        """The deployment as the service describes it (camelCase JSON)."""
        import oci

        return oci.util.to_dict(self.raw)

    def refresh(self) -> Deployment:
        """Read the deployment again from the control plane."""
        client = self.context.data_science()
        self._set(
            self.context.call("Reading the model deployment", client.get_model_deployment, self.id).data
        )
        return self

    def _work_request_errors(self) -> list[dict]:
        client = self.context.data_science()
        try:
            errors = self.context.call(
                "Reading the work request errors", client.list_work_request_errors, self.work_request_id
            ).data
        except Exception:
            return []
        return [{"code": e.code, "message": e.message} for e in errors]

    def _failed(self, errors: list[dict]) -> DeploymentFailedError:
        detail = "; ".join(e["message"] for e in errors if e.get("message")) or (
            getattr(self.raw, "lifecycle_details", None) or "no details given"
        )
        return DeploymentFailedError(
            f"The model deployment {self.name} ({self.id}) FAILED: {detail}",
            diagnosis=errors,
            hint="Check the shape's capacity and limits, the model and its logs, then deploy again.",
            target=self.id,
        )

    def _poll(self, pacer: _Pacer) -> Iterator[tuple[str, float]]:
        """(status, percent) of the work request, or of the lifecycle state when no work request is known."""
        client = self.context.data_science()
        interval = MIN_CALL_INTERVAL
        while True:
            pacer.wait(interval)
            if self.work_request_id:
                wr = self.context.call(
                    "Reading the work request", client.get_work_request, self.work_request_id
                ).data
                yield wr.status, float(wr.percent_complete or 0.0)
            else:
                self.refresh()
                yield self.state, 100.0 if self.state == "ACTIVE" else 0.0
            interval = min(MAX_POLL_INTERVAL, interval * 1.5)

    def wait(self, *, timeout: float | None = None, progress: bool = True) -> Deployment:
        """Wait until the deployment's work request ends (or, without one, until it is ACTIVE or FAILED)."""
        pacer = _Pacer()
        started = time.monotonic()
        bar = _progress_bar(self.name) if progress else None
        try:
            if self.state == "ACTIVE" and not self.work_request_id:
                return self
            for status, percent in self._poll(pacer):
                if bar is not None:
                    bar.update(max(0.0, min(100.0, percent) - bar.n))
                    bar.set_postfix_str(status, refresh=True)
                if status in _TERMINAL_WR or status in ("ACTIVE", "FAILED", "INACTIVE", "DELETED"):
                    break
                if timeout is not None and time.monotonic() - started > timeout:
                    self.refresh()
                    raise DeploymentNotActiveError(
                        f"The model deployment {self.name} is still {self.state} after {timeout:g} s.",
                        state=self.state,
                        hint="Call wait() again, or look at its progress with `%llm_deploy`.",
                        target=self.id,
                    )
            if self.work_request_id:
                pacer.wait()
                self.refresh()
                if status != "SUCCEEDED":
                    raise self._failed(self._work_request_errors())
            if self.state == "FAILED":
                raise self._failed([])
            return self
        finally:
            if bar is not None:
                bar.close()

    def activate(self, *, wait: bool = True, progress: bool = False) -> Deployment:
        """Activate an INACTIVE deployment; with ``wait``, return once its work request has ended."""
        client = self.context.data_science()
        response = self.context.call(
            "Activating the model deployment", client.activate_model_deployment, self.id
        )
        self.work_request_id = response.headers.get("opc-work-request-id")
        self.context.forget_targets()
        self.refresh()
        return self.wait(progress=progress) if wait else self

    def endpoint(self) -> Any:
        """The data-plane Endpoint of this deployment."""
        from odsc_magics.client import Endpoint

        return Endpoint(
            self.url,
            deployment_id=self.id,
            name=self.name,
            context=self.context,
            settings=self.settings,
            kind="ocid",
        )

    def complete(self, prompt: str, **params: Any) -> Any:
        return self.endpoint().complete(prompt, **params)

    def chat(self, messages: list[dict], **params: Any) -> Any:
        return self.endpoint().chat(messages, **params)

    def stream_complete(self, prompt: str, **params: Any) -> Any:
        return self.endpoint().stream_complete(prompt, **params)

    def stream_chat(self, messages: list[dict], **params: Any) -> Any:
        return self.endpoint().stream_chat(messages, **params)

    def smoke_test(self) -> Any:
        """One tiny prediction (max_tokens 1) on the deployment's own route."""
        endpoint = self.endpoint()
        if self.is_chat:
            return endpoint.chat([{"role": "user", "content": "Hello"}], max_tokens=1)
        return endpoint.complete("Hello", max_tokens=1)


def _progress_bar(name: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=100,
        desc=f"Deploying {name}",
        unit="%",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}",
    )


def _find_model(context: Any, model: str) -> Any:
    """The Model for an OCID or a display name (service catalog, then the compartment's own models)."""
    import oci

    client = context.data_science()
    if model.startswith("ocid1."):
        return context.call("Reading the model", client.get_model, model).data
    if not context.compartment_id:
        raise ConfigurationError(
            f"Cannot look up the model {model!r}: no compartment is known.",
            hint="Set `%config LLMMagics.compartment_id = '...'`, or pass the model OCID.",
        )
    matches = []
    for category in ("SERVICE", "USER"):
        found = context.call(
            f"Listing {category.lower()} models",
            oci.pagination.list_call_get_all_results,
            client.list_models,
            compartment_id=context.compartment_id,
            category=category,
            display_name=model,
        ).data
        matches.extend(m for m in found if m.display_name == model and m.lifecycle_state == "ACTIVE")
    if not matches:
        raise NotFoundError(
            f"No model named {model!r} in the service catalog or compartment {context.compartment_id}.",
            hint="Use a catalog model's exact name (e.g. Mistral-7B-Instruct-v0.3) or a model OCID.",
            target=model,
        )
    if len(matches) > 1:
        listing = "; ".join(f"{m.display_name} {m.id} ({m.category})" for m in matches)
        raise ValidationError(f"{len(matches)} models are named {model!r}: {listing}.", hint="Pass the OCID.")
    return context.call("Reading the model", client.get_model, matches[0].id).data


def _deployment_details(
    context: Any, model: Any, shape: str, name: str, chat: bool, extra_env: dict | None = None
) -> Any:
    from oci.data_science import models as m

    metadata = {item.key: item.value for item in (model.custom_metadata_list or [])}
    env = {
        "PARAMS": f"--served-model-name {SERVED_MODEL_NAME} --seed 42",
        "MODEL_DEPLOY_PREDICT_ENDPOINT": "/v1/chat/completions" if chat else "/v1/completions",
        "BASE_MODEL": metadata.get("artifact_location") or model.display_name,
        "PORT": str(PORT),
        "HEALTH_CHECK_PORT": str(PORT),
        **{str(k): str(v) for k, v in (extra_env or {}).items()},
    }
    tags = {"OCI_AQUA": "active", "aqua_model_name": model.display_name}
    if (model.freeform_tags or {}).get("task"):
        tags["task"] = model.freeform_tags["task"]
    if getattr(model, "category", None) == "SERVICE":
        tags["aqua_service_model"] = f"{model.id}#{model.display_name}"
    return m.CreateModelDeploymentDetails(
        display_name=name,
        description=f"{model.display_name} served by vLLM",
        project_id=context.project_id,
        compartment_id=context.compartment_id,
        freeform_tags=tags,
        model_deployment_configuration_details=m.SingleModelDeploymentConfigurationDetails(
            deployment_type="SINGLE_MODEL",
            model_configuration_details=m.ModelConfigurationDetails(
                model_id=model.id,
                instance_configuration=m.InstanceConfiguration(instance_shape_name=shape),
                scaling_policy=m.FixedSizeScalingPolicy(policy_type="FIXED_SIZE", instance_count=1),
                bandwidth_mbps=BANDWIDTH_MBPS,
            ),
            environment_configuration_details=m.OcirModelDeploymentEnvironmentConfigurationDetails(
                environment_configuration_type="OCIR_CONTAINER",
                image=VLLM_IMAGE,
                server_port=PORT,
                health_check_port=PORT,
                environment_variables=env,
                predict_api_specification="openai",
            ),
        ),
    )


def deploy(
    model: str,
    shape: str,
    *,
    name: str | None = None,
    chat: bool = False,
    wait: bool = True,
    progress: bool = True,
    env: dict | None = None,
    settings: LLMSettings | None = None,
) -> Deployment:
    """Deploy ``model`` (catalog name or OCID) on ``shape`` with the vLLM service container.

    With ``wait`` it returns once ACTIVE, after a one-token smoke test, and makes the deployment the
    default target; raises DeploymentFailedError when the deployment fails. ``env`` adds container
    environment variables.
    """
    if not model or not shape:
        raise ValidationError(
            "deploy() needs a model and a shape.",
            hint="e.g. deploy('Mistral-7B-Instruct-v0.3', 'VM.GPU.A10.1')",
        )
    context = _context(settings)
    if not context.compartment_id or not context.project_id:
        missing = "compartment_id" if not context.compartment_id else "project_id"
        raise ConfigurationError(
            f"No {missing} is known, and a deployment needs one.",
            hint=f"Set `%config LLMMagics.{missing} = '...'` (env ODSC_MAGICS_{missing.upper()}).",
        )
    found = _find_model(context, model)
    details = _deployment_details(context, found, shape, name or found.display_name, chat, env)
    client = context.data_science()
    response = context.call(
        "Creating the model deployment",
        client.create_model_deployment,
        details,
        opc_retry_token=_retry_token(),
    )
    deployment = Deployment(
        response.data,
        context=context,
        settings=settings,
        work_request_id=response.headers.get("opc-work-request-id"),
    )
    if not wait:
        return deployment
    deployment.wait(progress=progress)
    if deployment.state != "ACTIVE":
        raise DeploymentNotActiveError(
            f"The model deployment {deployment.name} ended {deployment.state}.",
            state=deployment.state,
            target=deployment.id,
        )
    deployment.smoke_test()
    set_default_target(deployment.id)
    return deployment


def deployments(*, settings: LLMSettings | None = None) -> list[Deployment]:
    """The model deployments of the compartment (and project, when one is set) that are not DELETED."""
    import oci

    context = _context(settings)
    if not context.compartment_id:
        raise ConfigurationError(
            "No compartment is known to list deployments in.",
            hint="Set `%config LLMMagics.compartment_id = '...'`.",
        )
    client = context.data_science()
    kwargs = {"project_id": context.project_id} if context.project_id else {}
    found = context.call(
        "Listing model deployments",
        oci.pagination.list_call_get_all_results,
        client.list_model_deployments,
        compartment_id=context.compartment_id,
        **kwargs,
    ).data
    return [
        Deployment(d, context=context, settings=settings) for d in found if d.lifecycle_state != "DELETED"
    ]


def get_deployment(id_or_name: str, *, settings: LLMSettings | None = None) -> Deployment:
    """The deployment with this OCID, or the one non-DELETED deployment with this display name."""
    from odsc_magics.targets import resolve_target

    context = _context(settings)
    resolved = resolve_target(id_or_name, context)
    if not resolved.deployment_id:
        raise ValidationError(f"{id_or_name} does not name a model deployment OCID.", target=id_or_name)
    client = context.data_science()
    raw = context.call(
        "Reading the model deployment", client.get_model_deployment, resolved.deployment_id
    ).data
    return Deployment(raw, context=context, settings=settings)
