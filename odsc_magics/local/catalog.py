"""The fixed catalog of the local backend: AQUA service models, model deployment shapes, service containers."""

from __future__ import annotations

import hashlib
import json

from odsc_magics.embedding_models import (
    CMD_KEY,
    CONTAINER_KEY,
    MAX_BATCH_TOKENS,
    MAX_CLIENT_BATCH_SIZE,
    TASK,
    TEI_CONTAINER,
    TEI_TAG,
    EmbeddingModel,
    tei_cmd,
)
from odsc_magics.embedding_models import MODELS as EMBEDDING_MODELS
from odsc_magics.vllm_container import BASE_PARAMS, PORT, RESTRICTED_FLAGS, VLLM_CONTAINER, VLLM_TAG

SERVICE_COMPARTMENT = "ocid1.compartment.oc1..aaaaaaaaodscservicemodelscompartmentlocalemulator000000000"
SERVICE_PROJECT = "ocid1.datascienceproject.oc1.iad.aaaaaaaaodscservicemodelsprojectlocalemulator000000000"
SERVICE_CREATED_BY = "ocid1.user.oc1..aaaaaaaaodscservicemodelsuserlocalemulator00000000000000000"
CATALOG_TIME = "2024-09-01T00:00:00.000Z"

# (display name, organization, license, task, max context, parameter count, shapes it is ready to deploy on)
_MODELS = [
    (
        "Mistral-7B-Instruct-v0.3",
        "Mistral AI",
        "Apache 2.0",
        "text_generation",
        32768,
        "7.25B",
        ["VM.GPU.A10.1", "VM.GPU.A10.2", "BM.GPU.A10.4", "BM.GPU.A100-V2.8", "BM.GPU.H100.8"],
    ),
    (
        "Meta-Llama-3.1-8B-Instruct",
        "Meta",
        "llama3.1",
        "text_generation",
        131072,
        "8.03B",
        ["VM.GPU.A10.2", "BM.GPU.A10.4", "BM.GPU.L40S.4", "BM.GPU.A100-V2.8", "BM.GPU.H100.8"],
    ),
    (
        "Meta-Llama-3.1-70B-Instruct",
        "Meta",
        "llama3.1",
        "text_generation",
        131072,
        "70.6B",
        ["BM.GPU.A100-V2.8", "BM.GPU.H100.8", "BM.GPU.H200.8"],
    ),
    (
        "Mixtral-8x7B-Instruct-v0.1",
        "Mistral AI",
        "Apache 2.0",
        "text_generation",
        32768,
        "46.7B",
        ["BM.GPU.A10.4", "BM.GPU.L40S.4", "BM.GPU.A100-V2.8", "BM.GPU.H100.8"],
    ),
    (
        "Phi-3-mini-4k-instruct",
        "Microsoft",
        "MIT",
        "text_generation",
        4096,
        "3.82B",
        ["VM.GPU.A10.1", "VM.GPU.A10.2", "BM.GPU.A10.4"],
    ),
    (
        "gemma-2-9b-it",
        "Google",
        "gemma",
        "text_generation",
        8192,
        "9.24B",
        ["VM.GPU.A10.2", "BM.GPU.A10.4", "BM.GPU.L40S.4", "BM.GPU.A100-V2.8"],
    ),
]

# name, coreCount (OCPUs), memoryInGBs (CPU), shapeSeries, GPUs, GPU memory GB
SHAPES = [
    ("VM.GPU.A10.1", 15, 240, "NVIDIA_GPU", 1, 24),
    ("VM.GPU.A10.2", 30, 480, "NVIDIA_GPU", 2, 48),
    ("BM.GPU.A10.4", 64, 1024, "NVIDIA_GPU", 4, 96),
    ("VM.GPU2.1", 12, 72, "NVIDIA_GPU", 1, 16),
    ("BM.GPU2.2", 28, 192, "NVIDIA_GPU", 2, 32),
    ("VM.GPU3.1", 6, 90, "NVIDIA_GPU", 1, 16),
    ("VM.GPU3.2", 12, 180, "NVIDIA_GPU", 2, 32),
    ("VM.GPU3.4", 24, 360, "NVIDIA_GPU", 4, 64),
    ("BM.GPU3.8", 24, 768, "NVIDIA_GPU", 8, 128),
    ("BM.GPU4.8", 64, 2048, "NVIDIA_GPU", 8, 320),
    ("BM.GPU.B4.8", 64, 2048, "NVIDIA_GPU", 8, 320),
    ("BM.GPU.A100-V2.8", 128, 2048, "NVIDIA_GPU", 8, 640),
    ("BM.GPU.H100.8", 112, 2048, "NVIDIA_GPU", 8, 640),
    ("BM.GPU.H200.8", 112, 3072, "NVIDIA_GPU", 8, 1128),
    ("BM.GPU.L40S.4", 112, 1024, "NVIDIA_GPU", 4, 192),
    ("BM.GPU.L40S-NC.4", 112, 1024, "NVIDIA_GPU", 4, 192),
    # The SDK's shapeSeries enum has no AMD GPU value; GENERIC is the closest it knows.
    ("BM.GPU.MI300X.8", 112, 2048, "GENERIC", 8, 1536),
    ("BM.GPU.B200.8", 128, 4096, "NVIDIA_GPU", 8, 1440),
    ("BM.GPU.GB200.4", 144, 1024, "NVIDIA_GPU", 4, 768),
    ("VM.Standard.E4.Flex", 64, 1024, "AMD_ROME", 0, 0),
]
SHAPE_NAMES = {row[0] for row in SHAPES}
FLEX_SHAPES = {"VM.Standard.E4.Flex"}


