"""The connection context: which backend a call reaches, and what happens when it cannot connect."""

from __future__ import annotations

import os
import time

import pytest

from odsc_magics.client import connect
from odsc_magics.config import LLMSettings
from odsc_magics.context import clear_contexts, get_context
from odsc_magics.errors import EndpointUnreachableError


def local_settings(backend, **traits) -> LLMSettings:
    return LLMSettings(backend="local", local_dir=str(backend.state_dir), **traits)


@pytest.mark.parametrize("url", ["http://127.0.0.1:1/x", "http://127.0.0.2:1/x/predict"])
@pytest.mark.parametrize("streamed", [False, True])
def test_a_url_nothing_listens_on_fails_at_once_naming_it(backend, url: str, streamed: bool) -> None:
    endpoint = connect(url, settings=local_settings(backend))
    started = time.perf_counter()
    with pytest.raises(EndpointUnreachableError) as caught:
        if streamed:
            list(endpoint.stream_complete("Hi", max_tokens=4))
        else:
            endpoint.complete("Hi", max_tokens=4)
    elapsed = time.perf_counter() - started
    print(f"{url} streamed={streamed}: failed after {elapsed:.3f} s")
    assert elapsed < 2.0  # no backoff: nothing will be listening a few seconds later either
    error = caught.value
    assert url.removesuffix("/predict") in error.message and "connection refused" in error.message
    assert "local backend" not in f"{error.message} {error.hint}"


@pytest.mark.parametrize("plane", ["data", "control"])
def test_the_local_backend_refusing_drops_the_context_and_the_next_call_restarts_it(tmp_path, plane: str) -> None:
    from odsc_magics.local.process import ensure_running, stop

    settings = LLMSettings(backend="local", local_dir=str(tmp_path))
    info = ensure_running(tmp_path, extra_args=("--deploy-seconds", "0.2", "--ttft-ms", "0"))
    try:
        clear_contexts()
        context = get_context(settings)
        assert context.local_endpoint == info["endpoint"]
        # Its pid now names a live process that is not the backend (reused), so only the refusal can tell.
        context.local_info = {**context.local_info, "pid": os.getpid()}
        assert stop(tmp_path)
        assert get_context(settings) is context
        started = time.perf_counter()
        with pytest.raises(EndpointUnreachableError, match=r"local backend .*not running"):
            if plane == "data":
                url = f"{info['endpoint']}/ocid1.datasciencemodeldeployment.oc1.iad.x"
                connect(url, settings=settings).complete("Hi")
            else:
                client = context.data_science()
                context.call("Listing", client.list_model_deployments, compartment_id=context.compartment_id)
        assert time.perf_counter() - started < 2.0
        fresh = get_context(settings)
        assert fresh is not context and fresh.local_endpoint != info["endpoint"]
    finally:
        stop(tmp_path)
        clear_contexts()


def test_which_transport_errors_mean_nothing_can_connect() -> None:
    import socket

    import requests
    import urllib3

    from odsc_magics.context import _connect_failure

    def wrapped(cause: BaseException) -> requests.exceptions.ConnectionError:
        try:
            try:
                raise cause
            except OSError as exc:
                raise urllib3.exceptions.NewConnectionError(None, f"Failed: {exc}") from exc
        except urllib3.exceptions.NewConnectionError as reason:
            return requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/x", reason))

    assert _connect_failure(wrapped(ConnectionRefusedError(111, "refused"))) == "connection refused"
    assert _connect_failure(wrapped(socket.gaierror(-2, "Name or service not known"))) == "unknown host"
    # A connection that was open and then dropped may work on the next attempt: retried, not reported at once.
    assert _connect_failure(requests.exceptions.ConnectionError(ConnectionResetError(104, "reset"))) is None
    assert _connect_failure(requests.exceptions.ChunkedEncodingError("cut")) is None
