"""embed_frame against the local backend: batching within TEI's limits, per-row errors, faults, checkpoint, memory."""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest

import odsc_magics.pandas  # noqa: F401  (registers df.llm)
from odsc_magics import embed_frame
from odsc_magics.batch import BatchError
from odsc_magics.batch.embedding import _Batch, _pack, limits_for
from odsc_magics.config import LLMSettings
from odsc_magics.errors import ValidationError
from odsc_magics.local.embeddings import embed_text

api = importlib.import_module("odsc_magics.control_plane")
FAST = ("--deploy-seconds", "0.2", "--ttft-ms", "0")


@pytest.fixture(scope="module")
def own_backend(tmp_path_factory: pytest.TempPathFactory):
    from odsc_magics.local.testing import start_backend

    running = start_backend(tmp_path_factory.mktemp("embed-frame"), *FAST)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def settings(own_backend) -> LLMSettings:
    return LLMSettings(backend="local", local_dir=str(own_backend.state_dir))


@pytest.fixture(scope="module")
def minilm(settings):
    return api.deploy(
        "all-MiniLM-L6-v2", "VM.GPU.A10.1", name="minilm", bandwidth_mbps=2000, progress=False, settings=settings
    )


def _texts(n: int) -> list:
    return [f"review {i} of product {i % 41}: it was {'great' if i % 3 else 'poor'}" for i in range(n)]


def _sent(own_backend, deployment) -> int:
    return own_backend.deployment_stats(deployment.id)["predict_requests"]


def test_rows_get_their_vectors_in_float32_and_bad_rows_their_errors(own_backend, minilm) -> None:
    texts = _texts(2000)
    texts[3], texts[10], texts[77] = "", None, " ".join(["long"] * 600)
    df = pd.DataFrame({"text": texts, "keep": range(2000)}, index=pd.RangeIndex(5000, 7000))
    before = _sent(own_backend, minilm)

    out = embed_frame(df, "text", deployment=minilm, progress=False)

    assert list(out.index) == list(df.index) and list(out["keep"]) == list(range(2000))
    assert out.loc[5003, "error"] == "empty text: there is nothing to embed"
    assert out.loc[5010, "error"] == "missing value in column 'text' for this row"
    assert "`inputs` must have less than 512 tokens. Given: 602" in out.loc[5077, "error"]
    assert out.loc[[5003, 5010, 5077], "embedding"].isna().all()
    good = out.drop(index=[5003, 5010, 5077])
    assert good["error"].isna().all() and (good["attempts"] >= 1).all()
    for position in (0, 1, 999, 1999):
        vector = out["embedding"].iloc[position]
        assert vector.dtype == np.float32 and vector.shape == (384,)
        assert np.allclose(vector, embed_text(texts[position], 384), atol=1e-6)
    summary = out.attrs["odsc_magics"]
    assert summary["batch_size"] == 32 and "TEI's max_client_batch_size" in summary["batching"]
    assert summary["answered"] == 1997 and summary["failed"] == 3
    # Rows in order, 32 a request; the long text goes alone: 75 rows before it (3 requests), 1922 after (61).
    assert summary["requests"] == _sent(own_backend, minilm) - before == 3 + 1 + 61


def test_the_vectors_are_views_of_one_matrix_the_size_of_the_result(minilm) -> None:
    out = embed_frame(pd.DataFrame({"t": _texts(300)}), "t", deployment=minilm, progress=False)
    bases = {id(vector.base) for vector in out["embedding"]}
    assert len(bases) == 1
    matrix = out["embedding"].iloc[0].base
    assert matrix.shape == (300, 384) and matrix.dtype == np.float32
    assert out.attrs["odsc_magics"]["result_bytes"] == 300 * 384 * 4 == matrix.nbytes


def test_an_int_batch_size_caps_the_texts_per_request_and_empty_texts_are_not_sent(own_backend, minilm) -> None:
    texts = _texts(8)
    texts[5] = ""  # refused before sending
    df = pd.DataFrame({"t": texts})
    limits = limits_for("all-MiniLM-L6-v2", None, 8)
    batches = list(_pack([(i, t, None) for i, t in enumerate(texts) if t], limits))
    assert [b.positions for b in batches] == [[0, 1, 2, 3, 4, 6, 7]]
    before = _sent(own_backend, minilm)
    out = embed_frame(df, "t", deployment=minilm, batch_size=8, progress=False)
    assert out["error"].notna().sum() == 1 and _sent(own_backend, minilm) - before == 1
    out = embed_frame(df, "t", deployment=minilm, batch_size=3, progress=False)
    assert _sent(own_backend, minilm) - before == 1 + 3


