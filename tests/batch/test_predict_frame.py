"""predict_frame and the df.llm accessor against the local backend over loopback."""

from __future__ import annotations

import _thread
import threading

import pandas as pd
import pytest

from odsc_magics import errors
from odsc_magics.batch import BatchError, BatchInterrupted, last_partial, predict_frame
from odsc_magics.client import connect
from odsc_magics.config import LLMSettings

FAULTS = ("--capacity", "16", "--fault", "429:0.1", "--fault", "500:0.05", "--fault", "reset:0.02",
          "--fault", "cut:0.02", "--seed", "11")  # fmt: skip


def endpoint_of(backend, deployment=None):
    settings = LLMSettings(backend="local", local_dir=str(backend.state_dir))
    return connect((deployment or backend.deployment)["url"], settings=settings)


def reviews(rows: int) -> pd.DataFrame:
    index = pd.Index([f"r{n:04d}" for n in reversed(range(rows))], name="review_id")
    return pd.DataFrame({"text": [f"Review number {n} of a kettle" for n in range(rows)]}, index=index)


def test_answers_every_row_keeping_index_and_order(backend):
    frame = reviews(30)
    out = predict_frame(frame, "Classify: {{ text }}", deployment=endpoint_of(backend), progress=False,
                        max_tokens=8)  # fmt: skip
    assert list(out.index) == list(frame.index)
    assert list(out["text"]) == list(frame["text"])
    assert out["error"].isna().all()
    assert out["completion"].map(lambda text: isinstance(text, str) and text != "").all()
    assert set(out.columns) >= {"completion", "finish_reason", "prompt_tokens", "completion_tokens",
                                "latency_s", "attempts", "error"}  # fmt: skip
    assert (out["completion_tokens"] <= 8).all()
    assert "completion" not in frame.columns


def test_faults_lose_nothing_and_repeat_nothing(backend_factory):
    faulty = backend_factory(*FAULTS)
    deployment = faulty.create_deployment("batch-faults")
    frame = reviews(300)
    out = predict_frame(frame, "Classify: {{ text }}", deployment=endpoint_of(faulty, deployment),
                        progress=False, max_tokens=6)  # fmt: skip
    assert out["error"].isna().all(), out["error"].dropna().head()
    assert list(out.index) == list(frame.index)
    stats = faulty.deployment_stats(deployment["id"])
    assert stats["succeeded"] == 300
    assert stats["duplicate_successes"] == 0
    assert sum(stats["faults"].values()) > 0
    assert (out["attempts"] >= 1).all() and out["attempts"].max() > 1


class InterruptsAfter:
    """The real endpoint, whose ``after``-th answer interrupts the main thread (as a kernel interrupt does).

    It is called from a worker while predict_frame waits, so the interrupt lands inside the call. Later
    requests are held back, never sent, until ``release`` is set.
    """

    def __init__(self, endpoint, after: int) -> None:
        self.endpoint = endpoint
        self.after = after
        self.answered = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.held = 0
        self.held_done = threading.Event()

    def __getattr__(self, name: str):
        return getattr(self.endpoint, name)  # deployment_id, url: the checkpoint keys name the same target

    def complete(self, prompt: str, **params):
        with self.lock:
            hold = self.answered >= self.after
            self.held += hold
        if hold:
            self.release.wait(30)
            self.held_done.set()
            raise errors.EndpointUnreachableError("held back: the batch was interrupted")
        result = self.endpoint.complete(prompt, **params)
        with self.lock:
            self.answered += 1
            last = self.answered == self.after
        if last:
            _thread.interrupt_main()
        return result


