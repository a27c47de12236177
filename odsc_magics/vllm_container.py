"""The AI Quick Actions vLLM serving container: its image, the flags it sets, its PARAMS, the deploy request."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

__all__ = [
    "BASE_PARAMS",
    "PORT",
    "RESTRICTED_FLAGS",
    "SERVED_MODEL_NAME",
    "VLLM_CONTAINER",
    "VLLM_IMAGE",
    "VLLM_TAG",
    "deployment_details",
    "flag_values",
    "max_model_len",
]

VLLM_CONTAINER = "odsc-vllm-serving"
VLLM_TAG = "0.6.4.post1.2"
VLLM_IMAGE = f"dsmc://{VLLM_CONTAINER}:{VLLM_TAG}"
SERVED_MODEL_NAME = "odsc-llm"
BASE_PARAMS = f"--served-model-name {SERVED_MODEL_NAME} --seed 42"
RESTRICTED_FLAGS = ("--port", "--host", "--served-model-name", "--seed")  # the serving container sets them
PORT = 8080
BANDWIDTH_MBPS = 10
ROUTES = {True: "/v1/chat/completions", False: "/v1/completions"}  # chat? -> MODEL_DEPLOY_PREDICT_ENDPOINT


def flag_values(params: str | None) -> dict[str, str]:
    """The ``--flag value`` / ``--flag=value`` pairs of a PARAMS string (a bare flag maps to ``""``).

    A string shlex cannot split (an unclosed quote) is read word by word, as the container's shell would fail
    to; the last occurrence of a flag wins, as in vLLM's argument parser.
    """
    try:
        words = shlex.split(params or "")
    except ValueError:
        words = (params or "").split()
    values: dict[str, str] = {}
    for index, word in enumerate(words):
        if not word.startswith("--"):
            continue
        name, equals, value = word.partition("=")
        if not equals:
            following = words[index + 1] if index + 1 < len(words) else ""
            value = "" if following.startswith("--") else following
        values[name] = value
    return values


def max_model_len(params: str | None) -> int | None:
    """The ``--max-model-len`` of a PARAMS string, if it gives a whole number."""
    value = flag_values(params).get("--max-model-len", "")
    return int(value) if value.isdigit() else None


def deployment_details(
    *,
    name: str,
    model_id: str,
    model_name: str,
    base_model: str,
    project_id: str,
    compartment_id: str,
    shape: str,
    params: str,
    chat: bool = False,
    instances: int = 1,
    bandwidth_mbps: int = BANDWIDTH_MBPS,
    env: Mapping[str, str] | None = None,
    logs: Any = None,
    tags: Mapping[str, str] | None = None,
) -> Any:
    """The ``CreateModelDeploymentDetails`` AI Quick Actions sends for a vLLM deployment of a model.

    ``env`` adds environment variables after the ones the container reads (PARAMS, the route, the model, ports);
    ``tags`` adds freeform tags to the AQUA ones.
    """
    variables = {
        "PARAMS": params,
        "MODEL_DEPLOY_PREDICT_ENDPOINT": ROUTES[bool(chat)],
        "BASE_MODEL": base_model,
        "PORT": str(PORT),
        "HEALTH_CHECK_PORT": str(PORT),
        **{str(key): str(value) for key, value in (env or {}).items()},
    }
    return aqua_deployment_details(
        name=name,
        description=f"{model_name} served by vLLM",
        model_id=model_id,
        model_name=model_name,
        project_id=project_id,
        compartment_id=compartment_id,
        shape=shape,
        instances=instances,
        bandwidth_mbps=bandwidth_mbps,
        image=VLLM_IMAGE,
        variables=variables,
        logs=logs,
        tags=tags,
    )


def aqua_deployment_details(
    *,
    name: str,
    description: str,
    model_id: str,
    model_name: str,
    project_id: str,
    compartment_id: str,
    shape: str,
    instances: int,
    bandwidth_mbps: int,
    image: str,
    variables: Mapping[str, str],
    cmd: list[str] | None = None,
    port: int = PORT,
    logs: Any = None,
    tags: Mapping[str, str] | None = None,
) -> Any:
    """The layout of the ``CreateModelDeploymentDetails`` AI Quick Actions sends for a service container (vLLM,
    TEI): one instance configuration, the container's image, command, port and environment, AQUA's tags."""
    from oci.data_science import models as m

    return m.CreateModelDeploymentDetails(
        display_name=name,
        description=description,
        project_id=project_id,
        compartment_id=compartment_id,
        freeform_tags={"OCI_AQUA": "active", "aqua_model_name": model_name, **dict(tags or {})},
        category_log_details=logs,
        model_deployment_configuration_details=m.SingleModelDeploymentConfigurationDetails(
            deployment_type="SINGLE_MODEL",
            model_configuration_details=m.ModelConfigurationDetails(
                model_id=model_id,
                instance_configuration=m.InstanceConfiguration(instance_shape_name=shape),
                scaling_policy=m.FixedSizeScalingPolicy(policy_type="FIXED_SIZE", instance_count=instances),
                bandwidth_mbps=bandwidth_mbps,
            ),
            environment_configuration_details=m.OcirModelDeploymentEnvironmentConfigurationDetails(
                environment_configuration_type="OCIR_CONTAINER",
                image=image,
                cmd=cmd,
                server_port=port,
                health_check_port=port,
                environment_variables=dict(variables),
                predict_api_specification="openai",
            ),
        ),
    )
