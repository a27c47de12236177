"""The platform's predict front end in the local backend: the 60 s limit, the bandwidth, the tenancy's rate.

The limits and messages are odsc_magics.predict_limits's. All limits are in simulated time: with
``--time-scale X`` they pass X times faster in real time.
"""

from __future__ import annotations

import time

from odsc_magics.local.apierror import ApiError
from odsc_magics.predict_limits import (
    BANDWIDTH_MESSAGE,
    TENANCY_MESSAGE,
    TENANCY_RPS,
    TIMEOUT_MESSAGE,
    TIMEOUT_S,
)
from odsc_magics.vllm_container import BANDWIDTH_MBPS

DEFAULT_BANDWIDTH_MBPS = BANDWIDTH_MBPS
# Throttle kinds as /_emulator/stats counts them.
BANDWIDTH, TENANCY_RATE, CAPACITY = "bandwidth", "tenancy_rate", "capacity"


def service_timeout() -> ApiError:
    return ApiError(500, "InternalServerError", TIMEOUT_MESSAGE)


def bandwidth_exceeded() -> ApiError:
    return ApiError(429, "TooManyRequests", BANDWIDTH_MESSAGE)


def tenancy_rate_exceeded() -> ApiError:
    return ApiError(429, "TooManyRequests", TENANCY_MESSAGE)


class Bucket:
    """A leaky bucket in real seconds: ``rate`` units drain per second; a new load is let in while the level is
    at most ``burst`` (so one request larger than the burst still passes on an idle bucket)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.level = 0.0
        self._at = time.monotonic()

    def _drain(self) -> None:
        now = time.monotonic()
        self.level = max(0.0, self.level - (now - self._at) * self.rate)
        self._at = now

    def admits(self) -> bool:
        self._drain()
        return self.level <= self.burst

    def add(self, amount: float) -> None:
        self._drain()
        self.level += amount


class FrontEnd:
    """The limits of one emulated tenancy, scaled to real time by ``time_scale``."""

    def __init__(self, *, time_scale: float = 1.0, tenancy_rps: float = TENANCY_RPS) -> None:
        self.time_scale = time_scale
        self.timeout_s = TIMEOUT_S / time_scale  # real seconds
        # Up to one second's worth of requests at once, then `tenancy_rps` per simulated second.
        self._tenancy = Bucket(tenancy_rps * time_scale, max(0.0, tenancy_rps - 1))
        self._bandwidth: dict[str, tuple[float, Bucket]] = {}

    def admit_request(self) -> bool:
        """Whether the tenancy's request rate lets one more predict request in (and count it if so)."""
        if not self._tenancy.admits():
            return False
        self._tenancy.add(1)
        return True

    def bandwidth(self, deployment_id: str, mbps: float) -> Bucket:
        """The byte bucket of a deployment's load balancer: ``mbps`` megabits per simulated second."""
        held = self._bandwidth.get(deployment_id)
        if held is None or held[0] != mbps:
            rate = mbps * 1e6 / 8  # bytes per simulated second
            held = self._bandwidth[deployment_id] = (mbps, Bucket(rate * self.time_scale, rate))
        return held[1]


def bandwidth_mbps(deployment: dict) -> float:
    """The deployment's provisioned load-balancer bandwidth (``bandwidthMbps``, default 10)."""
    config = deployment.get("modelDeploymentConfigurationDetails") or {}
    value = (config.get("modelConfigurationDetails") or {}).get("bandwidthMbps")
    try:
        mbps = float(value)
    except (TypeError, ValueError):
        return float(DEFAULT_BANDWIDTH_MBPS)
    return mbps if mbps > 0 else float(DEFAULT_BANDWIDTH_MBPS)
