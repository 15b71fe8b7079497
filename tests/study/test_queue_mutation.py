"""The queue's claim, requeue and finished/missing decisions, one rule at a time (the holes mutation
testing found, docs/testing.md): each test builds the trials it needs in a journal and calls one
function; no run is trained."""

from __future__ import annotations

import os
import warnings

import pytest
from optuna.trial import TrialState

from adlab.study import queue as q
from adlab.study.spec import load_study

STUDY = """name: tiny
config:
  data: {name: digits}
  model: {name: cnn, cnn: {conv_channels: [8], convs_per_block: 1, hidden: [16]}}
  train: {epochs: 1, progress_bar: false}
grid: {train.epochs: [1, 3, 2]}
"""


class FakeTime:
    """The queue module's clock, set by the test."""

    def __init__(self, now: float):
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def queue(tmp_path):
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    return q.open_queue(out)


def _trials(queue, run):
    return [t for t in queue.get_trials() if t.user_attrs.get("run") == run]


# --- claim ----------------------------------------------------------------------------------------


def test_a_claim_is_the_waiting_run_now_running_for_this_worker(queue, monkeypatch):
    monkeypatch.setattr(q, "time", FakeTime(1234.5))
    queue.enqueue_trial({}, user_attrs={"run": "a", "attempt": 3})
    claimed = q.claim(queue)
    assert (claimed.run, claimed.attempt) == ("a", 3)
    (trial,) = queue.get_trials()
    assert trial.state == TrialState.RUNNING and trial.number == claimed.trial.number
    assert trial.user_attrs["worker"] == f"{q.HOST}:{os.getpid()}" and trial.user_attrs["heartbeat"] == 1234.5
    assert q.claim(queue) is None and len(queue.get_trials()) == 1


