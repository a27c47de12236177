"""The /odsc-magics/ REST handlers against a local backend, through a real Jupyter server (jp_fetch)."""

from __future__ import annotations

import json

import pytest

from odsc_magics._version import __version__
from odsc_magics.server import service

ROUTES = [
    ("GET", ("odsc-magics", "status")),
    ("GET", ("odsc-magics", "deployments")),
    ("GET", ("odsc-magics", "deployments", "x")),
    ("GET", ("odsc-magics", "deployments", "x", "logs")),
    ("POST", ("odsc-magics", "deployments", "x", "deactivate")),
    ("DELETE", ("odsc-magics", "deployments", "x")),
]


def _json(response) -> dict:
    return json.loads(response.body.decode())


async def _fetch(jp_fetch, *parts: str, method: str = "GET", **kwargs):
    if method == "POST":
        kwargs.setdefault("body", b"{}")
    return await jp_fetch(*parts, method=method, raise_error=False, **kwargs)


async def _wait_state(jp_fetch, deployment_id: str, states: tuple[str, ...], polls: int = 200) -> dict:
    import asyncio

    for _ in range(polls):
        found = _json(await _fetch(jp_fetch, "odsc-magics", "deployments", deployment_id))
        if found["state"] in states:
            return found
        await asyncio.sleep(0.1)
    return found


@pytest.mark.parametrize(("method", "parts"), ROUTES)
async def test_request_without_token_is_rejected(jp_fetch, method, parts):
    # When a request carries no token
    response = await _fetch(jp_fetch, *parts, method=method, headers={"Authorization": ""})
    # Then the server refuses it before any handler code runs
    assert response.code == 403


async def test_status_names_version_and_backend(jp_fetch, backend, use_backend):
    use_backend(backend)
    response = await _fetch(jp_fetch, "odsc-magics", "status")
    assert response.code == 200
    assert _json(response) == {"version": __version__, "backend": "local", "local_dir": str(backend.state_dir)}


async def test_list_shows_a_deployment_created_through_the_python_api(jp_fetch, backend, use_backend):
    # Given a deployment created through the oci SDK on the local backend
    use_backend(backend)
    # When the panel lists deployments
    response = await _fetch(jp_fetch, "odsc-magics", "deployments")
    # Then it is there, with what the panel shows
    assert response.code == 200
    listed = {d["name"]: d for d in _json(response)["deployments"]}
    assert {"test-llm", "test-chat"} <= set(listed)
    one = listed["test-llm"]
    assert one["id"] == backend.deployment["id"]
    assert one["state"] == "ACTIVE"
    assert one["shape"] == "VM.GPU.A10.1"
    assert one["url"].rstrip("/") == backend.deployment["url"].rstrip("/")
    assert one["model"]
    assert one["created"]
    assert one["chat"] is False
    assert listed["test-chat"]["chat"] is True


async def test_get_one_by_id_and_unknown_is_404(jp_fetch, backend, use_backend):
    use_backend(backend)
    found = _json(await _fetch(jp_fetch, "odsc-magics", "deployments", backend.deployment["id"]))
    assert found["name"] == "test-llm"
    missing = await _fetch(jp_fetch, "odsc-magics", "deployments", "ocid1.datasciencemodeldeployment.oc1..nope")
    assert missing.code == 404
    body = _json(missing)
    assert body["kind"] == "not_found"
    assert body["message"]


async def test_deactivate_then_activate(jp_fetch, backend_factory, use_backend):
    running = backend_factory()
    created = running.create_deployment("lifecycle")
    use_backend(running)
    # When the panel deactivates an ACTIVE deployment
    response = await _fetch(jp_fetch, "odsc-magics", "deployments", created["id"], "deactivate", method="POST")
    # Then the request is accepted and the deployment ends INACTIVE
    assert response.code == 200, response.body
    assert _json(response)["state"] in ("UPDATING", "INACTIVE")
    assert (await _wait_state(jp_fetch, created["id"], ("INACTIVE",)))["state"] == "INACTIVE"
    # And activating brings it back
    response = await _fetch(jp_fetch, "odsc-magics", "deployments", created["id"], "activate", method="POST")
    assert response.code == 200, response.body
    assert (await _wait_state(jp_fetch, created["id"], ("ACTIVE",)))["state"] == "ACTIVE"