def test_interrupted_run_keeps_every_finished_row_and_resumes_from_its_checkpoint(backend_factory, tmp_path):
    running = backend_factory()
    deployment = running.create_deployment("batch-resume")
    endpoint = endpoint_of(running, deployment)
    frame = reviews(120)
    checkpoint = tmp_path / "run.sqlite"

    interrupting = InterruptsAfter(endpoint, after=60)
    with pytest.raises(BatchInterrupted) as caught:
        predict_frame(frame, "Classify: {{ text }}", deployment=interrupting, checkpoint=str(checkpoint),
                      concurrency=1, progress=False, max_tokens=6)  # fmt: skip
    interrupting.release.set()
    if interrupting.held:
        assert interrupting.held_done.wait(30)
    partial = caught.value.partial
    assert last_partial() is partial
    assert int(partial["completion"].notna().sum()) == 60
    assert running.deployment_stats(deployment["id"])["succeeded"] == 60

    resumed = predict_frame(frame, "Classify: {{ text }}", deployment=endpoint, checkpoint=str(checkpoint),
                            progress=False, max_tokens=6)  # fmt: skip
    assert running.deployment_stats(deployment["id"])["succeeded"] == 120
    assert resumed.attrs["odsc_magics"]["resumed_from_checkpoint"] == 60
    answered = partial["completion"].notna()
    pd.testing.assert_series_equal(resumed["completion"][answered], partial["completion"][answered])
    fresh = predict_frame(frame, "Classify: {{ text }}", deployment=endpoint, progress=False, max_tokens=6)
    columns = ["completion", "finish_reason", "prompt_tokens", "completion_tokens", "error"]
    pd.testing.assert_frame_equal(resumed[columns], fresh[columns])


def test_missing_template_values_fail_their_row_only(backend):
    frame = pd.DataFrame({"text": ["fine", None, float("nan"), "also fine"]})
    out = predict_frame(frame, "Say {{ text }}", deployment=endpoint_of(backend), progress=False, max_tokens=4)
    assert out["error"].isna().tolist() == [True, False, False, True]
    assert "missing value in column 'text'" in out["error"].iloc[1]
    assert out["attempts"].tolist()[1:3] == [0, 0]


def test_client_errors_are_not_retried_and_raise_mode_summarises(backend):
    frame = reviews(5)
    out = predict_frame(frame, "{{ text }}", deployment=endpoint_of(backend), progress=False, max_tokens=99999)
    assert out["error"].str.contains("HTTP 400").all()
    assert (out["attempts"] == 1).all()
    with pytest.raises(BatchError) as caught:
        predict_frame(frame, "{{ text }}", deployment=endpoint_of(backend), progress=False, max_tokens=99999,
                      on_error="raise")  # fmt: skip
    assert "failed" in str(caught.value)
    assert len(caught.value.partial) == 5


def test_bad_arguments_are_refused_before_sending(backend):
    frame = reviews(3)
    with pytest.raises(Exception, match="no column"):
        predict_frame(frame, "{{ nope }}", deployment=endpoint_of(backend), progress=False)
    with pytest.raises(Exception, match="concurrency"):
        predict_frame(frame, "{{ text }}", deployment=endpoint_of(backend), concurrency=0, progress=False)
    with pytest.raises(Exception, match="already has column"):
        predict_frame(frame.assign(error=1), "{{ text }}", deployment=endpoint_of(backend), progress=False)


def test_accessors(backend):
    import odsc_magics.pandas  # noqa: F401  (registers the accessors)

    frame = reviews(4)
    out = frame.llm.predict("Classify: {{ text }}", deployment=endpoint_of(backend), progress=False, max_tokens=4)
    assert out["error"].isna().all()
    prompts = pd.Series(["one", "two"], name="prompt")
    answered = prompts.llm.predict(deployment=endpoint_of(backend), progress=False, max_tokens=4)
    assert list(answered["prompt"]) == ["one", "two"]
    assert answered["completion"].notna().all()
    piped = frame.pipe(predict_frame, "Classify: {{ text }}", deployment=endpoint_of(backend), progress=False,
                       max_tokens=4)  # fmt: skip
    assert piped["completion"].tolist() == out["completion"].tolist()


def test_chat_mode_with_system(backend):
    frame = reviews(3)
    out = predict_frame(frame, "{{ text }}", deployment=endpoint_of(backend, backend.chat_deployment), chat=True,
                        system="You classify reviews.", progress=False, max_tokens=5)  # fmt: skip
    assert out["error"].isna().all()
