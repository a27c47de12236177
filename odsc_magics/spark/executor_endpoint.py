"""The endpoint as executors rebuild it: its URL and settings travel, credentials come from where tasks run.

API-key profiles live on the machine that holds them, not on executors. A task signs with what its own
environment provides: the resource principal on OCI Data Flow (``dataflow.auth=resource_principal``, which sets
OCI_RESOURCE_PRINCIPAL_VERSION for the driver and every executor), or the profile of the settings shipped from
the driver where executors share its machine (local Spark, the local backend's profile).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from odsc_magics.config import resolve

# Settings that decide how a request is signed and what it carries; none of them is a secret (a profile's
# key stays in its key file, read where the task runs).
SHIPPED = ("backend", "local_dir", "auth", "config_file", "profile", "region", "model", "max_tokens", "temperature",
           "timeout")  # fmt: skip
RESOURCE_PRINCIPAL = "resource_principal"


@dataclass(frozen=True)
class EndpointSpec:
    """What a task needs to call the deployment; picklable, no secret inside."""

    url: str
    deployment_id: str | None
    name: str | None
    settings: dict[str, Any] = field(default_factory=dict)

    def endpoint(self) -> Any:
        """The Endpoint in this process (one per process: its HTTP pool and signer are shared by its tasks)."""
        key = (self.url, tuple(sorted(self.settings.items())))
        cached = _ENDPOINTS.get(key)
        if cached is not None:
            return cached
        from odsc_magics.client import Endpoint
        from odsc_magics.config import LLMSettings

        settings = LLMSettings(**{name: value for name, value in self.settings.items() if value is not None})
        endpoint = Endpoint(self.url, deployment_id=self.deployment_id, name=self.name, settings=settings)
        _ENDPOINTS[key] = endpoint
        return endpoint


_ENDPOINTS: dict[tuple, Any] = {}


def spec_of(endpoint: Any, *, resource_principal: bool) -> EndpointSpec:
    """The spec of a driver-side Endpoint; ``resource_principal`` makes tasks sign as the run's principal."""
    settings = getattr(endpoint, "settings", None)
    values = {name: resolve(name, None, settings)[0] for name in SHIPPED}
    if resource_principal:
        values.update(backend="oci", auth=RESOURCE_PRINCIPAL, local_dir=None, config_file=None, profile=None)
    elif values["auth"] == RESOURCE_PRINCIPAL:
        values.update(config_file=None, profile=None)
    if values["backend"] != "local":
        values["local_dir"] = None
    for name in ("local_dir", "config_file"):
        if values[name]:
            values[name] = os.path.abspath(os.path.expanduser(values[name]))
    return EndpointSpec(
        url=endpoint.url,
        deployment_id=getattr(endpoint, "deployment_id", None),
        name=getattr(endpoint, "name", None),
        settings=values,
    )


def runs_with_resource_principal(spark: Any) -> bool:
    """True on a Data Flow run (or session) set to ``dataflow.auth=resource_principal``, or wherever the
    driver itself has a resource principal."""
    conf = spark.sparkContext.getConf()
    for name in ("dataflow.auth", "spark.dataflow.auth"):
        if (conf.get(name) or "").strip().lower() == RESOURCE_PRINCIPAL:
            return True
    return bool(os.environ.get("OCI_RESOURCE_PRINCIPAL_VERSION"))
