"""predict_frame and the df.llm accessor against the local backend over loopback."""

from __future__ import annotations

import _thread
import sqlite3
import threading
import time

import pandas as pd
import pytest

import odsc_magics.batch.frame as frame_module
import odsc_magics.batch.runner as runner_module
import odsc_magics.config as config_module
from odsc_magics import errors
from odsc_magics.batch import BatchError, BatchInterrupted, last_partial, predict_frame
from odsc_magics.batch.runner import CONNECT_FAILURES_TO_STOP
from odsc_magics.client import connect
from odsc_magics.config import LLMSettings, use_settings

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


class StopsTheBackend:
    """The real endpoint; its ``after``-th answer stops the backend. Counts the requests that got no answer,
    and those of them begun after the backend was told to stop."""

    def __init__(self, endpoint, backend, after: int) -> None:
        self.endpoint = endpoint
        self.backend = backend
        self.after = after
        self.lock = threading.Lock()
        self.answered: list[str] = []
        self.unanswered = 0
        self.unanswered_after_stop = 0
        self.stopping = False
        self.stopped = False

    def __getattr__(self, name: str):
        return getattr(self.endpoint, name)

    def complete(self, prompt: str, **params):
        after_stop = self.stopping
        try:
            result = self.endpoint.complete(prompt, **params)
        except Exception:
            with self.lock:
                self.unanswered += 1
                self.unanswered_after_stop += after_stop
            raise
        with self.lock:
            self.answered.append(prompt)
            last = len(self.answered) == self.after
        if last:
            self.stopping = True
            self.backend.stop()  # the process has exited when this returns
            self.stopped = True
        return result


class LocksTheCheckpoint:
    """The real endpoint; its ``after``-th answer has another connection take the checkpoint's write lock, as
    another program holding the file would."""

    def __init__(self, endpoint, path, after: int) -> None:
        self.endpoint = endpoint
        self.path = path
        self.after = after
        self.lock = threading.Lock()
        self.answered = 0
        self.holder = None

    def __getattr__(self, name: str):
        return getattr(self.endpoint, name)

    def complete(self, prompt: str, **params):
        result = self.endpoint.complete(prompt, **params)
        with self.lock:
            self.answered += 1
            if self.answered == self.after:
                self.holder = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self.holder.execute("BEGIN EXCLUSIVE")
        return result


def test_a_checkpoint_that_cannot_be_written_stops_the_batch_keeping_every_answer(backend, tmp_path):
    path = tmp_path / "run.sqlite"
    locking = LocksTheCheckpoint(endpoint_of(backend), path, after=10)
    with pytest.raises(BatchError) as caught:
        predict_frame(reviews(200), "Classify: {{ text }}", deployment=locking, checkpoint=str(path),
                      concurrency=1, progress=False, max_tokens=6)  # fmt: skip
    locking.holder.rollback()
    locking.holder.close()
    assert isinstance(caught.value.__cause__, errors.CheckpointError)
    assert f"checkpoint {path} could not be written" in str(caught.value)
    assert "run again" in caught.value.hint
    partial = caught.value.partial
    # Every answer is in the result, the batch stopped sending, and the checkpoint holds the rows before the lock
    assert int(partial["completion"].notna().sum()) == locking.answered
    assert locking.answered < 200
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM rows").fetchone()[0] == 9


