"""Model deployments on the Data Science control plane: deploy AQUA-style vLLM deployments, watch, manage."""

from __future__ import annotations

import contextlib
import random
import shlex
import string
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from odsc_magics import arguments
from odsc_magics.config import LLMSettings, default_target, set_default_target
from odsc_magics.context import get_context
from odsc_magics.errors import (
    ConfigurationError,
    DeploymentFailedError,
    DeploymentNotActiveError,
    NotFoundError,
    OdscMagicsError,
    ValidationError,
)
from odsc_magics.vllm_container import (
    BANDWIDTH_MBPS,
    BASE_PARAMS,
    PORT,
    RESTRICTED_FLAGS,
    SERVED_MODEL_NAME,
    VLLM_IMAGE,
    deployment_details,
)
from odsc_magics.vllm_container import max_model_len as params_max_model_len

__all__ = [
    "RESTRICTED_FLAGS",
    "VLLM_IMAGE",
    "Deployment",
    "build_params",
    "deploy",
    "deployments",
    "get_deployment",
]

MIN_CALL_INTERVAL = 1.0  # at most one control-plane call per second while waiting
MAX_POLL_INTERVAL = 10.0
_TERMINAL_WR = ("SUCCEEDED", "FAILED", "CANCELED")
_TRANSITIONAL = ("CREATING", "UPDATING", "DELETING")

ProgressCallback = Callable[[float | None, str | None, str | None], Any]


def _retry_token() -> str:
    return "".join(random.choices(string.ascii_letters + string.digits, k=30))


class _Pacer:
    """Keeps calls at least ``interval`` seconds apart (counting from its creation: a call just happened)."""

    def __init__(self, interval: float = MIN_CALL_INTERVAL) -> None:
        self.interval = interval
        self._last = time.monotonic()

    def wait(self, at_least: float = 0.0) -> None:
        due = self._last + max(self.interval, at_least)
        now = time.monotonic()
        if self._last and due > now:
            time.sleep(due - now)
        self._last = time.monotonic()


def _get(obj: Any, *path: str) -> Any:
    for name in path:
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def _env(raw: Any) -> dict:
    env = _get(raw, "model_deployment_configuration_details", "environment_configuration_details")
    return dict(getattr(env, "environment_variables", None) or {})


def build_params(max_model_len: int | None = None, vllm_params: str | Sequence[str] | None = None) -> str:
    """The container's ``PARAMS``: the fixed flags, ``--max-model-len`` and the user's vLLM flags.

    Raises ValidationError for a flag the serving container sets itself, or a max model length given twice.
    """
    arguments.strings("vllm_params", vllm_params)
    arguments.whole("max_model_len", max_model_len, minimum=1, optional=True)
    chunks = [vllm_params] if isinstance(vllm_params, str) else list(vllm_params or [])
    flags: list[str] = []
    for chunk in chunks:
        try:
            flags.extend(shlex.split(chunk))
        except ValueError as exc:
            raise ValidationError(f"The vLLM flags {chunk!r} cannot be parsed: {exc}.") from None
    for token in flags:
        name = token.split("=", 1)[0]
        if name in RESTRICTED_FLAGS:
            raise ValidationError(
                f"The vLLM flag {name} cannot be set: the serving container sets it.",
                hint=f"Remove {name}; the container serves the model as {SERVED_MODEL_NAME!r} on port {PORT}.",
                target=name,
            )
    if max_model_len is not None and any(t.split("=", 1)[0] == "--max-model-len" for t in flags):
        raise ValidationError(
            "--max-model-len is given twice (as max_model_len and in the vLLM flags).", hint="Give it once."
        )
    parts = [BASE_PARAMS]
    if max_model_len:
        parts.append(f"--max-model-len {max_model_len}")
    parts.extend(shlex.quote(f) for f in flags)
    return " ".join(parts)


