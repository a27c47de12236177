"""How tasks sign: the endpoint's settings travel to executors, credentials come from where the tasks run."""

from __future__ import annotations

import pickle

from odsc_magics.client import connect
from odsc_magics.config import LLMSettings
from odsc_magics.spark.executor_endpoint import runs_with_resource_principal, spec_of


class Session:
    def __init__(self, conf: dict) -> None:
        self.sparkContext = type("SC", (), {"getConf": lambda _: type("C", (), {"get": lambda _, k: conf.get(k)})()})()


def test_locally_tasks_sign_with_the_local_backends_profile_and_reach_it(spark_backend):
    settings = LLMSettings(backend="local", local_dir=str(spark_backend.state_dir))
    endpoint = connect(spark_backend.deployment["url"], settings=settings)
    spec = pickle.loads(pickle.dumps(spec_of(endpoint, resource_principal=False)))
    assert spec.settings["auth"] == "api_key"
    assert spec.settings["config_file"] == spark_backend.config_file
    assert spec.settings["profile"] == spark_backend.profile
    before = spark_backend.deployment_stats(spark_backend.deployment["id"])["succeeded"]
    assert spec.endpoint().complete("Hello", max_tokens=3, max_retries=0).text
    assert spark_backend.deployment_stats(spark_backend.deployment["id"])["succeeded"] == before + 1


def test_on_data_flow_tasks_sign_as_the_runs_resource_principal_and_carry_no_profile(spark_backend, monkeypatch):
    settings = LLMSettings(backend="local", local_dir=str(spark_backend.state_dir))
    endpoint = connect(spark_backend.deployment["url"], settings=settings)
    spec = spec_of(endpoint, resource_principal=True)
    assert spec.settings["auth"] == "resource_principal" and spec.settings["backend"] == "oci"
    assert spec.settings["config_file"] is None and spec.settings["profile"] is None
    assert spec.settings["local_dir"] is None
    assert runs_with_resource_principal(Session({"dataflow.auth": "resource_principal"}))
    assert not runs_with_resource_principal(Session({}))
    monkeypatch.setenv("OCI_RESOURCE_PRINCIPAL_VERSION", "2.2")
    assert runs_with_resource_principal(Session({}))