@pytest.mark.parametrize("on_error", ["record", "raise"])
def test_a_backend_that_stops_mid_batch_stops_the_batch_keeping_every_answer(backend_factory, on_error):
    running = backend_factory("--ttft-ms", "5")
    deployment = running.create_deployment("batch-dies")
    endpoint = endpoint_of(running, deployment)
    stopping = StopsTheBackend(endpoint, running, after=40)
    frame = reviews(300)
    concurrency = 4
    call = lambda: predict_frame(frame, "Classify: {{ text }}", deployment=stopping, concurrency=concurrency,  # noqa: E731
                                 on_error=on_error, progress=False, max_tokens=4)  # fmt: skip
    if on_error == "raise":
        with pytest.raises(BatchError) as caught:
            call()
        assert "stopped sending" in caught.value.message
        out = caught.value.partial
    else:
        out = call()
    assert stopping.stopped
    # One per slot before the first failure comes back, then one at a time until the refusals stop the batch
    assert stopping.unanswered_after_stop <= concurrency + CONNECT_FAILURES_TO_STOP
    answered = out["completion"].notna()
    assert answered.sum() == len(stopping.answered) >= 40
    assert sorted("Classify: " + text for text in out.loc[answered, "text"]) == sorted(stopping.answered)
    unanswered = out.loc[~answered, "error"]
    assert unanswered.notna().all()
    stopped_rows = unanswered[unanswered.str.contains("stopped sending")]
    assert len(stopped_rows) >= 300 - len(stopping.answered) - concurrency
    first = stopped_rows.iat[0]
    assert endpoint.label in first and "refused connections" in first
    assert "starts the local backend anew" in first and "checkpoint=" in first
    assert int(out.loc[~answered, "attempts"].sum()) == stopping.unanswered  # each request shows in its row
    assert int((out.loc[~answered, "attempts"] == 0).sum()) >= 300 - len(stopping.answered) - 2 * concurrency


class SlowCount(int):
    """A counter whose additions take a while, so that an increment made outside the runner's lock gets lost."""

    def __add__(self, other: int) -> SlowCount:
        value = int(self) + other
        time.sleep(0.0005)
        return SlowCount(value)


def test_rows_from_the_checkpoint_and_rows_answered_meanwhile_all_count(backend, tmp_path, monkeypatch):
    endpoint = endpoint_of(backend)
    frame = reviews(400)
    checkpoint = str(tmp_path / "half.sqlite")
    predict_frame(frame.iloc[::2], "Classify: {{ text }}", deployment=endpoint, checkpoint=checkpoint,
                  progress=False, max_tokens=4)  # fmt: skip

    class SlowTally(runner_module.Tally):
        def __init__(self) -> None:
            super().__init__()
            self.done = SlowCount(0)

    monkeypatch.setattr(runner_module, "Tally", SlowTally)
    monkeypatch.setattr(frame_module, "_CHUNK", 8)  # checkpoint look-ups interleave with answers landing
    out = predict_frame(frame, "Classify: {{ text }}", deployment=endpoint, checkpoint=checkpoint, concurrency=8,
                        progress=False, max_tokens=4)  # fmt: skip
    summary = out.attrs["odsc_magics"]
    assert summary["resumed_from_checkpoint"] == 200
    assert summary["answered"] == 400


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


def test_max_retries_follows_the_max_retries_setting_unless_given(backend_factory, monkeypatch):
    failing = backend_factory("--fault", "500:1.0")
    deployment = failing.create_deployment("always-500")
    monkeypatch.setattr(config_module, "_registered", None)
    settings = LLMSettings(backend="local", local_dir=str(failing.state_dir))
    use_settings(settings)  # the instance `%config LLMMagics.max_retries = ...` sets, as the magics register it
    settings.max_retries = 1
    frame = reviews(3)

    def attempts(**options) -> list[int]:
        out = predict_frame(frame, "Classify: {{ text }}", deployment=deployment["url"], progress=False,
                            max_tokens=4, **options)  # fmt: skip
        assert out["error"].str.contains("HTTP 500").all()
        return out["attempts"].tolist()

    assert attempts() == [2, 2, 2]
    settings.max_retries = None
    monkeypatch.setenv("ODSC_MAGICS_MAX_RETRIES", "0")
    assert attempts() == [1, 1, 1]
    assert attempts(max_retries=2) == [3, 3, 3]
    assert failing.deployment_stats(deployment["id"])["predict_requests"] == 6 + 3 + 9