class Deployment:
    """One model deployment: identity, state and URL, lifecycle actions, logs, and its endpoint."""

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
        model_config = _get(raw, "model_deployment_configuration_details", "model_configuration_details")
        self.shape: str | None = _get(model_config, "instance_configuration", "instance_shape_name")
        self.model_id: str | None = getattr(model_config, "model_id", None)
        self.instances: int | None = _get(model_config, "scaling_policy", "instance_count")
        self.model_name: str | None = (raw.freeform_tags or {}).get("aqua_model_name")
        from odsc_magics.logs import _rfc3339

        self.time_created: str | None = _rfc3339(getattr(raw, "time_created", None))
        self.lifecycle_details: str | None = getattr(raw, "lifecycle_details", None)
        self._full = hasattr(raw, "lifecycle_details")  # summaries from a listing lack it

    def __repr__(self) -> str:
        return f"<Deployment {self.name!r} {self.state} {self.id}>"

    @property
    def is_chat(self) -> bool:
        """True when the deployment serves /v1/chat/completions by default."""
        return _env(self.raw).get("MODEL_DEPLOY_PREDICT_ENDPOINT") == "/v1/chat/completions"

    @property
    def is_embedding(self) -> bool:
        """True when the deployment serves /v1/embeddings by default (an embedding model)."""
        from odsc_magics.embedding_models import EMBEDDINGS_ROUTE

        return _env(self.raw).get("MODEL_DEPLOY_PREDICT_ENDPOINT") == EMBEDDINGS_ROUTE

    @property
    def max_model_len(self) -> int | None:
        return params_max_model_len(_env(self.raw).get("PARAMS", ""))

    def to_dict(self) -> dict:
        """The deployment as JSON-able data (what the JupyterLab panel shows)."""
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "url": self.url,
            "shape": self.shape,
            "model": self.model_name,
            "model_id": self.model_id,
            "created": self.time_created,
            "chat": self.is_chat,
            "lifecycle_details": self.lifecycle_details,
        }

    def _repr_markdown_(self) -> str:
        from odsc_magics.display import table_bundle

        rows = [(k, "" if v is None else v) for k, v in self.to_dict().items()]
        return table_bundle(f"Model deployment {self.name}", ["", ""], rows)["text/markdown"]

    # ------------------------------------------------------------------------------------ control plane

    def _client(self) -> Any:
        return self.context.data_science()

    def refresh(self) -> Deployment:
        """Read the deployment again from the control plane."""
        raw = self.context.call("Reading the model deployment", self._client().get_model_deployment, self.id).data
        self._set(raw)
        return self

    def _latest_work_request(self) -> str | None:
        """The newest work request of this deployment (to watch one started elsewhere)."""
        if not self.context.compartment_id:
            return None
        found = self.context.call(
            "Listing the deployment's work requests",
            self._client().list_work_requests,
            compartment_id=self.context.compartment_id,
            resource_id=self.id,
            sort_by="timeAccepted",
            sort_order="DESC",
            limit=5,
        ).data
        found = sorted(found, key=lambda w: w.time_accepted, reverse=True)
        return found[0].id if found else None

    def _last_log_message(self) -> str | None:
        logs = self.context.call(
            "Reading the work request logs", self._client().list_work_request_logs, self.work_request_id
        ).data
        return logs[-1].message if logs else None

    def _work_request_errors(self, work_request_id: str | None = None) -> list[dict]:
        work_request_id = work_request_id or self.work_request_id
        if not work_request_id:
            return []
        errors = self.context.call(
            "Reading the work request errors", self._client().list_work_request_errors, work_request_id
        ).data
        return [{"code": e.code, "message": e.message} for e in errors]

    def wait(
        self,
        *,
        timeout: float | None = None,
        progress: bool = True,
        on_progress: ProgressCallback | None = None,
    ) -> Deployment:
        """Follow the deployment's work request until it ends; raise DeploymentFailedError if it failed.

        Polls with backoff (1 s growing to 10 s; never more than one control-plane call a second), showing
        percent complete and the work request's last log message in a progress bar (``progress``) and
        through ``on_progress(percent, state, message)``. Interrupting leaves the deployment as it is.
        """
        arguments.number("timeout", timeout, minimum=0, optional=True)
        bar = None
        try:
            if not self.work_request_id:
                if self.state == "FAILED":
                    raise self._failure(self._work_request_errors(self._latest_work_request()))
                if self.state not in _TRANSITIONAL:
                    return self
                self.work_request_id = self._latest_work_request()
                if not self.work_request_id:
                    return self
            bar = _progress_bar(self.name) if progress else None
            self._follow(bar, on_progress, timeout)
            return self
        except KeyboardInterrupt:
            raise KeyboardInterrupt(
                f"Stopped watching {self.name} ({self.id}); the deployment itself goes on. "
                f"Resume watching with `%llm_deploy status {shlex.quote(self.name)}` or Deployment.wait()."
            ) from None
        finally:
            if bar is not None:
                bar.close()

    def _follow(self, bar: Any, on_progress: ProgressCallback | None, timeout: float | None) -> None:
        pacer = _Pacer()
        client = self._client()
        started = time.monotonic()
        interval = MIN_CALL_INTERVAL
        shown_percent: float | None = None
        message: str | None = None
        transitional = self.state
        while True:
            pacer.wait(interval)
            work_request = self.context.call(
                "Reading the work request", client.get_work_request, self.work_request_id
            ).data
            status = work_request.status
            percent = float(work_request.percent_complete or 0.0)
            if status not in _TERMINAL_WR and percent != shown_percent:
                pacer.wait()
                message = self._last_log_message() or message
            shown_percent = percent
            _report(bar, on_progress, percent, transitional if status not in _TERMINAL_WR else status, message)
            if status in _TERMINAL_WR:
                break
            if timeout is not None and time.monotonic() - started > timeout:
                raise DeploymentNotActiveError(
                    f"The model deployment {self.name} is still {self.state} after {timeout:g} s.",
                    state=self.state,
                    hint=f"Keep watching with Deployment.wait() or `%llm_deploy status {shlex.quote(self.name)}`.",
                    target=self.id,
                )
            interval = min(MAX_POLL_INTERVAL, interval * 1.5)
        pacer.wait()
        try:
            self.refresh()
        except NotFoundError:
            if work_request.operation_type != "MODEL_DEPLOYMENT_DELETE":
                raise
            self.state = "DELETED"
        _report(bar, on_progress, 100.0 if status == "SUCCEEDED" else shown_percent, self.state, message)
        if status != "SUCCEEDED":
            pacer.wait()
            raise self._failure(self._work_request_errors())

    def _failure(self, errors: list[dict]) -> DeploymentFailedError:
        diagnosis = self._diagnosis(errors)
        detail = "; ".join(e["message"] for e in errors if e.get("message")) or (
            self.lifecycle_details or "no details given"
        )
        error = DeploymentFailedError(
            f"The model deployment {self.name} ({self.id}) FAILED: {detail}",
            diagnosis=diagnosis,
            hint=f"{diagnosis.summary} Next step: {diagnosis.next_step}",
            target=self.id,
        )
        error.work_request_errors = errors  # type: ignore[attr-defined]
        return error

    def _diagnosis(self, errors: list[dict]) -> Any:
        from odsc_magics.catalog import model_metadata, region_shapes
        from odsc_magics.diagnosis import diagnose
        from odsc_magics.sizing import model_spec_from

        lines: list[str] = []
        with contextlib.suppress(OdscMagicsError):
            lines = [r["message"] for r in self.logs(tail=50, kind="predict")]
        spec, shapes = None, None
        try:
            model = self.context.call("Reading the model", self._client().get_model, self.model_id).data
            spec = model_spec_from(model.display_name, model_metadata(model))
        except (OdscMagicsError, AttributeError):
            spec = model_spec_from(self.model_name) if self.model_name else None
        try:
            shapes = region_shapes(context=self.context)
        except OdscMagicsError:
            shapes = None
        return diagnose(
            state=self.state,
            work_request_errors=errors,
            log_lines=lines,
            shape=self.shape,
            model=spec,
            available_shapes=shapes,
            max_model_len=self.max_model_len,
            name=self.name,
        )

    def diagnose(self) -> Any:
        """Why a FAILED deployment failed (a ``Diagnosis``: summary, next step, evidence); None otherwise."""
        if not self._full or self.state in _TRANSITIONAL:
            self.refresh()
        if self.state != "FAILED":
            return None
        return self._diagnosis(self._work_request_errors(self.work_request_id or self._latest_work_request()))

    def _act(self, what: str, method: Callable[..., Any], wait: bool, progress: bool, on_progress: Any) -> Deployment:
        response = self.context.call(what, method, self.id)
        self.work_request_id = response.headers.get("opc-work-request-id")
        self.context.forget_targets()
        self.refresh()
        if wait:
            self.wait(progress=progress, on_progress=on_progress)
        return self

    def activate(self, *, wait: bool = True, progress: bool = False, on_progress: Any = None) -> Deployment:
        """Start an INACTIVE deployment again; with ``wait``, return once it is ACTIVE."""
        self.refresh()
        if self.state == "ACTIVE":
            raise ValidationError(
                f"The model deployment {self.name} is already ACTIVE.",
                hint="Nothing to do: it serves predictions. "
                f"`%llm_deploy deactivate {shlex.quote(self.name)}` stops it.",
                target=self.id,
            )
        if self.state != "INACTIVE":
            raise ValidationError(
                f"The model deployment {self.name} is {self.state}; only an INACTIVE one can be activated.",
                hint=_state_hint(self.state, self.name),
                target=self.id,
            )
        return self._act(
            "Activating the model deployment", self._client().activate_model_deployment, wait, progress, on_progress
        )

    def deactivate(self, *, wait: bool = True, progress: bool = False, on_progress: Any = None) -> Deployment:
        """Stop an ACTIVE deployment (no compute is billed while INACTIVE); ``activate()`` starts it again."""
        self.refresh()
        if self.state == "INACTIVE":
            raise ValidationError(
                f"The model deployment {self.name} is already INACTIVE.",
                hint=f"`%llm_deploy activate {shlex.quote(self.name)}` starts it again.",
                target=self.id,
            )
        if self.state != "ACTIVE":
            raise ValidationError(
                f"The model deployment {self.name} is {self.state}; only an ACTIVE one can be deactivated.",
                hint=_state_hint(self.state, self.name),
                target=self.id,
            )
        return self._act(
            "Deactivating the model deployment",
            self._client().deactivate_model_deployment,
            wait,
            progress,
            on_progress,
        )

    def delete(
        self, *, wait: bool = True, force: bool = False, progress: bool = False, on_progress: Any = None
    ) -> Deployment:
        """Delete the deployment; an ACTIVE one only with ``force=True`` (``--yes``)."""
        self.refresh()
        if self.state in ("DELETED", "DELETING"):
            raise ValidationError(f"The model deployment {self.name} is already {self.state}.", target=self.id)
        if self.state == "ACTIVE" and not force:
            raise ValidationError(
                f"The model deployment {self.name} is ACTIVE; deleting it ends its endpoint.",
                hint=f"Confirm with `%llm_deploy delete {shlex.quote(self.name)} --yes` (delete(force=True)), "
                f"or deactivate it first.",
                target=self.id,
            )
        if default_target(self.settings) == self.id:
            set_default_target(None)
        return self._act(
            "Deleting the model deployment", self._client().delete_model_deployment, wait, progress, on_progress
        )

    # ---------------------------------------------------------------------------------------------- logs

    def logs(self, *, tail: int = 50, since: Any = None, kind: str = "all") -> list[dict]:
        """The newest ``tail`` access/predict log records, oldest first: ``{"time", "kind", "message", "id"}``.

        ``since``: a datetime, an RFC3339 string or a timedelta (default: since the deployment was created).
        """
        from odsc_magics.logs import deployment_log_refs, search_deployment_logs

        arguments.whole("tail", tail, minimum=1)
        if kind not in ("all", "access", "predict"):
            raise ValidationError(f"kind must be 'all', 'access' or 'predict', not {kind!r}.")
        if not self._full:
            self.refresh()
        refs = deployment_log_refs(self.raw)
        if not refs:
            raise ValidationError(
                f"The model deployment {self.name} has no logs configured.",
                hint="Deploy with a log group and its access/predict logs (`%llm_deploy create ... --log-group G`, "
                "or deploy(log_group_id=..., access_log_id=..., predict_log_id=...)).",
                target=self.id,
            )
        refs = [r for r in refs if kind in ("all", r.kind)]
        if not refs:
            raise ValidationError(f"The model deployment {self.name} has no {kind} log configured.", target=self.id)
        return search_deployment_logs(
            self.context, self.id, refs, tail=tail, since=since, not_before=getattr(self.raw, "time_created", None)
        )

    def follow_logs(self, *, tail: int = 20, kind: str = "all", timeout: float | None = None, interval: float = 3.0):
        """Yield the last ``tail`` records, then new ones as they arrive (until ``timeout`` or interrupted)."""
        from odsc_magics.logs import follow_logs

        arguments.whole("tail", tail, minimum=1)
        arguments.number("timeout", timeout, minimum=0, optional=True)
        arguments.number("interval", interval, minimum=0, exclusive=True)

        def fetch(tail: int, since: Any) -> list[dict]:
            return self.logs(tail=tail, since=since, kind=kind)

        return follow_logs(fetch, tail=tail, timeout=timeout, interval=interval)

    # ------------------------------------------------------------------------------------------ endpoint

    def endpoint(self) -> Any:
        """The data-plane Endpoint of this deployment."""
        from odsc_magics.client import Endpoint

        return Endpoint(
            self.url, deployment_id=self.id, name=self.name, context=self.context, settings=self.settings, kind="ocid"
        )

    def complete(self, prompt: str, **params: Any) -> Any:
        return self.endpoint().complete(prompt, **params)

    def chat(self, messages: list[dict], **params: Any) -> Any:
        return self.endpoint().chat(messages, **params)

    def embed(self, texts: Any, **params: Any) -> Any:
        return self.endpoint().embed(texts, **params)

    def stream_complete(self, prompt: str, **params: Any) -> Any:
        return self.endpoint().stream_complete(prompt, **params)

    def stream_chat(self, messages: list[dict], **params: Any) -> Any:
        return self.endpoint().stream_chat(messages, **params)

    def smoke_test(self) -> Any:
        """One tiny prediction (max_tokens 1) on the deployment's own route."""
        endpoint = self.endpoint()
        if self.is_embedding:
            return endpoint.embed(["Hello"])
        if self.is_chat:
            return endpoint.chat([{"role": "user", "content": "Hello"}], max_tokens=1)
        return endpoint.complete("Hello", max_tokens=1)