def test_an_empty_trial_is_closed_as_idle_and_the_next_run_claimed(queue):
    """What a worker's ask() makes when another took the last waiting run: failed at once, marked idle."""
    queue.enqueue_trial({}, user_attrs={})
    queue.enqueue_trial({}, user_attrs={"run": "b"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # closed as failed in so many words: no "value None" warning from Optuna
        claimed = q.claim(queue)
    assert (claimed.run, claimed.attempt) == ("b", 1)
    empty = queue.get_trials()[0]
    assert empty.state == TrialState.FAIL and empty.user_attrs == {"idle": True}
    assert q.latest_attempts(queue).keys() == {"b"} and q.retry_failed(queue) == []


def test_claims_take_only_waiting_trials(queue):
    queue.enqueue_trial({}, user_attrs={"run": "a"})
    first = q.claim(queue)
    queue.tell(first.trial, state=TrialState.FAIL)
    assert q.claim(queue) is None
    assert [t.state for t in queue.get_trials()] == [TrialState.FAIL]


# --- requeue_stale --------------------------------------------------------------------------------


def _running(queue, monkeypatch, beat, run="a", attempt=1):
    monkeypatch.setattr(q, "time", FakeTime(1000.0))
    queue.enqueue_trial({}, user_attrs={"run": run, "attempt": attempt})
    claimed = q.claim(queue)
    queue._storage.set_trial_user_attr(claimed.trial._trial_id, "heartbeat", beat)
    return claimed


def test_a_claim_silent_for_exactly_the_grace_period_is_requeued(queue, monkeypatch):
    _running(queue, monkeypatch, beat=1000.0, attempt=4)
    monkeypatch.setattr(q, "GRACE", 60.0)
    monkeypatch.setattr(q, "time", FakeTime(1059.9))
    assert q.requeue_stale(queue) == []
    monkeypatch.setattr(q, "time", FakeTime(1060.0))
    assert q.requeue_stale(queue) == ["a"]
    old, new = _trials(queue, "a")
    assert old.state == TrialState.FAIL and old.user_attrs["stale"] is True
    assert new.state == TrialState.WAITING and new.user_attrs == {"run": "a", "attempt": 5}
    assert q.retry_failed(queue) == []  # a dead worker's run comes back by itself, not by --retry-failed


@pytest.mark.parametrize("beat", [None, "yesterday", [1.0]])
def test_a_heartbeat_that_is_not_a_number_counts_from_the_claims_start(queue, monkeypatch, beat):
    claimed = _running(queue, monkeypatch, beat=beat)
    started = queue.get_trials()[0].datetime_start.timestamp()
    monkeypatch.setattr(q, "GRACE", 60.0)
    monkeypatch.setattr(q, "time", FakeTime(started + 59))
    assert q.requeue_stale(queue) == []
    monkeypatch.setattr(q, "time", FakeTime(started + 61))
    assert q.requeue_stale(queue) == [claimed.run]


def test_an_integer_heartbeat_counts(queue, monkeypatch):
    _running(queue, monkeypatch, beat=10**9)
    monkeypatch.setattr(q, "time", FakeTime(10**9 + 30))
    monkeypatch.setattr(q, "GRACE", 60.0)
    assert q.requeue_stale(queue) == []


def test_a_running_trial_without_a_start_time_is_judged_fresh(queue, monkeypatch):
    """No heartbeat and no start: nothing tells its age, so it is left to its worker."""
    _running(queue, monkeypatch, beat=None)

    class NoStart:
        def __init__(self, trial):
            self.trial = trial
            self.datetime_start = None

        def __getattr__(self, name):
            return getattr(self.trial, name)

    real = queue.get_trials
    monkeypatch.setattr(queue, "get_trials", lambda *a, **k: [NoStart(t) for t in real(*a, **k)])
    monkeypatch.setattr(q, "time", FakeTime(10**12))
    assert q.requeue_stale(queue) == []


def test_a_stale_trial_without_a_run_is_failed_but_not_requeued(queue, monkeypatch):
    monkeypatch.setattr(q, "time", FakeTime(1000.0))
    trial = queue.ask()  # an empty trial, its worker killed before it closed it
    queue._storage.set_trial_user_attr(trial._trial_id, "heartbeat", 1000.0)
    monkeypatch.setattr(q, "time", FakeTime(1000.0 + q.GRACE + 1))
    assert q.requeue_stale(queue) == []
    (only,) = queue.get_trials()
    assert only.state == TrialState.FAIL and only.user_attrs["stale"] is True


@pytest.mark.parametrize("race", ["refused", "UpdateFinishedTrialError", "RuntimeError"])
def test_a_claim_another_worker_requeued_first_is_left_alone_and_the_next_judged(queue, monkeypatch, race):
    from optuna.exceptions import UpdateFinishedTrialError

    first = _running(queue, monkeypatch, beat=1000.0, run="a")
    _running(queue, monkeypatch, beat=1000.0, run="b")
    monkeypatch.setattr(q, "time", FakeTime(1000.0 + q.GRACE + 1))
    errors = {"UpdateFinishedTrialError": UpdateFinishedTrialError, "RuntimeError": RuntimeError}
    real = queue._storage.set_trial_state_values

    def lost_first(trial_id, state, values=None):
        if trial_id != first.trial._trial_id:
            return real(trial_id, state, values)
        if race == "refused":
            return False
        raise errors[race]("finished already")

    monkeypatch.setattr(queue._storage, "set_trial_state_values", lost_first)
    assert q.requeue_stale(queue) == ["b"]
    assert [t.state for t in _trials(queue, "a")] == [TrialState.RUNNING]  # left to the worker that won


def test_a_fresh_claim_does_not_stop_the_stale_one_after_it_being_requeued(queue, monkeypatch):
    _running(queue, monkeypatch, beat=1000.0 + q.GRACE, run="fresh")
    _running(queue, monkeypatch, beat=1000.0, run="stale")
    monkeypatch.setattr(q, "time", FakeTime(1000.0 + q.GRACE + 1))
    assert q.requeue_stale(queue) == ["stale"]


def test_only_running_trials_are_judged(queue, monkeypatch):
    monkeypatch.setattr(q, "time", FakeTime(1000.0))
    queue.enqueue_trial({}, user_attrs={"run": "waiting", "heartbeat": 0.0})
    monkeypatch.setattr(q, "time", FakeTime(10**12))
    assert q.requeue_stale(queue) == [] and [t.state for t in queue.get_trials()] == [TrialState.WAITING]


# --- attempts, the newest trial of each run, retries --------------------------------------------


@pytest.mark.parametrize(
    "value, attempt",
    [
        (2, 2),
        (999_999, 999_999),
        (1, 1),
        (0, 1),
        (-3, 1),
        (10**6, 1),
        (True, 1),
        ("2", 1),
        (2.0, 1),
        (None, 1),
    ],
)
def test_an_attempt_number_is_a_positive_integer_below_a_million(queue, value, attempt):
    queue.enqueue_trial({}, user_attrs={"run": "a", "attempt": value})
    assert q._attempt(queue.get_trials()[0]) == attempt


def test_a_trial_without_an_attempt_is_the_first(queue):
    queue.enqueue_trial({}, user_attrs={"run": "a"})
    assert q._attempt(queue.get_trials()[0]) == 1


def test_the_latest_attempt_is_each_runs_newest_trial(queue):
    for run, attempt in [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 2)]:
        queue.enqueue_trial({}, user_attrs={"run": run, "attempt": attempt})
    queue.enqueue_trial({}, user_attrs={"run": 7})  # not a name: ignored
    latest = q.latest_attempts(queue)
    assert {name: t.user_attrs["attempt"] for name, t in latest.items()} == {"a": 3, "b": 2}
    assert [t.number for t in latest.values()] == [3, 4]


def test_the_latest_attempt_does_not_depend_on_the_order_trials_are_listed(queue, monkeypatch):
    for attempt in (1, 2, 3):
        queue.enqueue_trial({}, user_attrs={"run": "a", "attempt": attempt})
    real = queue.get_trials
    monkeypatch.setattr(queue, "get_trials", lambda *a, **k: real(*a, **k)[::-1])
    assert q.latest_attempts(queue)["a"].user_attrs["attempt"] == 3


def test_only_runs_whose_latest_attempt_failed_by_itself_are_retried(queue):
    for run, attempt, state, stale in [
        ("failed", 1, TrialState.FAIL, False),
        ("stale", 1, TrialState.FAIL, True),
        ("done", 1, TrialState.COMPLETE, False),
        ("again", 1, TrialState.FAIL, False),
        ("again", 2, TrialState.COMPLETE, False),
    ]:
        queue.enqueue_trial({}, user_attrs={"run": run, "attempt": attempt})
        trial = queue.ask()
        if stale:
            trial.set_user_attr("stale", True)
        queue.tell(trial, 0.0 if state == TrialState.COMPLETE else None, state=state)
    assert q.retry_failed(queue) == ["failed"]
    assert q.latest_attempts(queue)["failed"].user_attrs == {"run": "failed", "attempt": 2}
    assert q.latest_attempts(queue)["failed"].state == TrialState.WAITING


# --- unqueued: which runs need a trial (the run folder is the truth) -----------------------------


@pytest.fixture
def study(tmp_path):
    (tmp_path / "study.yaml").write_text(STUDY)
    return load_study(tmp_path / "study.yaml")


def test_unqueued_runs_are_the_unfinished_never_queued_ones_longest_first(queue, study, tmp_path):
    out = tmp_path / "out"
    assert [run.name for run in study.runs] == ["epochs=1", "epochs=3", "epochs=2"]
    assert [run.name for run in q.unqueued(queue, study, out, lambda run_dir: False)] == [
        "epochs=3",
        "epochs=2",
        "epochs=1",
    ]
    done = out / "runs" / "epochs=2"
    assert [run.name for run in q.unqueued(queue, study, out, lambda run_dir: run_dir == done)] == [
        "epochs=3",
        "epochs=1",
    ]


@pytest.mark.parametrize(
    "state, queued_again",
    [
        (TrialState.COMPLETE, True),  # done by its trial, its metrics.json gone: missing, made again
        (TrialState.WAITING, False),
        (TrialState.RUNNING, False),
        (TrialState.FAIL, False),
    ],
)
def test_a_queued_run_needs_a_trial_again_only_when_done_but_missing(queue, study, tmp_path, state, queued_again):
    out = tmp_path / "out"
    queue.enqueue_trial({}, user_attrs={"run": "epochs=3", "attempt": 1})
    if state != TrialState.WAITING:
        trial = queue.ask()
        if state != TrialState.RUNNING:
            queue.tell(trial, 0.0 if state == TrialState.COMPLETE else None, state=state)
    names = [run.name for run in q.unqueued(queue, study, out, lambda run_dir: False)]
    assert ("epochs=3" in names) is queued_again and names[-2:] == ["epochs=2", "epochs=1"]
    assert [run.name for run in q.unqueued(queue, study, out, lambda run_dir: run_dir.name == "epochs=3")] == [
        "epochs=2",
        "epochs=1",
    ]  # finished in its folder: never queued again, whatever its trial says