async def test_unknown_action_is_not_routed(jp_fetch, backend, use_backend):
    use_backend(backend)
    response = await _fetch(jp_fetch, "odsc-magics", "deployments", backend.deployment["id"], "explode", method="POST")
    assert response.code == 404


async def test_delete(jp_fetch, backend_factory, use_backend):
    running = backend_factory()
    created = running.create_deployment("to-delete")
    use_backend(running)
    # When an ACTIVE deployment is deleted with confirmation (force)
    response = await _fetch(
        jp_fetch, "odsc-magics", "deployments", created["id"], method="DELETE", params={"force": "true"}
    )
    # Then it goes DELETING, then leaves the list
    assert response.code == 200, response.body
    assert _json(response)["state"] in ("DELETING", "DELETED")
    assert (await _wait_state(jp_fetch, created["id"], ("DELETED",)))["state"] == "DELETED"
    listed = _json(await _fetch(jp_fetch, "odsc-magics", "deployments"))["deployments"]
    assert created["id"] not in {d["id"] for d in listed}


async def test_logs_are_passed_through_with_tail(jp_fetch, monkeypatch):
    seen = {}

    def fake_logs(deployment: str, tail: int) -> list[dict]:
        seen.update(deployment=deployment, tail=tail)
        return [{"time": "2026-01-01T00:00:00Z", "kind": "predict", "message": "ready"}]

    monkeypatch.setattr(service, "logs", fake_logs)
    response = await _fetch(jp_fetch, "odsc-magics", "deployments", "my-llm", "logs", params={"tail": "7"})
    assert response.code == 200
    assert _json(response)["logs"][0]["message"] == "ready"
    assert seen == {"deployment": "my-llm", "tail": 7}
    bad = await _fetch(jp_fetch, "odsc-magics", "deployments", "my-llm", "logs", params={"tail": "many"})
    assert bad.code == 400


async def test_logs_of_a_deployment_with_logs(jp_fetch, backend, use_backend):
    # Given a deployment created with the backend's access and predict logs, which has answered a prediction
    created = backend.create_deployment("with-logs", logs=True)
    from odsc_magics.client import connect
    from odsc_magics.config import LLMSettings

    use_backend(backend)
    connect(created["id"], settings=LLMSettings()).complete("Hello", max_tokens=2)
    # When the panel asks for its logs
    response = await _fetch(jp_fetch, "odsc-magics", "deployments", created["id"], "logs", params={"tail": "200"})
    # Then it gets the recent records, oldest first
    assert response.code == 200, response.body
    records = _json(response)["logs"]
    assert records
    assert {"time", "kind", "message"} <= set(records[0])
    assert {r["kind"] for r in records} <= {"access", "predict"}
    assert [r["time"] for r in records] == sorted(r["time"] for r in records)


async def test_logs_of_a_deployment_without_logs_say_what_to_configure(jp_fetch, backend, use_backend):
    # Given a deployment created without logs
    use_backend(backend)
    # When the panel asks for its logs
    response = await _fetch(jp_fetch, "odsc-magics", "deployments", backend.deployment["id"], "logs")
    # Then a validation error says it has no logs and how to deploy with them
    assert response.code == 400
    body = _json(response)
    assert body["kind"] == "validation"
    assert body["message"] == "The model deployment test-llm has no logs configured."
    assert "--log-group" in body["hint"]


async def test_no_credentials_explains_what_to_configure(jp_fetch, monkeypatch, tmp_path, use_backend):
    # Given the OCI backend and no OCI config file at all
    monkeypatch.setenv("ODSC_MAGICS_BACKEND", "oci")
    monkeypatch.setenv("OCI_CONFIG_FILE", str(tmp_path / "missing-config"))
    monkeypatch.setenv("ODSC_MAGICS_CONFIG_FILE", str(tmp_path / "missing-config"))
    # When the panel lists deployments
    response = await _fetch(jp_fetch, "odsc-magics", "deployments")
    # Then the answer says it is a configuration problem, with the next step
    assert response.code == 400
    body = _json(response)
    assert body["kind"] == "configuration"
    assert body["hint"]