def _state_hint(state: str, name: str) -> str:
    name = shlex.quote(name)  # the hints are commands to copy: a name with spaces stays one argument
    if state in _TRANSITIONAL:
        return f"Wait until it settles: `%llm_deploy status {name}`."
    if state == "FAILED":
        return f"`%llm_deploy status {name}` shows why; delete it and deploy again."
    return f"`%llm_deploy status {name}` shows its state."


def _report(bar: Any, on_progress: ProgressCallback | None, percent: float | None, state: str, message: Any) -> None:
    if bar is not None:
        if percent is not None:
            bar.update(max(0.0, min(100.0, percent) - bar.n))
        postfix = state if not message else f"{state} · {str(message)[:70]}"
        bar.set_postfix_str(postfix, refresh=True)
    if on_progress is not None:
        on_progress(percent, state, message)


def _progress_bar(name: str) -> Any:
    from tqdm.auto import tqdm

    bar = tqdm(total=100, unit="%", bar_format="{desc}: {percentage:3.0f}%|{bar}|{postfix}")
    bar.set_description_str(name)  # the notebook bar shows a desc given to tqdm() as HTML, this one as text
    return bar


def _deployment_details(
    context: Any,
    model: Any,
    shape: str,
    name: str,
    *,
    chat: bool,
    params: str,
    instances: int,
    bandwidth_mbps: int,
    env: Mapping[str, Any] | None,
    logs: Any,
    embedding: bool = False,
) -> Any:
    from odsc_magics.catalog import model_metadata

    for key in env or {}:
        if key in ("PARAMS", "MODEL_DEPLOY_PREDICT_ENDPOINT"):
            raise ValidationError(
                f"The environment variable {key} is set from the options.",
                hint="Use vllm_params=/--param for vLLM flags and chat=/--chat for the route.",
            )
    tags = {}
    if (model.freeform_tags or {}).get("task"):
        tags["task"] = model.freeform_tags["task"]
    if getattr(model, "category", None) == "SERVICE":
        tags["aqua_service_model"] = f"{model.id}#{model.display_name}"
    if embedding:
        from odsc_magics.embedding_models import embedding_deployment_details

        metadata = model_metadata(model)
        return embedding_deployment_details(
            name=name,
            model_id=model.id,
            model_name=model.display_name,
            base_model=metadata.get("artifact_location") or model.display_name,
            metadata=metadata,
            project_id=context.project_id,
            compartment_id=context.compartment_id,
            shape=shape,
            instances=instances,
            bandwidth_mbps=bandwidth_mbps,
            env={str(k): str(v) for k, v in (env or {}).items()},
            logs=logs,
            tags=tags,
        )
    return deployment_details(
        name=name,
        model_id=model.id,
        model_name=model.display_name,
        base_model=model_metadata(model).get("artifact_location") or model.display_name,
        project_id=context.project_id,
        compartment_id=context.compartment_id,
        shape=shape,
        params=params,
        chat=chat,
        instances=instances,
        bandwidth_mbps=bandwidth_mbps,
        env={str(k): str(v) for k, v in (env or {}).items()},
        logs=logs,
        tags=tags,
    )


