"""The running local backend's shared objects (options, identity, state, engines, counters)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from odsc_magics.local.faults import FaultPlan, Stats
from odsc_magics.local.frontend import TENANCY_RPS, FrontEnd
from odsc_magics.local.identity import Identity
from odsc_magics.local.lifecycle import Lifecycle, deployment_env, instance_count, shape_of
from odsc_magics.local.signing import Verifier
from odsc_magics.local.state import Store
from odsc_magics.vllm_container import SERVED_MODEL_NAME, flag_values, max_model_len


@dataclass
class Options:
    """The command line of ``odsc-magics local``."""

    state_dir: Path
    port: int = 0
    engine: str = "builtin"
    serving: str = "gpu"  # builtin engine: "gpu" (a simulated vLLM engine per instance) or "fixed"
    time_scale: float = 1.0
    tenancy_rps: float = TENANCY_RPS
    capacity: int | None = None
    ttft_ms: float = 50.0
    tokens_per_s: float = 100.0
    deploy_seconds: float = 2.0
    faults: list[tuple[str, float]] = field(default_factory=list)
    no_capacity: list[str] = field(default_factory=list)
    seed: int | None = None
    retry_after: float | None = None


class Runtime:
    """Everything a request handler needs; one per process."""

    def __init__(self, options: Options, identity: Identity, store: Store, verifier: Verifier) -> None:
        self.options = options
        self.identity = identity
        self.store = store
        self.verifier = verifier
        self.lifecycle = Lifecycle(store, deploy_seconds=options.deploy_seconds, no_capacity=options.no_capacity)
        self.faults = FaultPlan(options.faults, seed=options.seed)
        self.stats = Stats()
        self.frontend = FrontEnd(time_scale=options.time_scale, tenancy_rps=options.tenancy_rps)
        self._paces: dict[str, tuple[tuple, object]] = {}
        self.inflight: dict[str, int] = {}
        self.endpoint = ""
        # Proves to a client holding start.json that the process answering is the one that wrote it.
        self.instance = secrets.token_hex(16)
        self.pid = os.getpid()
        self._engines: dict[tuple[str, int], object] = {}
        self._param_keys: dict[str | None, tuple[str, int]] = {}

    def engine_for(self, env: dict[str, str]):
        """The engine serving a deployment, by the served model name and max model length in its PARAMS."""
        params = env.get("PARAMS")
        key = self._param_keys.get(params)
        if key is None:
            key = self._param_keys[params] = _engine_key(params)
        engine = self._engines.get(key)
        if engine is None:
            from odsc_magics.local.engine import make_engine

            engine = self._engines[key] = make_engine(
                self.options.engine,
                ttft_ms=self.options.ttft_ms,
                tokens_per_s=self.options.tokens_per_s,
                served_model_name=key[0],
                max_model_len=key[1],
            )
        return engine

    def pace_for(self, deployment: dict):
        """The timing of a deployment's answers: its simulated engines under ``--serving gpu``, else None (the
        engine's fixed speed). Rebuilt when the deployment's model, shape, PARAMS or instance count change."""
        if self.options.serving != "gpu" or self.options.engine != "builtin":
            return None
        env = deployment_env(deployment)
        key = (self.lifecycle.model_id(deployment), shape_of(deployment), env.get("PARAMS"), instance_count(deployment))
        held = self._paces.get(deployment["id"])
        if held is None or held[0] != key:
            held = self._paces[deployment["id"]] = (key, self._gpu_pace(deployment, key))
        return held[1]

    def _gpu_pace(self, deployment: dict, key: tuple):
        """Simulated engines for the deployment, or None when its model's architecture is unknown (then the
        fixed speed applies)."""
        from odsc_magics.local.pacing import GpuPace
        from odsc_magics.serving import engine_config, memory

        spec = self.lifecycle.model_spec(deployment)
        if spec is None or not spec.has_architecture:
            return None
        _, shape, params, instances = key
        try:
            config = engine_config(spec, shape, params, instances=instances)
        except ValueError:
            return None
        if memory(config).failure is not None:
            return None
        return GpuPace(config, time_scale=self.options.time_scale, stats=self.stats.of(deployment["id"]))

    def live_stats(self) -> dict[str, dict]:
        """Running and waiting sequences and KV-cache usage of every deployment's simulated engines now."""
        return {key: held[1].live() for key, held in self._paces.items() if held[1] is not None}

    async def aclose(self) -> None:
        for engine in self._engines.values():
            await engine.aclose()
        self._engines.clear()

    def url_of(self, deployment_id: str) -> str:
        return f"{self.endpoint}/{deployment_id}"


def _engine_key(params: str | None) -> tuple[str, int]:
    flags = flag_values(params)
    return flags.get("--served-model-name") or SERVED_MODEL_NAME, max_model_len(params) or 4096


RUNTIME = web.AppKey("runtime", Runtime)