def _ocid(name: str) -> str:
    digest = hashlib.sha256(name.encode()).hexdigest()[:52]
    return f"ocid1.datasciencemodel.oc1.iad.amaaaaaa{digest}"


def _service_model(
    name: str, org: str, license_: str, task: str, context: int, parameters: str, shapes: list[str]
) -> dict:
    commit = hashlib.sha1(name.encode()).hexdigest()[:7]
    artifact = f"service_models/{name}/{commit}/artifact"
    return {
        "id": _ocid(name),
        "compartmentId": SERVICE_COMPARTMENT,
        "projectId": SERVICE_PROJECT,
        "displayName": name,
        "description": f"{name} from {org}, ready to deploy with the vLLM service container.",
        "lifecycleState": "ACTIVE",
        "lifecycleDetails": None,
        "timeCreated": CATALOG_TIME,
        "createdBy": SERVICE_CREATED_BY,
        "freeformTags": {
            "OCI_AQUA": "",
            "task": task,
            "organization": org,
            "license": license_,
            "ready_to_deploy": "true",
            "ready_to_fine_tune": "true" if "70B" not in name else "false",
            "model_format": "SAFETENSORS",
        },
        "definedTags": {},
        "customMetadataList": [
            {
                "key": "deployment-container",
                "value": VLLM_CONTAINER,
                "description": "Inference container",
                "category": "Other",
            },
            {
                "key": "artifact_location",
                "value": artifact,
                "description": "Model artifact prefix",
                "category": "Other",
            },
            {
                "key": "context_length",
                "value": str(context),
                "description": "Maximum context length",
                "category": "Other",
            },
            {
                "key": "parameter_count",
                "value": parameters,
                "description": "Number of model parameters",
                "category": "Other",
            },
        ],
        "definedMetadataList": [
            {
                "key": "DeploymentConfiguration",
                "value": None,
                "category": None,
                "description": None,
                "hasArtifact": True,
            },
        ],
        "category": "SERVICE",
        "isModelByReference": True,
        "_deploymentConfig": {
            "shape": shapes,
            "configuration": {
                shape: {
                    "parameters": {"VLLM_PARAMS": f"--max-model-len {4096 if '.A10.1' in shape else context}"},
                    "env": {},
                    "shape_info": {},
                    "multi_model_deployment": [],
                }
                for shape in shapes
            },
        },
        "_provenance": {
            "repositoryUrl": None,
            "gitBranch": None,
            "gitCommit": commit,
            "scriptDir": None,
            "trainingScript": None,
            "trainingId": None,
        },
    }


def _embedding_model(model: EmbeddingModel) -> dict:
    """A catalog embedding model as AQUA registers one: the TEI container, its command, task text_embedding."""
    shapes = ["VM.GPU.A10.1", "VM.GPU.A10.2", "BM.GPU.A10.4"]
    out = _service_model(
        model.name, model.organization, model.license, TASK, model.max_input_tokens, model.parameters, shapes
    )
    out["description"] = f"{model.name} from {model.organization}, ready to deploy with the TEI service container."
    out["freeformTags"]["ready_to_fine_tune"] = "false"
    artifact = next(m["value"] for m in out["customMetadataList"] if m["key"] == "artifact_location")
    metadata = {item["key"]: item for item in out["customMetadataList"]}
    metadata[CONTAINER_KEY]["value"] = TEI_CONTAINER
    extra = {
        CMD_KEY: (",".join(tei_cmd(artifact)), "Inference container cmd vars"),
        "hidden_size": (str(model.dimension), "Embedding dimension (config.json hidden_size)"),
        "max_position_embeddings": (str(model.max_input_tokens), "Tokens one input may hold"),
    }
    for key, (value, description) in extra.items():
        out["customMetadataList"].append(
            {"key": key, "value": value, "description": description, "category": "Other"}
        )
    for shape in shapes:
        out["_deploymentConfig"]["configuration"][shape]["parameters"] = {}
    return out