def test_server_refusals_split_a_request_until_the_bad_text_is_alone(own_backend, minilm, monkeypatch) -> None:
    from odsc_magics.batch import embedding

    # Make the client's estimate blind to length, so the long text travels with 7 others.
    monkeypatch.setattr(embedding, "_cost", lambda text: (3, len(text) + 3))
    texts = _texts(8)
    texts[6] = " ".join(["word"] * 700)
    before = _sent(own_backend, minilm)
    out = embed_frame(pd.DataFrame({"t": texts}), "t", deployment=minilm, progress=False)
    assert out["error"].notna().tolist() == [False] * 6 + [True, False]
    assert "must have less than 512 tokens" in out["error"].iloc[6]
    assert all(v.shape == (384,) for v in out["embedding"].drop(index=6))
    # 8 -> 4 + 4 -> (4 ok) 2 + 2 -> (2 ok) 1 + 1: 1 + 2 + 2 + 2 requests
    assert _sent(own_backend, minilm) - before == 7


def test_faults_are_retried_and_nothing_is_lost(backend_factory, tmp_path) -> None:
    running = backend_factory("--fault", "429:0.15", "--fault", "500:0.1", "--fault", "reset:0.05", "--seed", "3")
    settings = LLMSettings(backend="local", local_dir=str(running.state_dir), max_retries=8)
    deployment = api.deploy("bge-base-en-v1.5", "VM.GPU.A10.1", name="bge", bandwidth_mbps=2000, progress=False,
                            settings=settings)
    texts = _texts(1500)
    out = embed_frame(pd.DataFrame({"t": texts}), "t", deployment=deployment, progress=False, concurrency=8)
    assert out["error"].isna().all(), out["error"].dropna().head()
    assert all(np.allclose(out["embedding"].iloc[i], embed_text(texts[i], 768), atol=1e-6) for i in (0, 750, 1499))
    summary = out.attrs["odsc_magics"]
    ideal = -(-1500 // 32)
    # The runner saw the 429s as throttles and retried whole requests; no request was split for them.
    assert summary["throttled"] > 0 and ideal < summary["requests"] < 2 * ideal
    assert (out["attempts"] > 1).any()


def test_a_checkpoint_resumes_without_sending_again(own_backend, minilm, tmp_path) -> None:
    df = pd.DataFrame({"t": _texts(500)})
    path = tmp_path / "vectors.sqlite"
    first = embed_frame(df, "t", deployment=minilm, checkpoint=str(path), progress=False)
    before = _sent(own_backend, minilm)
    again = embed_frame(df, "t", deployment=minilm, checkpoint=str(path), progress=False)
    assert _sent(own_backend, minilm) == before
    assert again.attrs["odsc_magics"]["resumed_from_checkpoint"] == 500
    assert all(np.array_equal(a, b) for a, b in zip(first["embedding"], again["embedding"], strict=True))
    grown = pd.DataFrame({"t": _texts(540)})
    embed_frame(grown, "t", deployment=minilm, checkpoint=str(path), progress=False)
    assert _sent(own_backend, minilm) - before == 2  # the 40 new rows only


def test_a_dry_run_shows_the_plan_and_the_first_request_and_sends_nothing(own_backend, minilm) -> None:
    df = pd.DataFrame({"t": [*_texts(100), ""]})
    before = _sent(own_backend, minilm)
    plan = embed_frame(df, "t", deployment=minilm, dry_run=True)
    assert _sent(own_backend, minilm) == before
    assert (plan["rows"], plan["requests"], plan["refused_before_sending"]) == (101, 4, 1)
    assert plan["dimension"] == 384 and plan["result_bytes"] == 101 * 384 * 4
    first = plan["first_request"]
    assert first["url"] == f"{minilm.url}/predict" and first["headers"]["route"] == "/v1/embeddings"
    assert first["body"] == {"model": "odsc-llm", "input": _texts(32), "encoding_format": "base64"}
    assert "authorization" not in {k.lower() for k in first["headers"]}


def test_the_accessors_embed_a_column_or_a_series(minilm) -> None:
    df = pd.DataFrame({"t": ["alpha beta", "gamma"]})
    assert df.llm.embed("t", deployment=minilm, progress=False)["embedding"].iloc[1].shape == (384,)
    out = pd.Series(["one", "two"], name="words").llm.embed(deployment=minilm, progress=False)
    assert list(out.columns) == ["words", "embedding", "attempts", "error"]


def test_a_generation_deployment_stops_the_batch_at_once(own_backend, settings) -> None:
    generation = own_backend.create_deployment("generator")
    deployment = api.get_deployment("generator", settings=settings)
    with pytest.raises(BatchError) as caught:
        embed_frame(pd.DataFrame({"t": _texts(3000)}), "t", deployment=deployment, progress=False)
    assert "serves no embeddings" in caught.value.message
    assert own_backend.deployment_stats(generation["id"])["predict_requests"] < 40
    assert caught.value.partial["error"].notna().all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"column": "nope"}, "no column 'nope'"),
        ({"column": "t", "batch_size": 0}, "batch_size"),
        ({"column": "t", "batch_size": "big"}, "batch_size"),
        ({"column": "t", "output_column": "error"}, "one of the columns"),
        ({"column": "t", "output_column": "t"}, "already has"),
        ({"column": "t", "concurrency": True}, "concurrency"),
    ],
)
def test_wrong_arguments_are_refused_before_anything_is_sent(kwargs, message) -> None:
    with pytest.raises(ValidationError) as caught:
        embed_frame(pd.DataFrame({"t": ["x"]}), deployment="http://127.0.0.1:9/x", progress=False, **kwargs)
    assert message in caught.value.message