def _check_embedding_options(model: Any, *, max_model_len: Any, vllm_params: Any, chat: bool) -> bool:
    """Whether ``model`` is an embedding model (served by TEI), refusing the options only vLLM takes."""
    from odsc_magics.catalog import model_metadata
    from odsc_magics.embedding_models import TEI_CONTAINER, serves_embeddings

    if not serves_embeddings(model_metadata(model), model.freeform_tags):
        return False
    given = [name for name, value in (("max_model_len", max_model_len), ("vllm_params", vllm_params)) if value]
    given += ["chat"] if chat else []
    if given:
        raise ValidationError(
            f"{model.display_name} is an embedding model, served by {TEI_CONTAINER} (not vLLM): "
            f"{', '.join(given)} do not apply.",
            hint="Deploy it without --max-model-len, --param and --chat; it answers /v1/embeddings.",
            target=model.display_name,
        )
    return True


def _log_details(log_group_id: str | None, access_log_id: str | None, predict_log_id: str | None) -> Any:
    if not (access_log_id or predict_log_id):
        return None
    if not log_group_id:
        raise ValidationError(
            "Access and predict logs need their log group.", hint="Pass log_group_id= (`--log-group`) too."
        )
    from oci.data_science import models as m

    def one(log_id: str | None) -> Any:
        return m.LogDetails(log_id=log_id, log_group_id=log_group_id) if log_id else None

    return m.CategoryLogDetails(access=one(access_log_id), predict=one(predict_log_id))


