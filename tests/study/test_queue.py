"""The study queue in Optuna's storage: each run claimed once, dead workers' runs queued again,
failed runs retried on request, a status that writes nothing."""

import time

import pytest

from adlab.study import queue as q
from adlab.study.spec import load_study
from checks import snapshot

STUDY = """name: tiny
config:
  data: {name: digits}
  model: {name: cnn, cnn: {conv_channels: [8, 16], convs_per_block: 1, hidden: [32]}}
  train: {epochs: 2, batch_size: 64, lr: 0.003, progress_bar: false}
grid: {train.lr: [0.01, 0.003, 0.001]}
"""


@pytest.fixture
def study(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(STUDY)
    return load_study(path)


def _queue(tmp_path, study):
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    queue = q.open_queue(out)
    q.enqueue_once(queue, study, out, lambda run_dir: (run_dir / "metrics.json").is_file(), lambda *a: None)
    return out, queue


def test_each_run_is_enqueued_once_and_claimed_once(tmp_path, study):
    out, queue = _queue(tmp_path, study)
    q.enqueue_once(queue, study, out, lambda run_dir: False, lambda *a: None)  # a second worker: nothing added
    assert len(queue.trials) == 3 and (out / q.READY).is_file()
    other = q.open_queue(out)  # another process's view of the same journal
    first, second, third = q.claim(queue), q.claim(other), q.claim(queue)
    assert sorted(c.run for c in (first, second, third)) == ["lr=0.001", "lr=0.003", "lr=0.01"]
    assert q.claim(other) is None  # nothing waits: no empty trial is made


def test_a_silent_workers_run_is_queued_again_once(tmp_path, study, monkeypatch):
    """Deterministic on a loaded machine: the heartbeat is set back in time instead of waited for."""
    out, queue = _queue(tmp_path, study)
    claimed = q.claim(queue)
    monkeypatch.setattr(q, "GRACE", 60.0)
    assert q.requeue_stale(queue) == []  # its heartbeat is fresh
    queue._storage.set_trial_user_attr(claimed.trial._trial_id, "heartbeat", time.time() - 59)
    assert q.requeue_stale(queue) == []  # silent, but not yet for the grace period
    queue._storage.set_trial_user_attr(claimed.trial._trial_id, "heartbeat", time.time() - 61)
    assert q.requeue_stale(q.open_queue(out)) == [claimed.run]
    assert q.requeue_stale(queue) == []  # the second worker to look finds it handled
    again = [t for t in queue.get_trials() if t.user_attrs.get("run") == claimed.run]
    assert [(t.state.name, t.user_attrs["attempt"]) for t in again] == [("FAIL", 1), ("WAITING", 2)]
    assert q.latest_attempts(queue)[claimed.run].user_attrs["attempt"] == 2


def test_failed_runs_come_back_only_on_request_and_status_says_so(tmp_path, study):
    from optuna.trial import TrialState

    out, queue = _queue(tmp_path, study)
    claimed = q.claim(queue)
    claimed.trial.set_user_attr("error", "data.root: nowhere not found")
    queue.tell(claimed.trial, state=TrialState.FAIL)
    running = q.claim(queue)
    before = snapshot(out)
    lines = q.status_lines(study, out, q.open_queue(out, create=False))
    assert snapshot(out) == before
    assert lines[0] == f"study tiny in {out}: 1 running, 1 waiting, 1 failed"
    assert f"  {claimed.run}: failed: data.root: nowhere not found" in lines
    assert any(line.startswith(f"  {running.run}: running on ") and "last heartbeat" in line for line in lines)
    assert q.retry_failed(queue) == [claimed.run]
    assert q.latest_attempts(queue)[claimed.run].state.name == "WAITING"


def test_a_claim_without_any_heartbeat_is_judged_by_its_start(tmp_path, study, monkeypatch):
    """A worker killed between claiming and its first heartbeat: the claim's start time counts."""
    out, queue = _queue(tmp_path, study)
    claimed = q.claim(queue)
    queue._storage.set_trial_user_attr(claimed.trial._trial_id, "heartbeat", None)
    monkeypatch.setattr(q, "GRACE", 60.0)
    assert q.requeue_stale(queue) == []
    monkeypatch.setattr(q, "time", type("FakeTime", (), {"time": staticmethod(lambda: time.time() + 61)}))
    assert q.requeue_stale(queue) == [claimed.run]


def test_sqlite_is_refused_for_workers(tmp_path):
    from adlab.errors import AdlabError

    with pytest.raises(AdlabError, match="SQLite can hand one run to two workers"):
        q.open_queue(tmp_path, "sqlite:///x.db")
