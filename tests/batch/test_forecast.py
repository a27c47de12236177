"""estimate_frame and df.llm.estimate against the local backend: the prompts counted as the server counts them,
the time and cost of the deployment's shape, refusals naming the argument, and nothing sent."""

from __future__ import annotations

import pandas as pd
import pytest

from odsc_magics import errors
from odsc_magics.batch import FrameEstimate, estimate_frame, predict_frame
from odsc_magics.client import connect
from odsc_magics.config import LLMSettings, use_settings
from odsc_magics.control_plane import get_deployment


@pytest.fixture(autouse=True)
def _no_runtime_target(monkeypatch: pytest.MonkeyPatch) -> None:
    """No default deployment left by a deploy() earlier in the same process: each test names its own."""
    import odsc_magics.config as config

    monkeypatch.setattr(config, "_runtime_target", None)


@pytest.fixture
def settings(backend):
    mine = LLMSettings(backend="local", local_dir=str(backend.state_dir))
    use_settings(mine)
    yield mine
    use_settings(LLMSettings())


def reviews(rows: int) -> pd.DataFrame:
    words = ["fine", "broken on arrival, sadly", "works; loud?", "the lid (plastic) cracked"]
    return pd.DataFrame({"text": [f"Review {n}: {words[n % 4]}" for n in range(rows)], "lang": ["en"] * rows})


def test_prompt_tokens_are_what_the_server_counts(backend, settings) -> None:
    frame = reviews(12)
    endpoint = connect(backend.deployment["url"], settings=settings)
    est = estimate_frame(frame, "Classify: {{ text }}", deployment=endpoint, max_tokens=3)
    out = predict_frame(frame, "Classify: {{ text }}", deployment=endpoint, progress=False, max_tokens=3)
    assert est.rows == est.prompts == 12 and est.skipped == 0
    assert est.prompt_tokens == int(out["prompt_tokens"].sum())
    assert est.max_prompt_tokens == int(out["prompt_tokens"].max())
    assert est.output_tokens == 12 * 3 and est.max_tokens == 3


def test_chat_prompts_with_a_system_text_are_counted_as_sent(backend, settings) -> None:
    frame = reviews(5)
    endpoint = connect(backend.chat_deployment["url"], settings=settings)
    kwargs = {"system": "Answer in {{ lang }}.", "deployment": endpoint}
    est = estimate_frame(frame, "Classify: {{ text }}", max_tokens=2, **kwargs)
    out = predict_frame(frame, "Classify: {{ text }}", progress=False, max_tokens=2, **kwargs)
    assert est.chat
    assert est.prompt_tokens == int(out["prompt_tokens"].sum())


def test_nothing_is_sent(backend, settings) -> None:
    fresh = backend.create_deployment("estimate-only")
    est = estimate_frame(reviews(40), "Classify: {{ text }}", deployment=fresh["url"], max_tokens=16)
    assert est.deployment == "estimate-only" and est.duration_s is not None
    assert backend.deployment_stats(fresh["id"])["predict_requests"] == 0


def test_rows_that_would_fail_are_counted_apart(backend, settings) -> None:
    frame = reviews(6)
    frame.loc[2, "text"] = None
    est = estimate_frame(frame, "Classify: {{ text }}", deployment=backend.deployment["url"], max_tokens=4)
    assert (est.rows, est.prompts, est.skipped) == (6, 5, 1)
    assert est.output_tokens == 5 * 4
    assert "1 would fail before sending" in repr(est)


def test_time_and_cost_follow_the_shape_and_its_price(backend, settings) -> None:
    url = backend.deployment["url"]  # Mistral-7B-Instruct-v0.3 on VM.GPU.A10.1, --max-model-len 4096
    small = estimate_frame(reviews(200), "Classify: {{ text }}", deployment=url, max_tokens=128)
    large = estimate_frame(reviews(2000), "Classify: {{ text }}", deployment=url, max_tokens=128)
    assert (small.shape, small.model, small.instances) == ("VM.GPU.A10.1", "Mistral-7B-Instruct-v0.3", 1)
    assert small.max_model_len == 4096
    assert small.usd_per_hour == pytest.approx(2.00)  # one A10 at OCI's list price
    assert small.cost_usd == pytest.approx(2.00 * small.duration_s / 3600)
    assert small.duration_s == pytest.approx(small.output_tokens / small.output_tok_s)
    assert large.duration_s == pytest.approx(10 * small.duration_s, rel=0.05)  # saturated: time scales with rows
    settings.gpu_prices = {"A10": 1.0}
    cheaper = estimate_frame(reviews(200), "Classify: {{ text }}", deployment=url, max_tokens=128)
    assert cheaper.cost_usd == pytest.approx(small.cost_usd / 2)


