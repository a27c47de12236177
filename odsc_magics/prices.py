"""OCI's list prices for GPU compute (USD per GPU-hour, pay as you go) and what a shape costs per hour.

Source: Oracle's price list as its Cost Estimator serves it, the public price-list API
https://apexapps.oracle.com/pls/apex/cetools/api/v1/products/?currencyCode=USD (the figures the GPU pricing
page https://www.oracle.com/cloud/compute/gpu/pricing/ shows), catalog ``lastUpdated`` 2026-08-14, as recorded
2026-08-22; read 2026-11-29. OCI prices compute the same in every commercial region. A GPU part's rate covers
the shape's OCPUs and memory too, so a GPU shape costs its GPU count × the rate. Boot volume, network egress
and any discount of the tenancy's contract are not counted.

Older parts are named by host generation, not by GPU: "GPU Standard - X7" prices the P100 shapes (GPU2, X7
hosts), "GPU Standard - V2" the V100 shapes (GPU3), "GPU - E3" BM.GPU4.8 and "GPU - E4" BM.GPU.B4.8 (both A100
40 GB, on AMD Rome and Milan hosts).

``%config LLMMagics.gpu_prices = {"A10": 1.6}`` (or env ``ODSC_MAGICS_GPU_PRICES='{"A10": 1.6}'``) replaces the
rate of the GPUs it names, e.g. with a contract's discounted rates; the others keep their list price.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LIST_PRICES",
    "READ_ON",
    "SOURCE",
    "ListPrice",
    "check_gpu_prices",
    "format_usd",
    "gpu_prices",
    "shape_price_per_hour",
    "usd_per_million_tokens",
]

SOURCE = (
    "OCI price list (Oracle Cost Estimator price-list API, apexapps.oracle.com/pls/apex/cetools/api/v1/products, "
    "catalog of 2026-08-14), pay-as-you-go list prices"
)
READ_ON = "2026-11-29"


@dataclass(frozen=True)
class ListPrice:
    """One GPU's list price, with the price-list part that sets it."""

    gpu: str
    usd_per_gpu_hour: float
    part: str
    product: str


LIST_PRICES: dict[str, ListPrice] = {
    p.gpu: p
    for p in (
        ListPrice("P100", 1.275, "B88517, B88518", "Compute - Bare Metal / Virtual Machine GPU Standard - X7"),
        ListPrice("V100", 2.95, "B89734", "Compute - GPU Standard - V2"),
        ListPrice("A10", 2.00, "B95909", "Compute - GPU - A10"),
        ListPrice("A100-40G", 3.05, "B92740, B93544", "Compute - GPU - E3, OCI - Compute - GPU - E4"),
        ListPrice("A100-80G", 4.00, "B95907", "Compute - GPU - A100 - v2"),
        ListPrice("L40S", 3.50, "B109479", "Compute - GPU - L40S"),
        ListPrice("H100", 10.00, "B98415", "Oracle Cloud Infrastructure - Compute - GPU - H100"),
        ListPrice("H200", 10.00, "B110519", "OCI - Compute - GPU - H200"),
        ListPrice("B200", 14.00, "B110978", "OCI - Compute - GPU - B200"),
        ListPrice("GB200", 16.00, "B110979", "OCI - Compute - GPU - GB200"),
        ListPrice("MI300X", 6.00, "B109485", "OCI - Compute - GPU - MI300X"),
    )
}
"""List price by GPU name (the names of the shape catalog, odsc_magics.sizing.SHAPES)."""


def check_gpu_prices(value: Any) -> dict[str, float]:
    """The ``gpu_prices`` setting as {GPU name: USD per GPU-hour}; ValueError saying what is wrong."""
    if not isinstance(value, Mapping):
        raise ValueError(f'a dict of GPU name to USD per GPU-hour, e.g. {{"A10": 1.6}}, not {type(value).__name__}')
    out: dict[str, float] = {}
    for gpu, price in value.items():
        if gpu not in LIST_PRICES:
            raise ValueError(f"keyed by GPU names ({', '.join(LIST_PRICES)}); {gpu!r} is not one")
        number = isinstance(price, int | float) and not isinstance(price, bool)
        if not number or not math.isfinite(price) or price < 0:
            raise ValueError(f"USD per GPU-hour as a number of 0 or more; {gpu!r} has {price!r}")
        out[gpu] = float(price)
    return out


def gpu_prices(settings: Any = None) -> dict[str, float]:
    """USD per GPU-hour by GPU name: the list prices, with the ``gpu_prices`` setting's rates over them."""
    from odsc_magics.config import resolve

    prices = {name: p.usd_per_gpu_hour for name, p in LIST_PRICES.items()}
    override, _ = resolve("gpu_prices", None, settings)
    prices.update(override or {})
    return prices


def shape_price_per_hour(shape: Any, prices: Mapping[str, float] | None = None) -> float | None:
    """USD per hour of one instance of ``shape`` (a ShapeInfo or name); None without a priced GPU."""
    from odsc_magics.sizing import shape_info

    info = shape_info(shape)
    table = prices if prices is not None else gpu_prices()
    if not info.is_gpu or info.gpu_model not in table:
        return None
    return info.gpu_count * table[info.gpu_model]


def usd_per_million_tokens(usd_per_hour: float | None, tokens_per_s: float | None) -> float | None:
    """What a million tokens cost at ``tokens_per_s`` on something billed ``usd_per_hour``."""
    if usd_per_hour is None or not tokens_per_s or tokens_per_s <= 0:
        return None
    return usd_per_hour / (tokens_per_s * 3600.0) * 1e6


def format_usd(value: float | None) -> str:
    """``$2.00``, ``$0.043`` (three significant figures under a dollar), ``$1,234``; empty for None."""
    if value is None:
        return ""
    if value >= 1000:
        return f"${value:,.0f}"
    if value >= 1:
        return f"${value:,.2f}"
    if value == 0:
        return "$0"
    return f"${value:.2g}" if value < 0.01 else f"${value:.3f}".rstrip("0").rstrip(".")
