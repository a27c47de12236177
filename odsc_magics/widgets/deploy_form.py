"""The ``%llm_deploy`` form: pick a model and a shape that fits, deploy in the background, watch progress.

The form is built from plain data and one callable, so it runs without OCI and without a kernel:

    form = DeployForm(models, shapes, on_deploy=run)   # run(request: DeployRequest, sink: ProgressSink)
    form.deploy()                                       # same as clicking Deploy; the kernel stays free
    form.thread.join(); form.state                      # "active", "failed", ...

``on_deploy`` runs in a background thread and reports through the sink (``update``, ``done``, ``failed``),
which only sets widget traits. Whatever it raises ends in the form (``state == "failed"``, the error in
the status and in ``form.error``), as does any error of the form's own callbacks.
"""

from __future__ import annotations

import html
import re
import shlex
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import ipywidgets as w

from odsc_magics.diagnosis import diagnose
from odsc_magics.errors import DeploymentFailedError, OdscMagicsError, ValidationError
from odsc_magics.markup import html_link, html_text
from odsc_magics.shape_economics import ShapeEstimate, estimate_shape, workload_words
from odsc_magics.sizing import FitVerdict, ModelSpec, ShapeInfo, fit, format_gb, model_spec_from, shape_info

__all__ = ["STATES", "DeployForm", "DeployRequest", "ModelChoice", "ProgressSink"]

STATES = ("idle", "refused", "deploying", "active", "failed")
"""Form states: ``refused`` means the fit check (or a value) stopped the deploy before anything was sent."""

_RESERVED_FLAGS = ("--port", "--host", "--served-model-name", "--seed")  # set by the serving container
_TICK_S = 1.0


@dataclass(frozen=True)
class ModelChoice:
    """A model the form offers; ``spec`` is derived from the name and metadata when not given."""

    id: str
    name: str
    spec: ModelSpec | None = None
    metadata: Mapping[str, Any] | None = None
    deployment_shapes: tuple[str, ...] | None = None
    description: str = ""

    @classmethod
    def of(cls, item: ModelChoice | str | tuple[str, str] | Mapping[str, Any]) -> ModelChoice:
        """A choice from a ModelChoice, a name, an (id, name) pair or a dict with ``id``/``name``."""
        if isinstance(item, ModelChoice):
            return item
        if isinstance(item, str):
            return cls(item, item)
        if isinstance(item, Mapping):
            shapes = item.get("deployment_shapes")
            return cls(
                str(item.get("id") or item["name"]),
                str(item.get("name") or item["id"]),
                item.get("spec"),
                item.get("metadata"),
                tuple(shapes) if shapes else None,
                str(item.get("description") or ""),
            )
        model_id, name = item
        return cls(model_id, name)


@dataclass
class DeployRequest:
    """Everything the form collected (``max_model_len`` and ``vllm_flags`` go to deploy() as they are)."""

    model_id: str
    model_name: str
    shape: str
    name: str
    instance_count: int = 1
    max_model_len: int | None = None
    vllm_flags: str = ""
    mode: str = "completion"
    log_group_id: str | None = None
    access_log_id: str | None = None
    predict_log_id: str | None = None
    bandwidth_mbps: int = 10
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def chat(self) -> bool:
        return self.mode == "chat"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ProgressSink(Protocol):
    """How ``on_deploy`` reports; every method may be called from any thread."""

    def update(self, percent: float | None = None, state: str | None = None, message: str | None = None) -> None:
        """Work-request percent, deployment state, last log message (each optional)."""

    def done(self, url: str | None, name: str | None = None) -> None:
        """The deployment is ACTIVE at ``url``."""

    def failed(self, diagnosis_or_message: Any) -> None:
        """The deployment failed: a ``Diagnosis``, an exception or a message."""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "llm"


def _esc(text: Any) -> str:
    return html_text(text)


def _flag_value(flags: Sequence[str], name: str) -> str | None:
    for i, token in enumerate(flags):
        if token == name and i + 1 < len(flags):
            return flags[i + 1]
        if token.startswith(name + "="):
            return token.split("=", 1)[1]
    return None