class Bars:
    """Records the progress bars predict_frame opens and whether each was closed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened: list = []
        bars = self

        class Recording(frame_module.Progress):
            def __init__(self, **options) -> None:
                super().__init__(**options)
                self.closed = False
                bars.opened.append(self)

            def close(self, *args, **kwargs):
                self.closed = True
                return super().close(*args, **kwargs)

        monkeypatch.setattr(frame_module, "Progress", Recording)

    def all_closed(self) -> bool:
        return all(bar.closed for bar in self.opened)


def duplicated() -> pd.DataFrame:
    return pd.DataFrame([["a", "b", 1]], columns=["text", "text", "n"])


BAD = [
    ("max_rps negative", lambda: (reviews(3), "{{ text }}", {"max_rps": -1}), "max_rps must be > 0"),
    ("max_rps zero", lambda: (reviews(3), "{{ text }}", {"max_rps": 0}), "max_rps must be > 0, or None for no cap"),
    ("max_rps nan", lambda: (reviews(3), "{{ text }}", {"max_rps": float("nan")}), "max_rps"),
    ("max_rps text", lambda: (reviews(3), "{{ text }}", {"max_rps": "5"}), "max_rps"),
    ("max_rps bool", lambda: (reviews(3), "{{ text }}", {"max_rps": True}), "max_rps"),
    ("duplicate column read", lambda: (duplicated(), "{{ text }}", {}), "'text'"),
    ("template not text", lambda: (reviews(3), 123, {}), "template"),
    ("concurrency bool", lambda: (reviews(3), "{{ text }}", {"concurrency": True}), "concurrency"),
    ("concurrency negative", lambda: (reviews(3), "{{ text }}", {"concurrency": -2}), "concurrency"),
    ("concurrency float", lambda: (reviews(3), "{{ text }}", {"concurrency": 2.5}), "concurrency"),
    ("output_column empty", lambda: (reviews(3), "{{ text }}", {"output_column": ""}), "output_column"),
    ("output_column not text", lambda: (reviews(3), "{{ text }}", {"output_column": 5}), "output_column"),
    ("output_column an answer column", lambda: (reviews(3), "{{ text }}", {"output_column": "error"}),
     "output_column"),
    ("output_column a frame column", lambda: (reviews(3), "{{ text }}", {"output_column": "text"}), "'text'"),
    ("max_retries bool", lambda: (reviews(3), "{{ text }}", {"max_retries": True}), "max_retries"),
    ("max_retries negative", lambda: (reviews(3), "{{ text }}", {"max_retries": -1}), "max_retries"),
    ("on_error unhashable", lambda: (reviews(3), "{{ text }}", {"on_error": ["raise"]}), "on_error"),
    ("on_error unknown", lambda: (reviews(3), "{{ text }}", {"on_error": "ignore"}), "on_error"),
    ("prompt_column unhashable", lambda: (reviews(3), None, {"prompt_column": ["text"]}), "prompt_column"),
    ("prompt_column missing", lambda: (reviews(3), None, {"prompt_column": "nope"}), "prompt_column"),
    ("system not text", lambda: (reviews(3), "{{ text }}", {"system": 5, "chat": True}), "system"),
    ("system reads a missing column", lambda: (reviews(3), "{{ text }}", {"system": "Be {{ tone }}."}), "system"),
    ("deployment of the wrong type", lambda: (reviews(3), "{{ text }}", {"deployment": 5}), "deployment"),
    ("timeout negative", lambda: (reviews(3), "{{ text }}", {"timeout": -1}), "timeout"),
    ("stream", lambda: (reviews(3), "{{ text }}", {"stream": True}), "stream"),
    ("series", lambda: (reviews(3)["text"], "{{ text }}", {}), "DataFrame"),
    ("template and prompt_column", lambda: (reviews(3), "{{ text }}", {"prompt_column": "text"}), "prompt_column"),
    ("template reads a missing column", lambda: (reviews(3), "{{ nope }}", {}), "'nope'"),
]


@pytest.mark.parametrize(("build", "named"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_arguments_raise_a_validation_error_naming_them_before_anything_is_sent(backend, monkeypatch, build,
                                                                                   named):  # fmt: skip
    frame, template, options = build()
    options.setdefault("deployment", endpoint_of(backend))
    bars = Bars(monkeypatch)
    sent = backend.deployment_stats(backend.deployment["id"])["predict_requests"]
    with pytest.raises(errors.ValidationError) as caught:
        predict_frame(frame, template, progress=True, **options)
    assert named in caught.value.message
    assert backend.deployment_stats(backend.deployment["id"])["predict_requests"] == sent
    assert bars.all_closed()


def not_sqlite(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_text("these are notes, not a database\n" * 20)
    return path


def under_a_file(tmp_path):
    (tmp_path / "plain").write_text("a file, not a directory")
    return tmp_path / "plain" / "run.sqlite"


@pytest.mark.parametrize(
    "place",
    [lambda tmp_path: tmp_path, not_sqlite, under_a_file],
    ids=["a directory", "not SQLite", "unwritable: its directory is a file"],
)
def test_an_unusable_checkpoint_path_is_named_with_the_next_step(backend, monkeypatch, tmp_path, place):
    path = place(tmp_path)
    bars = Bars(monkeypatch)
    sent = backend.deployment_stats(backend.deployment["id"])["predict_requests"]
    with pytest.raises(errors.ValidationError) as caught:
        predict_frame(reviews(3), "{{ text }}", deployment=endpoint_of(backend), checkpoint=str(path), progress=True)
    assert "checkpoint" in caught.value.message
    assert str(path) in caught.value.message
    assert "checkpoint=" in caught.value.hint
    assert backend.deployment_stats(backend.deployment["id"])["predict_requests"] == sent
    assert bars.all_closed()


def test_a_duplicated_column_the_prompt_does_not_read_is_kept(backend):
    frame = pd.DataFrame([["a", 1, 2], ["b", 3, 4]], columns=["text", "n", "n"])
    out = predict_frame(frame, "{{ text }}", deployment=endpoint_of(backend), progress=False, max_tokens=4)
    assert out["error"].isna().all()
    assert list(out.columns[:3]) == ["text", "n", "n"]


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


def asked_directly(endpoint, system: str, prompt: str) -> tuple[str, int]:
    answer = endpoint.chat([{"role": "system", "content": system}, {"role": "user", "content": prompt}], max_tokens=8)
    return answer.text, answer.usage["prompt_tokens"]


def test_the_system_text_is_rendered_with_each_row_like_the_magics_system(backend):
    endpoint = endpoint_of(backend, backend.chat_deployment)
    frame = pd.DataFrame({"text": ["The kettle leaks.", "Great toaster."], "language": ["French", "Portuguese"]})
    out = predict_frame(frame, "{{ text }}", deployment=endpoint, system="Answer in {{ language }}, briefly.",
                        progress=False, max_tokens=8)  # fmt: skip
    assert out["error"].isna().all()
    for row in range(2):
        text, language = frame["text"].iat[row], frame["language"].iat[row]
        rendered = asked_directly(endpoint, f"Answer in {language}, briefly.", text)
        unrendered = asked_directly(endpoint, "Answer in {{ language }}, briefly.", text)
        assert rendered != unrendered
        assert (out["completion"].iat[row], out["prompt_tokens"].iat[row]) == rendered


def test_a_system_text_without_placeholders_is_sent_as_it_is(backend):
    endpoint = endpoint_of(backend, backend.chat_deployment)
    system = "Reply with {braces} and {% tags %} kept."
    out = predict_frame(reviews(2), "{{ text }}", deployment=endpoint, system=system, progress=False, max_tokens=8)
    for row in range(2):
        expected = asked_directly(endpoint, system, out["text"].iat[row])
        assert (out["completion"].iat[row], out["prompt_tokens"].iat[row]) == expected


def test_a_missing_value_read_by_the_system_text_fails_its_row_only(backend):
    endpoint = endpoint_of(backend, backend.chat_deployment)
    frame = pd.DataFrame({"text": ["one", "two"], "tone": ["dry", None]})
    out = predict_frame(frame, "{{ text }}", deployment=endpoint, system="Be {{ tone }}.", progress=False,
                        max_tokens=4)  # fmt: skip
    assert out["error"].isna().tolist() == [True, False]
    assert "missing value in column 'tone'" in out["error"].iat[1]