def test_a_few_rows_take_at_least_one_answer(backend, settings) -> None:
    est = estimate_frame(reviews(1), "Classify: {{ text }}", deployment=backend.deployment["url"], max_tokens=256)
    # One request alone: 256 tokens at the single-stream rate, slower than the saturated rate spreads it.
    assert est.duration_s > est.output_tokens / est.output_tok_s


def test_prompts_longer_than_max_model_len_are_flagged(backend, settings) -> None:
    frame = pd.DataFrame({"text": ["word " * 5000, "short"]})
    est = estimate_frame(frame, "{{ text }}", deployment=backend.deployment["url"], max_tokens=10)
    assert est.too_long == 1
    assert "exceed the deployment's --max-model-len 4,096" in repr(est)


def test_a_deployment_object_and_the_default_target(backend, settings) -> None:
    deployment = get_deployment(backend.deployment["id"], settings=settings)
    by_object = estimate_frame(reviews(3), "{{ text }}", deployment=deployment, max_tokens=5)
    assert by_object.shape == "VM.GPU.A10.1"
    settings.deployment = backend.deployment["id"]
    by_default = estimate_frame(reviews(3), "{{ text }}", max_tokens=5)
    assert by_default.deployment == by_object.deployment == backend.deployment["name"]


def test_without_a_deployment_the_tokens_are_still_counted(settings) -> None:
    est = estimate_frame(reviews(3), "{{ text }}", max_tokens=5)
    assert est.prompts == 3 and est.prompt_tokens > 0
    assert est.duration_s is None and est.cost_usd is None
    assert "No deployment to time the batch against" in repr(est)


def test_max_tokens_defaults_to_the_setting(settings) -> None:
    settings.max_tokens = 77
    assert estimate_frame(reviews(2), "{{ text }}").output_tokens == 2 * 77


def test_accessors(backend, settings) -> None:
    import odsc_magics.pandas  # noqa: F401  (registers the accessors)

    frame = reviews(4)
    est = frame.llm.estimate("Classify: {{ text }}", deployment=backend.deployment["url"], max_tokens=3)
    assert isinstance(est, FrameEstimate) and est.prompts == 4
    series = frame["text"].map(lambda t: f"Classify: {t}")
    by_series = series.llm.estimate(deployment=backend.deployment["url"], max_tokens=3)
    assert by_series.prompt_tokens == est.prompt_tokens


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: estimate_frame(["a"], "{{ text }}"), "estimate_frame needs a pandas DataFrame, not list"),
        (lambda: estimate_frame(reviews(2), "{{ body }}"), "reads 'body', which the frame has no column for"),
        (lambda: estimate_frame(reviews(2)), "give either a template or prompt_column"),
        (lambda: estimate_frame(reviews(2), "{{ text }}", max_tokens=0), "max_tokens must be a whole number"),
        (lambda: estimate_frame(reviews(2), "{{ text }}", deployment=42), "deployment must be an OCID"),
        (lambda: estimate_frame(reviews(2), "{{ text }}", chat="yes"), "chat must be True or False"),
    ],
)
def test_bad_arguments_are_refused_naming_them(settings, call, message: str) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        call()
    assert message in str(caught.value)


def test_the_summary_shows_untrusted_names_as_text(backend, settings) -> None:
    est = estimate_frame(reviews(2), "{{ text }}", deployment=backend.deployment["url"], max_tokens=2)
    est.deployment = "<img src=x onerror=alert(1)> **bold**"
    bundle = est._repr_mimebundle_()
    assert "<img" not in bundle["text/markdown"] and "&lt;img" in bundle["text/markdown"]
    assert "\\*\\*bold\\*\\*" in bundle["text/markdown"]
    assert est._repr_markdown_() == bundle["text/markdown"]
    assert "Estimate of the batch (nothing was sent)" in bundle["text/plain"]


def test_public_api() -> None:
    import odsc_magics

    assert odsc_magics.estimate_frame is estimate_frame
    assert "estimate_frame" in dir(odsc_magics)