def test_packing_respects_texts_tokens_and_bytes_per_request() -> None:
    limits = limits_for("bge-m3", None, "auto")
    assert (limits.texts, limits.tokens, limits.body_bytes, limits.input_tokens) == (32, 16384, 2_000_000, 8192)
    long = " ".join(["token"] * 3000)  # 3,002 estimated tokens: five fit in 16,384
    batches: list[_Batch] = list(_pack([(i, long, None) for i in range(12)], limits))
    assert [len(b.positions) for b in batches] == [5, 5, 2]
    assert all(b.tokens <= 16384 for b in batches)
    wide = "x" * 700_000  # bytes: two fit in 2,000,000
    assert [len(b.positions) for b in _pack([(i, wide, None) for i in range(5)], limits)] == [2, 2, 1]
    short = list(_pack([(i, "hi", None) for i in range(100)], limits))
    assert [len(b.positions) for b in short] == [32, 32, 32, 4]
    unknown = limits_for(None, "dsmc://odsc-vllm-serving:0.6.4.post1.2", 64)
    assert (unknown.texts, unknown.body_bytes, unknown.dimension) == (64, 10_000_000, None)


def test_on_error_raise_reports_the_failed_rows_with_the_rest_in_partial(minilm) -> None:
    df = pd.DataFrame({"t": ["fine text", "", "another fine text"]})
    with pytest.raises(BatchError) as caught:
        embed_frame(df, "t", deployment=minilm, on_error="raise", progress=False)
    assert "1 row(s) failed" in caught.value.message and "empty text" in caught.value.message
    partial = caught.value.partial
    assert partial["embedding"].iloc[0].shape == (384,) and partial["embedding"].iloc[1] is None


def test_an_interrupt_hands_back_the_rows_embedded_so_far(minilm) -> None:
    import _thread
    import threading

    from odsc_magics import last_partial
    from odsc_magics.batch import BatchInterrupted

    df = pd.DataFrame({"t": _texts(60_000)})
    timer = threading.Timer(1.0, _thread.interrupt_main)
    timer.start()
    with pytest.raises(BatchInterrupted) as caught:
        embed_frame(df, "t", deployment=minilm, progress=False, max_rps=20)
    timer.cancel()
    partial = caught.value.partial
    done = partial["embedding"].notna()
    assert 0 < done.sum() < len(df)
    assert (partial.loc[~done, "error"] == "not embedded: interrupted").all()
    assert last_partial() is partial