SERVICE_MODELS = [_service_model(*row) for row in _MODELS] + [_embedding_model(m) for m in EMBEDDING_MODELS]
SERVICE_MODELS_BY_ID = {model["id"]: model for model in SERVICE_MODELS}


def shape_summaries() -> list[dict]:
    """``list_model_deployment_shapes`` items."""
    return [
        {"name": name, "coreCount": cores, "memoryInGBs": memory, "shapeSeries": series}
        for name, cores, memory, series, _gpus, _gpu_memory in SHAPES
    ]


def public(resource: dict) -> dict:
    """The resource without the catalog's private (underscore) keys."""
    return {key: value for key, value in resource.items() if not key.startswith("_")}


# The vLLM service container family (``list_containers``): the latest version and the one before it.
_VLLM_TAGS = [(VLLM_TAG, True), ("0.6.2", False)]


def _vllm_container(tag: str, latest: bool) -> dict:
    return {
        "containerName": VLLM_CONTAINER,
        "displayName": f"vLLM {tag}",
        "familyName": VLLM_CONTAINER,
        "description": "vLLM OpenAI-compatible inference server for AI Quick Actions model deployments",
        "isLatest": latest,
        "targetWorkloads": ["MODEL_DEPLOYMENT"],
        "usages": ["INFERENCE"],
        "tag": tag,
        "lifecycleState": "ACTIVE",
        "workloadConfigurationDetailsList": [
            {
                "workloadType": "MODEL_DEPLOYMENT",
                "cmd": BASE_PARAMS,
                "serverPort": PORT,
                "healthCheckPort": PORT,
                "additionalConfigurations": {
                    "MODEL_DEPLOY_PREDICT_ENDPOINT": "/v1/completions",
                    "MODEL_DEPLOY_HEALTH_ENDPOINT": "",
                    "PORT": str(PORT),
                    "HEALTH_CHECK_PORT": str(PORT),
                    "platforms": "NVIDIA_GPU",
                    "modelFormats": "SAFETENSORS",
                    "restrictedParams": json.dumps(list(RESTRICTED_FLAGS)),
                },
            }
        ],
        "tagConfigurationList": [],
        "freeformTags": {},
        "definedTags": {},
    }


def _tei_container() -> dict:
    """The Text Embeddings Inference family (embedding models only)."""
    return {
        "containerName": TEI_CONTAINER,
        "displayName": f"Text Embeddings Inference {TEI_TAG}",
        "familyName": TEI_CONTAINER,
        "description": "Text Embeddings Inference server for AI Quick Actions embedding model deployments",
        "isLatest": True,
        "targetWorkloads": ["MODEL_DEPLOYMENT"],
        "usages": ["INFERENCE"],
        "tag": TEI_TAG,
        "lifecycleState": "ACTIVE",
        "workloadConfigurationDetailsList": [
            {
                "workloadType": "MODEL_DEPLOYMENT",
                "cmd": f"--max-client-batch-size {MAX_CLIENT_BATCH_SIZE} --max-batch-tokens {MAX_BATCH_TOKENS}",
                "serverPort": PORT,
                "healthCheckPort": PORT,
                "additionalConfigurations": {
                    "MODEL_DEPLOY_PREDICT_ENDPOINT": "/v1/embeddings",
                    "MODEL_DEPLOY_HEALTH_ENDPOINT": "",
                    "PORT": str(PORT),
                    "HEALTH_CHECK_PORT": str(PORT),
                    "platforms": "NVIDIA_GPU",
                    "modelFormats": "SAFETENSORS",
                    "restrictedParams": json.dumps(["--port", "--hostname", "--model-id"]),
                },
            }
        ],
        "tagConfigurationList": [],
        "freeformTags": {},
        "definedTags": {},
    }


CONTAINERS = [_vllm_container(tag, latest) for tag, latest in _VLLM_TAGS] + [_tei_container()]