def _check_fit(model: Any, shape: Any, params: str, offered: list, *, region: str) -> None:
    """Refuse a model that cannot fit the shape's GPU memory, naming what would fit."""
    from odsc_magics.catalog import model_metadata
    from odsc_magics.sizing import fit, model_spec_from

    spec = model_spec_from(model.display_name, model_metadata(model))
    if spec is None:
        return  # size unknown: nothing to check
    verdict = fit(spec, shape, max_model_len=params_max_model_len(params), alternatives=offered)
    if verdict.fits:
        return
    options = []
    if verdict.suggested_shape:
        options.append(f"--shape {verdict.suggested_shape}")
    if verdict.suggested_max_model_len:
        options.append(f"--max-model-len {verdict.suggested_max_model_len}")
    step = f"Use {' or '.join(options)}" if options else f"No shape offered in {region} is big enough"
    raise ValidationError(
        f"{model.display_name} does not fit {shape.name}: {verdict.reason}.",
        hint=f"{step}; `%llm_deploy shapes --model {shlex.quote(model.display_name)}` shows the fit of every shape.",
        target=shape.name,
    )


def deploy(
    model: str,
    shape: str,
    *,
    name: str | None = None,
    instances: int = 1,
    max_model_len: int | None = None,
    vllm_params: str | Sequence[str] | None = None,
    env: Mapping[str, Any] | None = None,
    bandwidth_mbps: int = BANDWIDTH_MBPS,
    log_group_id: str | None = None,
    access_log_id: str | None = None,
    predict_log_id: str | None = None,
    chat: bool = False,
    wait: bool = True,
    progress: bool = True,
    on_progress: ProgressCallback | None = None,
    check_fit: bool = True,
    retry_token: str | None = None,
    settings: LLMSettings | None = None,
) -> Deployment:
    """Deploy ``model`` (catalog name, own model name, or OCID) on ``shape`` with the vLLM service container.

    The request is what AI Quick Actions sends. Before anything is created: the vLLM flags are checked, the
    shape must be offered in the region and the model must fit its GPU memory (``check_fit=False`` skips
    that). Create is idempotent (one ``opc-retry-token``, reusable via ``retry_token``). With ``wait`` it
    follows the work request until the end, smoke-tests the ACTIVE deployment with one tiny prediction and
    makes it the default target; a failure raises DeploymentFailedError carrying a ``Diagnosis``.
    """
    if not model or not shape:
        raise ValidationError(
            "deploy() needs a model and a shape.", hint="e.g. deploy('Mistral-7B-Instruct-v0.3', 'VM.GPU.A10.1')"
        )
    arguments.settings(settings)
    arguments.text("model", model, what="a model name or OCID (a str)")
    arguments.text("shape", shape, what="a shape name (a str)")
    arguments.text("name", name, optional=True)
    arguments.whole("instances", instances, minimum=1, hint="Use --instances 1 or more.")
    arguments.whole("bandwidth_mbps", bandwidth_mbps, minimum=1, hint=f"The default is {BANDWIDTH_MBPS} Mbps.")
    arguments.mapping("env", env)
    optional_texts = {
        "log_group_id": log_group_id,
        "access_log_id": access_log_id,
        "predict_log_id": predict_log_id,
        "retry_token": retry_token,
    }
    for option, value in optional_texts.items():
        arguments.text(option, value, optional=True)
    for option, value in {"chat": chat, "wait": wait, "progress": progress, "check_fit": check_fit}.items():
        arguments.flag(option, value)
    params = build_params(max_model_len, vllm_params)
    logs = _log_details(log_group_id, access_log_id, predict_log_id)
    context = get_context(settings)
    if not context.compartment_id or not context.project_id:
        missing = "compartment_id" if not context.compartment_id else "project_id"
        raise ConfigurationError(
            f"No {missing} is known, and a deployment needs one.",
            hint=f"Set `%config LLMMagics.{missing} = '...'` (env ODSC_MAGICS_{missing.upper()}).",
        )
    from odsc_magics.catalog import check_shape, find_model, region_shapes

    found = find_model(model, context=context)
    embedding = _check_embedding_options(found, max_model_len=max_model_len, vllm_params=vllm_params, chat=chat)
    offered = region_shapes(context=context)
    info = check_shape(shape, offered, context.region)
    if check_fit:
        _check_fit(found, info, params, offered, region=context.region)
    details = _deployment_details(
        context,
        found,
        shape,
        name or found.display_name,
        chat=chat,
        params=params,
        instances=instances,
        bandwidth_mbps=bandwidth_mbps,
        env=env,
        logs=logs,
        embedding=embedding,
    )
    client = context.data_science()
    response = context.call(
        "Creating the model deployment",
        client.create_model_deployment,
        details,
        opc_retry_token=retry_token or _retry_token(),
    )
    context.forget_targets()
    deployment = Deployment(
        response.data,
        context=context,
        settings=settings,
        work_request_id=response.headers.get("opc-work-request-id"),
    )
    if not wait:
        return deployment
    deployment.wait(progress=progress, on_progress=on_progress)
    if deployment.state != "ACTIVE":
        raise DeploymentNotActiveError(
            f"The model deployment {deployment.name} ended {deployment.state}.",
            state=deployment.state,
            target=deployment.id,
        )
    deployment.smoke_test()
    set_default_target(deployment.id)
    return deployment


