"""The limits of a model deployment's predict front end and the messages it answers with when one is hit.

Sources, read 2026-11-29:
- docs.oracle.com/en-us/iaas/Content/data-science/using/model-dep-predict-endpoint.htm: a ``/predict`` that runs
  past 60 seconds answers 500 InternalServerError, "Service Timeout: a 60 second timeout for the /predict
  endpoint exists. This timeout value can't be changed."
- docs.oracle.com/en-us/iaas/Content/data-science/using/model-dep-invoke-throttling.htm: throttled requests
  answer 429 TooManyRequests, "LB bandwidth limit exceeded. Consider increasing the provisioned load balancer
  bandwidth to avoid these errors." or "Tenancy request-rate limit exceeded. Please use the OCI Console to
  submit a support ticket for your tenancy to increase the request limit."
- docs.oracle.com/en-us/iaas/data-science/using/model-dep-invoke.htm: at most 150 requests per second per
  tenancy; a deployment's ``bandwidthMbps`` defaults to 10 (odsc_magics.vllm_container.BANDWIDTH_MBPS, as AQUA
  sends it).

The local backend answers with these; the client's retry policy recognises them by the phrases below.
"""

from __future__ import annotations

__all__ = [
    "BANDWIDTH_MESSAGE",
    "BANDWIDTH_PHRASE",
    "PAYLOAD_LIMIT_BYTES",
    "TENANCY_MESSAGE",
    "TENANCY_PHRASE",
    "TENANCY_RPS",
    "TIMEOUT_MESSAGE",
    "TIMEOUT_PHRASE",
    "TIMEOUT_S",
]

TIMEOUT_S = 60.0
TENANCY_RPS = 150
TIMEOUT_MESSAGE = (
    "Service Timeout: a 60 second timeout for the /predict endpoint exists. This timeout value can't be changed."
)
BANDWIDTH_MESSAGE = (
    "LB bandwidth limit exceeded. Consider increasing the provisioned load balancer bandwidth to avoid these errors."
)
TENANCY_MESSAGE = (
    "Tenancy request-rate limit exceeded. Please use the OCI Console to submit a support ticket for your tenancy "
    "to increase the request limit."
)
# What identifies each message, lower-cased (the wording around it may change).
TIMEOUT_PHRASE = "service timeout"
BANDWIDTH_PHRASE = "bandwidth limit exceeded"
TENANCY_PHRASE = "request-rate limit exceeded"

# docs.oracle.com/en-us/iaas/data-science/using/model-dep-invoke.htm: a predict request's payload is limited to
# 10 MB (413 PayloadTooLarge past it); counted here as 10**7 bytes, the smaller reading of "MB".
PAYLOAD_LIMIT_BYTES = 10_000_000