def default_predict_cell(name: str, mode: str) -> str:
    """The ready-to-copy cell that prompts the new deployment."""
    magic = "%%llm_chat" if mode == "chat" else "%%llm_predict"
    return f"{magic} -d {shlex.quote(name)}\nSay hello in one sentence."


class _FormSink:
    """The sink handed to ``on_deploy``: thread-safe, sets traits only, ignores calls once finished."""

    def __init__(self, form: DeployForm) -> None:
        self._form = form
        self._lock = threading.Lock()
        self.finished = False

    def update(self, percent: float | None = None, state: str | None = None, message: str | None = None) -> None:
        with self._lock:
            if not self.finished:
                self._form._on_update(percent, state, message)

    def done(self, url: str | None, name: str | None = None) -> None:
        with self._lock:
            if not self.finished:
                self.finished = True
                self._form._on_done(url, name)

    def failed(self, diagnosis_or_message: Any) -> None:
        with self._lock:
            if not self.finished:
                self.finished = True
                self._form._on_failed(diagnosis_or_message)


class DeployForm:
    """The deploy form (see the module docstring); ``.widget`` is the VBox to display."""

    def __init__(
        self,
        models: Iterable[ModelChoice | str | tuple[str, str] | Mapping[str, Any]],
        shapes: Iterable[ShapeInfo | str],
        *,
        on_deploy: Callable[[DeployRequest, ProgressSink], Any],
        fit_fn: Callable[..., FitVerdict] = fit,
        log_groups: Sequence[Any] | Callable[[], Sequence[Any]] = (),
        logs: Mapping[str, Sequence[Any]] | Callable[[str], Sequence[Any]] | None = None,
        default_name: str | None = None,
        default_model: str | None = None,
        default_shape: str | None = None,
        max_model_len: int = 0,
        bandwidth_mbps: int = 10,
        predict_cell: Callable[[str, str], str] = default_predict_cell,
        prices: Mapping[str, float] | None = None,
    ) -> None:
        self._models = [ModelChoice.of(m) for m in models]
        self._by_id = {m.id: m for m in self._models}
        self._lower = [m.name.lower() for m in self._models]
        self._shapes = sorted((shape_info(s) for s in shapes), key=_shape_order)
        self._shape_by_name = {s.name: s for s in self._shapes}
        self._on_deploy = on_deploy
        self._fit_fn = fit_fn
        self._logs = logs
        self._predict_cell = predict_cell
        self._specs: dict[str, ModelSpec | None] = {}
        self._verdicts: dict[tuple[str, int], dict[str, FitVerdict | None]] = {}
        self._estimates: dict[tuple[str, int], dict[str, ShapeEstimate | None]] = {}
        self._prices = prices
        self._busy = False
        self._name_auto = default_name is None
        self._default_shape = default_shape if default_shape in self._shape_by_name else None
        self._shape_auto = self._default_shape is None
        self._started = 0.0
        self._deploy_state = ""
        self._last_message = ""
        self._percent: float | None = None
        self._stop_tick = threading.Event()
        self._shown_in: int | None = None

        self.state = "idle"
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.errors: list[BaseException] = []
        self.diagnosis: Any = None
        self.url: str | None = None
        self.deployment_name: str | None = None
        self.predict_cell_text: str | None = None
        self.last_request: DeployRequest | None = None

        wide = w.Layout(width="100%")
        label = {"description_width": "130px"}
        self.model_search = w.Text(description="Search", placeholder="filter models by name", style=label)
        self.model_select = w.Select(options=self._model_options(""), rows=8, description="Model", style=label)
        self.model_select.layout = wide
        self.model_info = w.HTML()
        self.shape_select = w.Dropdown(options=[], description="Shape", style=label, layout=wide)
        self.fit_info = w.HTML()
        self.name_text = w.Text(value=default_name or "", description="Name", style=label)
        self.instances_text = w.IntText(value=1, description="Instances", style=label)
        self.max_len_text = w.IntText(value=max_model_len, description="Max model length", style=label)
        self.flags_text = w.Text(
            description="vLLM flags", placeholder="e.g. --trust-remote-code", style=label, layout=wide
        )
        self.mode_toggle = w.ToggleButtons(options=["completion", "chat"], value="completion", description="Mode")
        self.mode_toggle.style.description_width = "130px"
        self.log_group_select = w.Dropdown(description="Log group", style=label)
        self.access_log_select = w.Dropdown(description="Access log", style=label)
        self.predict_log_select = w.Dropdown(description="Predict log", style=label)
        self.bandwidth_text = w.IntText(value=bandwidth_mbps, description="Bandwidth Mbps", style=label)
        self.deploy_button = w.Button(description="Deploy", button_style="primary", icon="rocket")
        self.status_html = w.HTML()
        self.progress_bar = w.IntProgress(value=0, min=0, max=100, description="Progress", style=label)
        self.progress_html = w.HTML()
        self.result_html = w.HTML()
        self.controls = {
            "search": self.model_search,
            "model": self.model_select,
            "shape": self.shape_select,
            "name": self.name_text,
            "instances": self.instances_text,
            "max_model_len": self.max_len_text,
            "flags": self.flags_text,
            "mode": self.mode_toggle,
            "log_group": self.log_group_select,
            "access_log": self.access_log_select,
            "predict_log": self.predict_log_select,
            "bandwidth": self.bandwidth_text,
        }
        self.widget = w.VBox(
            [
                w.HTML("<b>Deploy an LLM</b>"),
                self.model_search,
                self.model_select,
                self.model_info,
                self.shape_select,
                self.fit_info,
                self.name_text,
                self.instances_text,
                self.max_len_text,
                self.flags_text,
                self.mode_toggle,
                self.log_group_select,
                w.HBox([self.access_log_select, self.predict_log_select]),
                self.bandwidth_text,
                self.deploy_button,
                self.status_html,
                self.progress_bar,
                self.progress_html,
                self.result_html,
            ]
        )
        self.widget.add_class("odsc-deploy-form")
        self._set_state("idle")

        self._guarded(self._fill_log_groups, log_groups)
        if default_model is not None and default_model in self._by_id:
            self.model_select.value = default_model
        self._guarded(self._refresh_shapes)

        self.model_search.observe(self._callback(self._on_search), names="value")
        self.model_select.observe(self._callback(self._on_model), names="value")
        self.shape_select.observe(self._callback(self._on_shape), names="value")
        self.max_len_text.observe(self._callback(self._on_max_len), names="value")
        self.flags_text.observe(self._callback(self._on_max_len), names="value")
        self.name_text.observe(self._callback(self._on_name), names="value")
        self.log_group_select.observe(self._callback(self._on_log_group), names="value")
        self.deploy_button.on_click(self._callback(lambda _button: self.deploy()))

    # ----------------------------------------------------------------------------------- display, values

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def show(self, shell: Any = None) -> DeployForm:
        """Display the form now; showing the returned form as the same cell's result is then skipped."""
        from IPython.display import display

        display(self.widget)
        self._shown_in = _execution_count(shell)
        return self

    def _ipython_display_(self) -> None:
        from IPython.display import display

        shown_in, self._shown_in = self._shown_in, None
        if shown_in is not None and shown_in == _execution_count(None):
            return  # `%llm_deploy` displayed it already in this cell
        display(self.widget)

    def values(self) -> dict[str, Any]:
        """The current values of the form's fields."""
        model = self._by_id.get(self.model_select.value) if self.model_select.value is not None else None
        return {
            "model_id": model.id if model else None,
            "model_name": model.name if model else None,
            "shape": self.shape_select.value,
            "name": self.name_text.value.strip(),
            "instance_count": self.instances_text.value,
            "max_model_len": self.max_len_text.value,
            "vllm_flags": self.flags_text.value.strip(),
            "mode": self.mode_toggle.value,
            "log_group_id": self.log_group_select.value,
            "access_log_id": self.access_log_select.value,
            "predict_log_id": self.predict_log_select.value,
            "bandwidth_mbps": self.bandwidth_text.value,
        }

    def request(self) -> DeployRequest:
        """The values as a ``DeployRequest``; raises ``ValidationError`` naming the field that is wrong."""
        v = self.values()
        if not v["model_id"]:
            raise ValidationError("Pick a model.")
        if not v["shape"]:
            raise ValidationError("Pick a shape.")
        if not v["name"]:
            raise ValidationError("Give the deployment a name.")
        if v["instance_count"] < 1:
            raise ValidationError("Instances must be 1 or more.")
        if v["max_model_len"] < 0:
            raise ValidationError("Max model length must be 0 (the model's default) or more.")
        if v["bandwidth_mbps"] < 1:
            raise ValidationError("Bandwidth must be at least 1 Mbps.")
        flags = self._flags()
        reserved = [f for f in _RESERVED_FLAGS if any(t == f or t.startswith(f + "=") for t in flags)]
        if reserved:
            raise ValidationError(f"The serving container sets {', '.join(reserved)} itself; remove it from the flags.")
        if v["max_model_len"] and _flag_value(flags, "--max-model-len") is not None:
            raise ValidationError("Set the max model length in its field or in the flags, not both.")
        if (v["access_log_id"] or v["predict_log_id"]) and not v["log_group_id"]:
            raise ValidationError("Pick the log group of the logs.")
        return DeployRequest(
            model_id=v["model_id"],
            model_name=v["model_name"],
            shape=v["shape"],
            name=v["name"],
            instance_count=v["instance_count"],
            max_model_len=v["max_model_len"] or None,
            vllm_flags=v["vllm_flags"],
            mode=v["mode"],
            log_group_id=v["log_group_id"],
            access_log_id=v["access_log_id"],
            predict_log_id=v["predict_log_id"],
            bandwidth_mbps=v["bandwidth_mbps"],
        )

    def verdict(self, shape: str | None = None) -> FitVerdict | None:
        """The selected model's fit verdict on ``shape`` (default: the selected one); None if unknown."""
        shape = shape or self.shape_select.value
        if shape is None:
            return None
        return self._current_verdicts().get(shape)

    # ----------------------------------------------------------------------------------------- deploying

    def deploy(self, wait: bool = False) -> threading.Thread | None:
        """Check the values and the fit, then run ``on_deploy`` in a background thread (same as clicking).

        Returns the thread (also ``.thread``), or None when the deploy was refused before it started.
        """
        if self.state == "deploying":
            self._status("A deployment is already running.", "warn")
            return self.thread
        try:
            request = self.request()
        except ValidationError as exc:
            self._refuse(exc.message)
            return None
        verdict = self.verdict(request.shape)
        if verdict is not None and not verdict.fits:
            self._refuse(f"{request.model_name} on {request.shape}: {verdict.reason}", verdict)
            return None

        self.last_request = request
        self.error = None
        self.diagnosis = None
        self.url = self.deployment_name = self.predict_cell_text = None
        self._deploy_state, self._last_message, self._percent = "", "", 0
        self._started = time.monotonic()
        self.progress_bar.value = 0
        self.progress_bar.bar_style = "info"
        self.result_html.value = ""
        self.deploy_button.disabled = True
        self._set_state("deploying")
        self._status(f"Deploying <code>{_esc(request.name)}</code> on {_esc(request.shape)}…", "info")
        self._render_progress()
        sink = _FormSink(self)
        self._stop_tick.clear()
        self.thread = threading.Thread(target=self._run, args=(request, sink), name="llm-deploy", daemon=True)
        self.thread.start()
        threading.Thread(target=self._tick, name="llm-deploy-clock", daemon=True).start()
        if wait:
            self.thread.join()
        return self.thread

    def _run(self, request: DeployRequest, sink: _FormSink) -> None:
        try:
            outcome = self._on_deploy(request, sink)
            if not sink.finished:
                url = _attr(outcome, "url")
                name = _attr(outcome, "name") or request.name
                sink.done(url, name)
        except DeploymentFailedError as exc:
            self.error = exc
            sink.failed(self._diagnosis_of(exc, request))
        except Exception as exc:
            self.errors.append(exc)
            sink.failed(exc)
            self.error = exc
        finally:
            self._stop_tick.set()
            if not sink.finished:  # on_deploy raised a BaseException (e.g. KeyboardInterrupt)
                sink.failed("The deployment was interrupted.")
            self.deploy_button.disabled = not self._deployable()

    def _diagnosis_of(self, exc: DeploymentFailedError, request: DeployRequest) -> Any:
        """The error's Diagnosis; raw work-request errors (or just the message) are diagnosed here."""
        found = exc.diagnosis
        if hasattr(found, "summary") and hasattr(found, "next_step"):
            return found
        errors = list(found) if isinstance(found, (list, tuple)) else []
        model = self._by_id.get(request.model_id)
        return diagnose(
            state=getattr(exc, "state", None) or "FAILED",
            work_request_errors=errors or [exc.message],
            shape=request.shape,
            model=self._spec(model) if model else None,
            available_shapes=self._shapes,
            max_model_len=request.max_model_len,
        )

    def _tick(self) -> None:
        while not self._stop_tick.wait(_TICK_S):
            if self.state != "deploying":
                return
            self._guarded(self._render_progress)

    def _on_update(self, percent: float | None, state: str | None, message: str | None) -> None:
        if percent is not None:
            self._percent = max(0.0, min(100.0, float(percent)))
            self.progress_bar.value = int(self._percent)
        if state:
            self._deploy_state = str(state)
        if message:
            self._last_message = str(message)
        self._render_progress()

    def _on_done(self, url: str | None, name: str | None) -> None:
        name = name or (self.last_request.name if self.last_request else "")
        self.url, self.deployment_name = url, name
        self.predict_cell_text = self._predict_cell(name, self.last_request.mode if self.last_request else "")
        self._deploy_state = "ACTIVE"
        self._percent = 100
        self.progress_bar.value = 100
        self.progress_bar.bar_style = "success"
        self._render_progress()
        link = html_link(url) if url else "(no URL reported)"
        self.result_html.value = (
            f"<div><b>✓ {_esc(name)} is ACTIVE</b><br>Endpoint: <code>{link}</code><br>"
            f"Copy this into a cell to prompt it:<pre>{_esc(self.predict_cell_text)}</pre></div>"
        )
        self._status(f"✓ Deployed <code>{_esc(name)}</code>.", "ok")
        self._set_state("active")

    def _on_failed(self, what: Any) -> None:
        self.progress_bar.bar_style = "danger"
        summary, body = self._describe_failure(what)
        self._deploy_state = self._deploy_state or "FAILED"
        self._render_progress()
        self.result_html.value = f"<div><b>✗ Deployment failed</b>{body}</div>"
        self._status(f"✗ {_esc(summary)}", "error")
        self._set_state("failed")

    def _describe_failure(self, what: Any) -> tuple[str, str]:
        """(one-line summary, HTML body) for a Diagnosis, an exception or a message."""
        if hasattr(what, "summary") and hasattr(what, "next_step"):
            self.diagnosis = what
            parts = [f"<p>{_esc(what.summary)}</p>", f"<p><b>Next step:</b> {_esc(what.next_step)}</p>"]
            policies = list(getattr(what, "policies", []) or [])
            if policies:
                parts.append("<pre>" + _esc("\n".join(policies)) + "</pre>")
            evidence = list(getattr(what, "evidence", []) or [])
            if evidence:
                parts.append(
                    "<details><summary>Evidence</summary><pre>" + _esc("\n".join(evidence)) + "</pre></details>"
                )
            return str(what.summary), "".join(parts)
        if isinstance(what, OdscMagicsError):
            text = what.short()
            return what.message, f"<pre>{_esc(text)}</pre>"
        if isinstance(what, BaseException):
            text = f"{type(what).__name__}: {what}"
            trace = "".join(traceback.format_exception(type(what), what, what.__traceback__))
            return (
                text,
                f"<p>{_esc(text)}</p><details><summary>Traceback</summary><pre>{_esc(trace)}</pre></details>",
            )
        return str(what), f"<p>{_esc(what)}</p>"

    def _refuse(self, reason: str, verdict: FitVerdict | None = None) -> None:
        steps = []
        if verdict is not None and verdict.suggested_shape:
            steps.append(f"pick {verdict.suggested_shape}")
        if verdict is not None and verdict.suggested_max_model_len:
            steps.append(f"set Max model length to {verdict.suggested_max_model_len}")
        step = f"<p><b>Next step:</b> {_esc(' or '.join(steps))}.</p>" if steps else ""
        self.result_html.value = f"<div><b>Not deployed</b><p>{_esc(reason)}</p>{step}</div>"
        self._status(f"✗ {_esc(reason)}", "error")
        self._set_state("refused")

    # ------------------------------------------------------------------------------------------ rendering

    def _set_state(self, state: str) -> None:
        for old in STATES:
            self.widget.remove_class(f"odsc-state-{old}")
        self.widget.add_class(f"odsc-state-{state}")
        self.state = state

    def _status(self, text_html: str, kind: str) -> None:
        colour = {"ok": "green", "error": "#b00020", "warn": "#b26a00"}.get(kind, "inherit")
        self.status_html.value = f'<div style="color:{colour}">{text_html}</div>'

    def _render_progress(self) -> None:
        if not self._started:
            return
        elapsed = int(time.monotonic() - self._started)
        parts = [
            f"State: <b>{_esc(self._deploy_state or 'STARTING')}</b>",
            f"elapsed {elapsed // 60}:{elapsed % 60:02d}",
        ]
        if self._percent is not None:
            parts.insert(1, f"{int(self._percent)}%")
        text = " · ".join(parts)
        if self._last_message:
            text += f"<br><small>{_esc(self._last_message)}</small>"
        self.progress_html.value = text

    # ----------------------------------------------------------------------------------- model and shapes

    def _model_options(self, query: str) -> list[tuple[str, str]]:
        words = query.lower().split()
        if not words:
            return [(m.name, m.id) for m in self._models]
        pairs = zip(self._models, self._lower, strict=True)
        return [(m.name, m.id) for m, low in pairs if all(word in low for word in words)]

    def _spec(self, model: ModelChoice) -> ModelSpec | None:
        if model.id not in self._specs:
            self._specs[model.id] = model.spec or model_spec_from(model.name, model.metadata)
        return self._specs[model.id]

    def _effective_max_len(self) -> int:
        if self.max_len_text.value > 0:
            return self.max_len_text.value
        try:
            value = _flag_value(self._flags(), "--max-model-len")
        except ValidationError:
            return 0
        return int(value) if value and value.isdigit() else 0

    def _flags(self) -> list[str]:
        try:
            return shlex.split(self.flags_text.value)
        except ValueError as exc:
            raise ValidationError(f"The vLLM flags cannot be parsed: {exc}.") from None

    def _current_verdicts(self) -> dict[str, FitVerdict | None]:
        model = self._by_id.get(self.model_select.value) if self.model_select.value is not None else None
        if model is None:
            return {}
        max_len = self._effective_max_len()
        key = (model.id, max_len)
        if key not in self._verdicts:
            spec = self._spec(model)
            verdicts: dict[str, FitVerdict | None] = {}
            for shape in self._shapes:
                if spec is None:
                    verdicts[shape.name] = None
                    continue
                verdicts[shape.name] = self._fit_fn(
                    spec,
                    shape,
                    max_model_len=max_len or None,
                    deployment_shapes=list(model.deployment_shapes) if model.deployment_shapes else None,
                    alternatives=self._shapes,
                )
            self._verdicts[key] = verdicts
        return self._verdicts[key]

    def _current_estimates(self) -> dict[str, ShapeEstimate | None]:
        """What each fitting shape delivers for the selected model (sequences, tokens/s, price)."""
        model = self._by_id.get(self.model_select.value) if self.model_select.value is not None else None
        if model is None:
            return {}
        key = (model.id, self._effective_max_len())
        if key not in self._estimates:
            from odsc_magics.prices import gpu_prices

            if self._prices is None:
                self._prices = gpu_prices()
            spec = self._spec(model)
            verdicts = self._current_verdicts()
            self._estimates[key] = {
                shape.name: estimate_shape(spec, shape, max_model_len=key[1] or None, prices=self._prices)
                if spec is not None and (v := verdicts.get(shape.name)) is not None and v.fits
                else None
                for shape in self._shapes
            }
        return self._estimates[key]

    def _refresh_shapes(self) -> None:
        """Relabel the shapes for the selected model; pick the smallest fitting one unless the user chose."""
        model = self._by_id.get(self.model_select.value) if self.model_select.value is not None else None
        verdicts = self._current_verdicts()
        estimates = self._current_estimates()
        options = [(_shape_label(s, verdicts.get(s.name), estimates.get(s.name)), s.name) for s in self._shapes]
        current = self.shape_select.value if self.shape_select.value is not None else self._default_shape
        if self._shape_auto or current is None:
            fitting = [s.name for s in self._shapes if (v := verdicts.get(s.name)) is None or v.fits]
            gpu_fitting = [n for n in fitting if self._shape_by_name[n].is_gpu]
            current = (gpu_fitting or fitting or [current])[0]
        self._with_busy(self._set_dropdown, options, current)
        if model is not None:
            spec = self._spec(model)
            if spec is None:
                info = f"{_esc(model.name)}: size unknown (no parameter count in its name or metadata)"
            else:
                info = f"{_esc(model.name)}: ≈ {format_gb(spec.parameters_b)} B parameters"
                if spec.context:
                    info += f", {spec.context:,}-token context"
            self.model_info.value = f"<small>{info}</small>"
            if self._name_auto:
                self._with_busy(setattr, self.name_text, "value", _slug(model.name))
        else:
            self.model_info.value = "<small>No model matches.</small>" if self.model_search.value else ""
        self._show_fit()

    def _set_dropdown(self, options: list[tuple[str, str]], value: str | None) -> None:
        self.shape_select.options = options
        if value is not None and any(v == value for _, v in options):
            self.shape_select.value = value

    def _show_fit(self) -> None:
        verdict = self.verdict()
        shape = self.shape_select.value
        if shape is None:
            self.fit_info.value = ""
        elif verdict is None:
            self.fit_info.value = "<small>Fit not checked: the model's size is unknown.</small>"
        elif verdict.fits:
            found = self._current_estimates().get(shape)
            more = f"<br>{_esc(_estimate_sentence(found))}" if found is not None else ""
            self.fit_info.value = f'<small style="color:green">✓ {_esc(verdict.reason)}</small><small>{more}</small>'
        else:
            self.fit_info.value = f'<small style="color:#b00020">✗ {_esc(verdict.reason)}</small>'
        if self.state != "deploying":
            self.deploy_button.disabled = not self._deployable()
            self.deploy_button.tooltip = "" if not self.deploy_button.disabled else _strip_tags(self.fit_info.value)

    def _deployable(self) -> bool:
        if self.model_select.value is None or self.shape_select.value is None:
            return False
        verdict = self.verdict()
        return verdict is None or verdict.fits

    # ---------------------------------------------------------------------------------------- callbacks

    def _on_search(self, change: dict) -> None:
        previous = self.model_select.value
        options = self._model_options(change["new"])
        self._with_busy(setattr, self.model_select, "options", options)
        if previous is not None and any(v == previous for _, v in options):
            self._with_busy(setattr, self.model_select, "value", previous)
        if self.model_select.value != previous:
            self._refresh_shapes()
        elif not options:
            self.model_info.value = "<small>No model matches.</small>"

    def _on_model(self, change: dict) -> None:
        if not self._busy:
            self._refresh_shapes()

    def _on_shape(self, change: dict) -> None:
        if self._busy:
            return
        self._shape_auto = False
        self._show_fit()

    def _on_max_len(self, change: dict) -> None:
        self._refresh_shapes()

    def _on_name(self, change: dict) -> None:
        if not self._busy:
            self._name_auto = False

    def _on_log_group(self, change: dict) -> None:
        group = change["new"]
        entries: Sequence[Any] = ()
        if group is not None and self._logs is not None:
            entries = self._logs(group) if callable(self._logs) else self._logs.get(group, ())
        options = [("(none)", None), *(_option(e) for e in entries)]
        self.access_log_select.options = options
        self.predict_log_select.options = options

    def _fill_log_groups(self, log_groups: Sequence[Any] | Callable[[], Sequence[Any]]) -> None:
        entries = log_groups() if callable(log_groups) else log_groups
        self.log_group_select.options = [("(none)", None), *(_option(e) for e in entries)]
        self.access_log_select.options = [("(none)", None)]
        self.predict_log_select.options = [("(none)", None)]

    # ------------------------------------------------------------------------------------------ plumbing

    def _with_busy(self, func: Callable[..., Any], *args: Any) -> Any:
        busy, self._busy = self._busy, True
        try:
            return func(*args)
        finally:
            self._busy = busy

    def _callback(self, func: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any) -> None:
            self._guarded(func, *args)

        return run

    def _guarded(self, func: Callable[..., Any], *args: Any) -> Any:
        """Run a callback; an exception is shown in the status and kept in ``errors``, never lost."""
        try:
            return func(*args)
        except Exception as exc:
            self.errors.append(exc)
            self.error = exc
            message = exc.short() if isinstance(exc, OdscMagicsError) else f"{type(exc).__name__}: {exc}"
            self._status(f"✗ {_esc(message)}", "error")
            return None


