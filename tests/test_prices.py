"""GPU list prices against Oracle's price list, shape prices, and the `gpu_prices` setting that overrides them."""

from __future__ import annotations

import pytest
from traitlets import TraitError

from odsc_magics.config import LLMSettings, describe, resolve
from odsc_magics.errors import ConfigurationError
from odsc_magics.prices import (
    LIST_PRICES,
    format_usd,
    gpu_prices,
    shape_price_per_hour,
    usd_per_million_tokens,
)
from odsc_magics.sizing import SHAPES

# USD per GPU-hour, pay as you go, transcribed from Oracle's Cost Estimator price-list API
# (apexapps.oracle.com/pls/apex/cetools/api/v1/products/?currencyCode=USD, catalog lastUpdated 2026-08-14),
# by part number: B95909 A10, B92740/B93544 (GPU - E3/E4) A100 40 GB, B95907 A100 80 GB, B98415 H100,
# B110519 H200, B109479 L40S, B109485 MI300X, B110978 B200, B110979 GB200, B89734 V100, B88517/B88518 P100.
ORACLE = {
    "A10": 2.00,
    "A100-40G": 3.05,
    "A100-80G": 4.00,
    "H100": 10.00,
    "H200": 10.00,
    "L40S": 3.50,
    "MI300X": 6.00,
    "B200": 14.00,
    "GB200": 16.00,
    "V100": 2.95,
    "P100": 1.275,
}


@pytest.mark.parametrize(("gpu", "usd"), sorted(ORACLE.items()))
def test_list_prices_are_oracles(gpu: str, usd: float) -> None:
    assert LIST_PRICES[gpu].usd_per_gpu_hour == pytest.approx(usd)


def test_every_gpu_shape_of_the_catalog_has_a_price() -> None:
    gpus = {s.gpu_model for s in SHAPES.values() if s.is_gpu}
    assert gpus <= set(LIST_PRICES), gpus - set(LIST_PRICES)


def test_a_shape_costs_its_gpus() -> None:
    prices = gpu_prices(LLMSettings())
    assert shape_price_per_hour("VM.GPU.A10.1", prices) == pytest.approx(2.00)
    assert shape_price_per_hour("VM.GPU.A10.2", prices) == pytest.approx(4.00)
    assert shape_price_per_hour("BM.GPU.A10.4", prices) == pytest.approx(8.00)
    assert shape_price_per_hour("BM.GPU4.8", prices) == pytest.approx(24.40)
    assert shape_price_per_hour("BM.GPU.H100.8", prices) == pytest.approx(80.00)
    assert shape_price_per_hour("BM.GPU.MI300X.8", prices) == pytest.approx(48.00)
    assert shape_price_per_hour("VM.Standard.E4.Flex", prices) is None  # priced per OCPU, not here
    assert shape_price_per_hour("VM.GPU.Unknown.1", prices) is None


def test_price_per_million_tokens() -> None:
    # $2.00 an hour at 1,000 tokens/s: 3.6 M tokens an hour, so $0.556 per million.
    assert usd_per_million_tokens(2.0, 1000.0) == pytest.approx(2.0 / 3.6)
    assert usd_per_million_tokens(None, 1000.0) is None
    assert usd_per_million_tokens(2.0, 0.0) is None


def test_format_usd() -> None:
    assert format_usd(80.0) == "$80.00"
    assert format_usd(2.0) == "$2.00"
    assert format_usd(0.556) == "$0.556"
    assert format_usd(0.5) == "$0.5"
    assert format_usd(0.0042) == "$0.0042"
    assert format_usd(12345.6) == "$12,346"
    assert format_usd(None) == ""


def test_config_overrides_the_gpus_it_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ODSC_MAGICS_GPU_PRICES", raising=False)
    settings = LLMSettings()
    assert resolve("gpu_prices", settings=settings) == (None, "default")
    settings.gpu_prices = {"A10": 1.5}
    prices = gpu_prices(settings)
    assert prices["A10"] == 1.5 and prices["H100"] == 10.0
    assert shape_price_per_hour("VM.GPU.A10.2", prices) == pytest.approx(3.0)
    assert dict((n, s) for n, _, s in describe(settings))["gpu_prices"] == "%config"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a10": 1.5}, "'a10' is not one"),
        ({"A10": -1}, "'A10' has -1"),
        ({"A10": True}, "'A10' has True"),
        ({"A10": "2"}, "'A10' has '2'"),
        ({"A10": float("nan")}, "'A10' has nan"),
    ],
)
def test_config_refuses_a_bad_price_and_keeps_the_old_one(value: dict, message: str) -> None:
    settings = LLMSettings(gpu_prices={"H100": 8})
    with pytest.raises(TraitError, match=r"LLMSettings\.gpu_prices must be") as caught:
        settings.gpu_prices = value
    assert message in str(caught.value)
    assert settings.gpu_prices == {"H100": 8.0}


def test_environment_sets_prices_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODSC_MAGICS_GPU_PRICES", '{"H100": 7, "A10": 1.25}')
    assert resolve("gpu_prices", settings=LLMSettings()) == ({"H100": 7.0, "A10": 1.25}, "env ODSC_MAGICS_GPU_PRICES")
    assert gpu_prices(LLMSettings())["H100"] == 7.0
    monkeypatch.setenv("ODSC_MAGICS_GPU_PRICES", "{H100: 7}")
    with pytest.raises(ConfigurationError, match="ODSC_MAGICS_GPU_PRICES must be a JSON object"):
        gpu_prices(LLMSettings())
    monkeypatch.setenv("ODSC_MAGICS_GPU_PRICES", '{"H100": -7}')
    with pytest.raises(ConfigurationError, match="'H100' has -7"):
        gpu_prices(LLMSettings())
