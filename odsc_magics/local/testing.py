"""Test helpers: start a local backend in a temporary state dir and create deployments on it."""

from __future__ import annotations

import atexit
import json
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from odsc_magics.vllm_container import BASE_PARAMS, deployment_details

__all__ = ["RunningBackend", "start_backend"]

DEFAULT_MODEL = "Mistral-7B-Instruct-v0.3"
_STARTED: list[subprocess.Popen] = []


@atexit.register
def _stop_leftovers() -> None:
    """Backends a crashed or interrupted test run did not stop."""
    for process in _STARTED:
        if process.poll() is None:
            process.kill()


class RunningBackend:
    """A local backend subprocess and what a client needs to reach it."""

    def __init__(self, info: dict, state_dir: Path, process: subprocess.Popen | None = None) -> None:
        self.info = info
        self.endpoint: str = info["endpoint"]
        self.config_file: str = info["config_file"]
        self.profile: str = info["profile"]
        self.compartment_id: str = info["compartment_id"]
        self.project_id: str = info["project_id"]
        self.region: str = info.get("region", "us-ashburn-1")
        self.pid: int = info.get("pid", process.pid if process else 0)
        self.state_dir = Path(state_dir)
        self.process = process
        self.deployment: dict | None = None
        self.chat_deployment: dict | None = None

    def __repr__(self) -> str:
        return f"RunningBackend(endpoint={self.endpoint!r}, state_dir={str(self.state_dir)!r})"

    def stats(self) -> dict:
        """``GET /_emulator/stats``."""
        with urllib.request.urlopen(f"{self.endpoint}/_emulator/stats", timeout=10) as response:
            return json.loads(response.read())

    def deployment_stats(self, deployment_id: str) -> dict:
        """The stats of one deployment (zeros if it has had no predict request)."""
        stats = self.stats()["deployments"].get(deployment_id)
        if stats is not None:
            return stats
        counters = ("predict_requests", "succeeded", "duplicate_successes", "timeouts", "running", "waiting")
        more = ("max_running", "max_kv_blocks_used", "max_num_seqs", "kv_blocks_total", "preemptions", "steps")
        tokens = ("prompt_tokens", "generation_tokens")
        return {
            **dict.fromkeys(counters + more + tokens, 0),
            "by_status": {},
            "faults": {},
            "throttles": {},
            "kv_cache_usage": 0.0,
            "busy_s": 0.0,
        }

    def oci_config(self) -> dict:
        """``oci.config.from_file(config_file, profile)``."""
        import oci

        return oci.config.from_file(self.config_file, self.profile)

    def signer(self):
        """An ``oci.signer.Signer`` for this backend's profile (usable as requests auth)."""
        import oci

        return oci.signer.Signer.from_config(self.oci_config())

    def session(self):
        """A ``requests.Session`` that signs every request for this backend."""
        import requests

        session = requests.Session()
        session.auth = self.signer()
        return session

    def data_science_client(self):
        """An oci ``DataScienceClient`` on this backend, without SDK retries or circuit breaker."""
        import oci

        return oci.data_science.DataScienceClient(
            self.oci_config(),
            service_endpoint=self.endpoint,
            retry_strategy=oci.retry.NoneRetryStrategy(),
            circuit_breaker_strategy=oci.circuit_breaker.NoCircuitBreakerStrategy(),
        )

    def model_deployment_client(self):
        """An oci ``ModelDeploymentClient`` (data plane) on this backend, without SDK retries."""
        import oci

        return oci.model_deployment.ModelDeploymentClient(
            self.oci_config(),
            service_endpoint=self.endpoint,
            retry_strategy=oci.retry.NoneRetryStrategy(),
            circuit_breaker_strategy=oci.circuit_breaker.NoCircuitBreakerStrategy(),
        )

    def service_model_id(self, name: str = DEFAULT_MODEL) -> str:
        """The OCID of a catalog (service) model by display name."""
        client = self.data_science_client()
        models = client.list_models(compartment_id=self.compartment_id, category="SERVICE", display_name=name).data
        if not models:
            raise LookupError(f"no service model named {name!r}")
        return models[0].id

    def create_deployment(
        self,
        name: str = "test-llm",
        *,
        chat: bool = False,
        model_name: str | None = None,
        shape: str = "VM.GPU.A10.1",
        wait: bool = True,
        max_model_len: int | None = 4096,
        logs: bool = False,
        params: str = "",
        instances: int = 1,
        bandwidth_mbps: int | None = None,
    ) -> dict:
        """Create an AQUA-style vLLM deployment through the oci SDK; returns {"id", "url", "name",
        "work_request_id"}. ``max_model_len=None`` leaves the model's own context; ``params`` adds vLLM flags to
        PARAMS; ``logs`` attaches the backend's access and predict logs. ``wait`` waits for SUCCEEDED
        (RuntimeError if it fails)."""
        import oci

        models = oci.data_science.models
        model_id = self.service_model_id(model_name or DEFAULT_MODEL)
        params = BASE_PARAMS + (f" --max-model-len {max_model_len}" if max_model_len else "") + (
            f" {params}" if params else ""
        )
        sizing = {"instances": instances}
        if bandwidth_mbps is not None:
            sizing["bandwidth_mbps"] = bandwidth_mbps
        category_logs = None
        if logs:
            ids = self.log_ids()
            category_logs = models.CategoryLogDetails(
                access=models.LogDetails(log_group_id=ids["group"], log_id=ids["access"]),
                predict=models.LogDetails(log_group_id=ids["group"], log_id=ids["predict"]),
            )
        details = deployment_details(
            name=name,
            model_id=model_id,
            model_name=model_name or DEFAULT_MODEL,
            base_model=f"service_models/{model_name or DEFAULT_MODEL}/artifact",
            project_id=self.project_id,
            compartment_id=self.compartment_id,
            shape=shape,
            params=params,
            chat=chat,
            logs=category_logs,
            **sizing,
        )
        client = self.data_science_client()
        response = client.create_model_deployment(details)
        deployment = {
            "id": response.data.id,
            "url": response.data.model_deployment_url,
            "name": name,
            "work_request_id": response.headers["opc-work-request-id"],
        }
        if wait:
            self.wait_work_request(deployment["work_request_id"])
        return deployment

    def log_ids(self) -> dict:
        """The backend's log group and its logs: {"group", "access", "predict"} (OCIDs)."""
        import oci

        management = oci.logging.LoggingManagementClient(
            self.oci_config(),
            service_endpoint=self.endpoint,
            retry_strategy=oci.retry.NoneRetryStrategy(),
            circuit_breaker_strategy=oci.circuit_breaker.NoCircuitBreakerStrategy(),
        )
        (group,) = management.list_log_groups(self.compartment_id, display_name="odsc-magics-local").data
        return {"group": group.id, **{entry.display_name: entry.id for entry in management.list_logs(group.id).data}}

    def finish_work_request(self, work_request_id: str, timeout: float = 60.0) -> Any:
        """Poll a work request until it ends; returns it (SUCCEEDED, FAILED or CANCELED)."""
        client = self.data_science_client()
        deadline = time.monotonic() + timeout
        while True:
            work_request = client.get_work_request(work_request_id).data
            if work_request.status in {"SUCCEEDED", "FAILED", "CANCELED"}:
                return work_request
            if time.monotonic() > deadline:
                raise TimeoutError(f"work request {work_request_id} still {work_request.status}")
            time.sleep(0.05)

    def wait_work_request(self, work_request_id: str, timeout: float = 60.0) -> Any:
        """Poll a work request until it is SUCCEEDED (returned) or FAILED/CANCELED (RuntimeError)."""
        work_request = self.finish_work_request(work_request_id, timeout)
        if work_request.status != "SUCCEEDED":
            raise RuntimeError(f"work request {work_request_id} ended {work_request.status}")
        return work_request

    def stop(self) -> None:
        """Stop the backend process (SIGTERM, SIGKILL after 10 s)."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=10)
            if self.process.stdout:
                self.process.stdout.close()
        else:
            from odsc_magics.local.process import stop

            stop(self.state_dir)


def start_backend(state_dir: str | Path, *flags: str, timeout: float = 30.0) -> RunningBackend:
    """Run ``python -m odsc_magics local --state-dir DIR --port 0 *flags`` and wait for its start line."""
    directory = Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    from odsc_magics.local.process import server_command

    command = server_command(directory, flags)
    log = open(directory / "server.log", "ab")  # noqa: SIM115 - handed to the child
    from odsc_magics.local.process import child_env

    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=child_env())
    log.close()
    _STARTED.append(process)
    lines: list[bytes] = []
    ready = threading.Event()

    def read_stdout() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if not ready.is_set():
                lines.append(line)
                ready.set()
        ready.set()

    threading.Thread(target=read_stdout, daemon=True).start()
    if not ready.wait(timeout) or not lines:
        process.kill()
        process.wait()
        log_text = (directory / "server.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the local backend did not start (exit code {process.returncode}):\n{log_text}")
    info = json.loads(lines[0])
    return RunningBackend(info, directory, process)