def _execution_count(shell: Any) -> int | None:
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    return getattr(shell, "execution_count", None)


def _attr(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _option(entry: Any) -> tuple[str, Any]:
    """A dropdown option from an (label, id) pair, a dict/SDK object with display_name and id, or a string."""
    if isinstance(entry, str):
        return (entry, entry)
    if isinstance(entry, tuple):
        return (str(entry[0]), entry[1])
    ident = _attr(entry, "id")
    label = _attr(entry, "display_name") or _attr(entry, "displayName") or _attr(entry, "name") or ident
    return (str(label), ident)


def _shape_order(shape: ShapeInfo) -> tuple[int, float, str]:
    memory = shape.gpu_memory_gb if shape.gpu_memory_gb is not None else float("inf")
    return (0 if shape.is_gpu else 1, memory, shape.name)


def _shape_label(shape: ShapeInfo, verdict: FitVerdict | None, estimate: ShapeEstimate | None = None) -> str:
    memory = (
        f"{format_gb(shape.gpu_memory_gb)} GB"
        if shape.gpu_memory_gb is not None
        else ("no GPU" if not shape.is_gpu else "GPU memory unknown")
    )
    if verdict is None:
        mark = "? size unknown"
    elif verdict.fits:
        mark = "✓ fits"
    else:
        mark = f"✗ {verdict.short_reason}"
    label = f"{shape.name} · {memory} · {mark}"
    return f"{label} · {estimate.summary}" if estimate is not None else label


def _estimate_sentence(e: ShapeEstimate) -> str:
    """What the shape delivers, in words (plain text: the caller escapes it)."""
    from odsc_magics.prices import format_usd

    text = (
        f"Estimate: ≈ {e.sequences_at_max_len:,} sequences of {e.max_model_len:,} tokens at once; "
        f"≈ {e.output_tok_s_1:,.0f} output tokens/s for one request, ≈ {e.output_tok_s_saturated:,.0f} saturated "
        f"({workload_words(e.max_model_len)})"
    )
    if e.usd_per_hour is not None:
        text += f"; {format_usd(e.usd_per_hour)}/hour"
    if e.usd_per_million_output is not None:
        text += f", {format_usd(e.usd_per_million_output)} per million output tokens"
    return text + "."


def _strip_tags(text: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", text))