def deployments(*, include_deleted: bool = False, settings: LLMSettings | None = None) -> list[Deployment]:
    """The model deployments of the compartment (and project, when one is set), newest first."""
    import oci

    arguments.flag("include_deleted", include_deleted)
    arguments.settings(settings)
    context = get_context(settings)
    if not context.compartment_id:
        raise ConfigurationError(
            "No compartment is known to list deployments in.", hint="Set `%config LLMMagics.compartment_id = '...'`."
        )
    kwargs = {"project_id": context.project_id} if context.project_id else {}
    found = context.call(
        "Listing model deployments",
        oci.pagination.list_call_get_all_results,
        context.data_science().list_model_deployments,
        compartment_id=context.compartment_id,
        **kwargs,
    ).data
    found = sorted(found, key=lambda d: d.time_created, reverse=True)
    return [
        Deployment(d, context=context, settings=settings)
        for d in found
        if include_deleted or d.lifecycle_state != "DELETED"
    ]


def get_deployment(id_or_name: str, *, settings: LLMSettings | None = None) -> Deployment:
    """The deployment with this OCID, or the one non-DELETED deployment with this display name.

    When no live deployment has the name, the newest DELETED one with it (state DELETED), as
    ``deployments(include_deleted=True)`` lists it. An ambiguous name raises ValidationError listing the
    candidates.
    """
    from odsc_magics.targets import resolve_target

    arguments.text("id_or_name", id_or_name, what="a deployment OCID or display name (a str)")
    arguments.settings(settings)
    context = get_context(settings)
    try:
        resolved = resolve_target(id_or_name, context)
    except NotFoundError:
        deleted = _newest_deleted(context, id_or_name.strip())
        if deleted is None:
            raise
        return Deployment(deleted, context=context, settings=settings)
    if not resolved.deployment_id:
        raise ValidationError(f"{id_or_name} does not name a model deployment.", target=id_or_name)
    raw = context.call(
        "Reading the model deployment", context.data_science().get_model_deployment, resolved.deployment_id
    ).data
    return Deployment(raw, context=context, settings=settings)


def _newest_deleted(context: Any, name: str) -> Any:
    """The newest DELETED deployment named ``name`` (read in full when the service still has it), or None."""
    from odsc_magics.targets import find_deployments_by_name

    if not context.compartment_id:
        return None
    deleted = find_deployments_by_name(context, name, deleted=True)
    if not deleted:
        return None
    newest = max(deleted, key=lambda d: d.time_created)
    try:
        return context.call(
            "Reading the model deployment", context.data_science().get_model_deployment, newest.id
        ).data
    except NotFoundError:
        return newest
