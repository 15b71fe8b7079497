"""The study workers and their queue attacked as a user who read only docs/parallel.md would: damaged,
cut-short, binary and symlinked journals, stale locks after kill -9, removed run folders, a second
study or other --set items joined to a folder, edited variants, odd --workers and --storage values.
Each refusal is one `adlab: error:` line naming the file, exit 2, nothing written (the `cli` fixture
compares the working folder before and after)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from adlab.errors import ConfigError
from adlab.study import queue as q
from adlab.study.runner import run_workers
from adlab.study.spec import load_study

STUDY = """config:
  data: {name: digits}
  train: {epochs: 1, progress_bar: false}
  model: {cnn: {conv_channels: [8], convs_per_block: 1, hidden: [16]}}
variants:
  a: {train.seed: 1}
  b: {train.seed: 2}
"""


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """A study of two tiny runs made by one worker (journal, ready mark, runs, report); read-only."""
    root = tmp_path_factory.mktemp("made")
    (root / "s.yaml").write_text(STUDY)
    return run_workers(root / "s.yaml", out=root / "st", worker=True, verbose=False)


@pytest.fixture
def st(cli, made) -> Path:
    """A copy of the made study in the working folder as `st`, and its study file as `s.yaml`."""
    shutil.copytree(made, cli.root / "st", symlinks=True)
    (cli.root / "s.yaml").write_text(STUDY)
    return cli.root / "st"


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _owner(pid: int, host: str = q.HOST, pidns: str = q.PIDNS) -> str:
    return json.dumps({"pid": pid, "host": host, "pidns": pidns, "time": "2020-01-01T00:00:00", "token": "x"})


# --- a damaged journal: one line naming it, for workers and for --status ---------------------------

DAMAGED = {
    "a line of garbage": lambda text: text + b"garbage\n",
    "a line that is not JSON, then more": lambda text: text + b'{"op_code": 4, "wor\n' + text.splitlines(True)[-1],
    "cut short": lambda text: text + b'{"op_code": 5, "worker_id": "x", "trial_id": 0, "user_attr": {"a',
    "binary": lambda text: bytes(range(256)) * 4,
    "a binary record line": lambda text: text + b"\x00\xff\xfe" * 50 + b"\n",
    "JSON that is not a record": lambda text: text + b"[1, 2, 3]\n",
    "a record of no known kind": lambda text: text + b'{"op_code": 99, "worker_id": "x"}\n',
    "a record missing its fields": lambda text: text + b'{"op_code": 4, "worker_id": "x"}\n',
    "one endless line": lambda text: b"{" + b" " * (q.MAX_RECORD + 10),
}


@pytest.mark.parametrize("damage", list(DAMAGED))
@pytest.mark.parametrize("mode", ["--worker", "--status"])
def test_a_damaged_journal_is_one_line_naming_it(cli, st, damage, mode):
    journal = st / q.JOURNAL
    journal.write_bytes(DAMAGED[damage](journal.read_bytes()))
    line = cli.refused("study", "s.yaml", "--out", "st", mode, names=("st/queue.journal",))
    assert "move it away" in line or "cannot be read" in line


def test_a_journal_moved_away_as_told_rebuilds_the_queue_and_keeps_finished_runs(cli, st):
    """The journal moved away as the message says: the next worker rebuilds the queue; finished runs
    are kept, the one without metrics.json is made."""
    (st / q.JOURNAL).unlink()
    (st / "runs" / "b" / "metrics.json").unlink()
    kept = (st / "runs" / "a" / "metrics.json").stat().st_mtime_ns
    out = cli.succeeds("study", "s.yaml", "--out", "st", "--worker", outputs=("st",))
    assert "b: accuracy" in out and (st / "runs" / "b" / "metrics.json").is_file()
    assert (st / "runs" / "a" / "metrics.json").stat().st_mtime_ns == kept


# --- a journal that is not adlab's own plain file: refused, never written ---------------------------


@pytest.mark.parametrize("mode", ["--worker", "--status"])
def test_a_symlinked_journal_is_refused_and_its_target_never_written(cli, st, mode):
    user = cli.root / "thesis.txt"
    user.write_text("my thesis\n")
    (st / q.JOURNAL).unlink()
    (st / q.JOURNAL).symlink_to(user)
    line = cli.refused("study", "s.yaml", "--out", "st", mode, names=("st/queue.journal",))
    assert "symbolic link" in line
    assert user.read_text() == "my thesis\n"


def test_a_dangling_journal_symlink_is_refused_for_workers(cli, st):
    (st / q.JOURNAL).unlink()
    (st / q.JOURNAL).symlink_to(cli.root / "nowhere" / "file")
    cli.refused("study", "s.yaml", "--out", "st", "--worker", names=("st/queue.journal", "symbolic link"))
    assert not (cli.root / "nowhere").exists()


def test_a_hard_linked_journal_is_refused(cli, st):
    os.link(st / q.JOURNAL, cli.root / "copy.journal")
    cli.refused("study", "s.yaml", "--out", "st", "--worker", names=("st/queue.journal", "hard links"))


@pytest.mark.parametrize("mode", ["--worker", "--status"])
def test_a_journal_that_is_a_folder_is_refused(cli, st, mode):
    (st / q.JOURNAL).unlink()
    (st / q.JOURNAL).mkdir()
    cli.refused("study", "s.yaml", "--out", "st", mode, names=("st/queue.journal", "not a file"))


@pytest.mark.parametrize("mode", ["--worker", "--status"])
def test_a_journal_that_is_a_fifo_is_refused_without_waiting_for_a_writer(cli, st, mode):
    (st / q.JOURNAL).unlink()
    os.mkfifo(st / q.JOURNAL)  # the folder snapshot would block on it: checked by hand
    before = sorted(p.name for p in st.iterdir())
    code, _, err = cli.run("study", "s.yaml", "--out", "st", mode)
    assert code == 2 and err.count("\n") == 1 and "st/queue.journal: is not a file" in err
    assert sorted(p.name for p in st.iterdir()) == before


def test_a_user_folder_holding_a_journal_is_refused_and_the_journal_not_written(cli):
    (cli.root / "s.yaml").write_text(STUDY)
    (cli.root / "mine").mkdir()
    (cli.root / "mine" / q.JOURNAL).write_text("")
    cli.refused("study", "s.yaml", "--out", "mine", "--worker", names=("mine",))


# --- locks with owners: a dead worker's lock is taken over, a live one's is not --------------------


def test_a_dead_processes_fill_and_journal_locks_are_taken_over_at_once(cli, st):
    """kill -9 while filling the queue and appending to the journal: both locks left behind, the
    ready mark not written. The next worker takes both over at once (its owner is gone), each with a
    one-line notice, and makes the run that lost its results."""
    dead = _dead_pid()
    (st / q.READY).unlink()
    (st / "runs" / "b" / "metrics.json").unlink()
    (st / (q.FILL_LOCK + ".lock")).write_text(_owner(dead))
    (st / (q.JOURNAL + ".lock")).write_text(_owner(dead))
    started = time.monotonic()
    code, out, err = cli.run("study", "s.yaml", "--out", "st", "--worker")
    assert code == 0, err[-2000:]
    assert time.monotonic() - started < q.GRACE  # no wait for a grace period
    notices = [line for line in err.splitlines() if "taken over" in line]
    assert len(notices) == 2 and all(f"process {dead}" in line and "no longer running" in line for line in notices)
    assert (st / "runs" / "b" / "metrics.json").is_file() and (st / q.READY).is_file()
    assert not list(st.glob("*.lock")) and not list(st.glob("*.stale"))


def test_an_old_lock_of_another_host_is_taken_over_by_its_age(tmp_path, capsys):
    lock = q.OwnedLock(tmp_path / "x", grace=30)
    lock.path.write_text(_owner(12345, host="elsewhere"))
    os.utime(lock.path, (time.time() - 120, time.time() - 120))
    started = time.monotonic()
    lock.acquire()
    assert time.monotonic() - started < 5
    assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    lock.release()
    assert "elsewhere" in capsys.readouterr().err and not lock.path.exists()


def test_a_fresh_lock_of_another_host_waits_for_optunas_grace_period(tmp_path, capsys):
    lock = q.OwnedLock(tmp_path / "x", grace=3)
    lock.path.write_text(_owner(12345, host="elsewhere"))
    started = time.monotonic()
    lock.acquire()
    waited = time.monotonic() - started
    assert 3 <= waited < 30
    lock.release()
    assert "unchanged for 3 s; taken over" in capsys.readouterr().err


def test_a_live_owners_lock_is_not_taken_over(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = q.OwnedLock(tmp_path / "x", grace=30)
        lock.path.write_text(_owner(sleeper.pid))
        got = threading.Event()
        thread = threading.Thread(target=lambda: (lock.acquire(), got.set()), daemon=True)
        thread.start()
        assert not got.wait(1.5)  # alive and fresh: waited for
        assert json.loads(lock.path.read_text())["pid"] == sleeper.pid
        lock.path.unlink()  # the owner lets go
        assert got.wait(10)
        lock.release()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_dangling_symlink_lock_of_an_older_adlab_does_not_spin_forever(tmp_path):
    """Optuna's default lock was a symlink to the journal by a relative path: it dangled, Optuna's
    wait could not stat it and spun forever. Judged by its own age now."""
    lock = q.OwnedLock(tmp_path / "x", grace=30)
    lock.path.symlink_to("some/relative/queue.journal")
    os.utime(lock.path, (time.time() - 60, time.time() - 60), follow_symlinks=False)
    started = time.monotonic()
    lock.acquire()
    assert time.monotonic() - started < 5 and not lock.path.is_symlink()
    lock.release()


def test_a_lock_that_is_a_folder_is_one_line_naming_it(cli, st):
    (st / q.READY).unlink()
    (st / (q.FILL_LOCK + ".lock")).mkdir()
    cli.refused("study", "s.yaml", "--out", "st", "--worker", names=("st/.enqueue.lock", "is a folder"))


def test_an_old_fifo_in_place_of_a_lock_is_taken_over_without_blocking(tmp_path):
    lock = q.OwnedLock(tmp_path / "x", grace=30)
    os.mkfifo(lock.path)
    os.utime(lock.path, (time.time() - 60, time.time() - 60))
    started = time.monotonic()
    lock.acquire()
    assert time.monotonic() - started < 5 and lock.path.is_file()
    lock.release()


def test_a_held_lock_is_touched_while_its_holder_works(tmp_path, monkeypatch):
    monkeypatch.setattr(q, "HEARTBEAT", 0.1)
    with q.held(tmp_path / "x") as lock:
        os.utime(lock.path, (0, 0))
        deadline = time.monotonic() + 10
        while lock.path.stat().st_mtime == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lock.path.stat().st_mtime > 0
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not lock.path.exists()


# --- the run folder is the truth: a removed run is missing, and made again ---------------------------


@pytest.mark.parametrize("removed", ["folder", "metrics.json"])
def test_status_shows_a_removed_run_as_missing_and_a_worker_makes_it_again(cli, st, removed):
    victim = st / "runs" / "a"
    shutil.rmtree(victim) if removed == "folder" else (victim / "metrics.json").unlink()
    kept = (st / "runs" / "b" / "metrics.json").stat().st_mtime_ns
    out = cli.succeeds("study", "s.yaml", "--out", "st", "--status")
    assert out.splitlines()[0].endswith("1 done, 1 missing")
    assert "  a: missing: done earlier, but st/runs/a/metrics.json is gone; the next worker makes it again" in out
    out = cli.succeeds("study", "s.yaml", "--out", "st", "--worker", outputs=("st",))
    assert "a: done earlier, but st/runs/a/metrics.json is gone; queued to be made again" in out
    assert (victim / "metrics.json").is_file()
    assert (st / "runs" / "b" / "metrics.json").stat().st_mtime_ns == kept  # not made twice
    assert cli.succeeds("study", "s.yaml", "--out", "st", "--status").splitlines()[0].endswith(": 2 done")


# --- joining: the same study and --set items, or a refusal naming both ------------------------------


def test_a_second_study_file_joined_to_a_folder_is_refused_naming_both(cli, st):
    other = cli.root / "other.yaml"
    other.write_text(STUDY.replace("b: {train.seed: 2}", "c: {train.seed: 3}"))
    line = cli.refused("study", other, "--out", "st", "--worker", names=(str(other), "st/study.yaml"))
    assert "not the study file of st" in line
    cli.refused("study", other, "--out", "st", "--workers", "1", names=(str(other), "st/study.yaml"))
    cli.refused("study", other, "--out", "st", "--status", names=(str(other), "st/study.yaml"))


def test_the_same_study_under_another_name_joins(cli, st):
    (cli.root / "copy.yaml").write_text(STUDY)
    out = cli.succeeds("study", "copy.yaml", "--out", "st", "--worker", outputs=("st",))
    assert "failed" not in out


def test_set_items_differing_on_a_joining_worker_are_refused(cli, st):
    line = cli.refused("study", "s.yaml", "--out", "st", "--worker", "--set", "train.lr=0.5", names=("st",))
    assert "started with no --set" in line


def test_a_damaged_study_json_is_one_line_naming_it(cli, st):
    (st / "study.json").write_text("{not json")
    cli.refused("study", "s.yaml", "--out", "st", "--worker", names=("st/study.json",))


# --- resume after an edited variant: refused, naming the run and the key ----------------------------


def test_resume_after_a_variants_settings_were_edited_is_refused_naming_run_and_key(cli, st):
    (cli.root / "s.yaml").write_text(STUDY.replace("a: {train.seed: 1}", "a: {train.seed: 5}"))
    line = cli.refused("study", "s.yaml", "--out", "st", "--resume", names=("st/runs/a", "run 'a'", "train.seed"))
    assert "remove that run folder" in line


def test_resume_after_an_edit_of_the_shared_config_names_the_first_run(cli, st):
    (cli.root / "s.yaml").write_text(STUDY.replace("epochs: 1", "epochs: 2"))
    cli.refused("study", "s.yaml", "--out", "st", "--resume", names=("run 'a'", "train.epochs"))


def test_resume_with_a_variant_added_keeps_the_finished_runs(cli, st):
    (cli.root / "s.yaml").write_text(STUDY + "  c: {train.seed: 3}\n")
    kept = (st / "runs" / "a" / "metrics.json").stat().st_mtime_ns
    out = cli.succeeds("study", "s.yaml", "--out", "st", "--resume", outputs=("st",))
    assert "a: finished earlier, kept" in out and (st / "runs" / "c" / "metrics.json").is_file()
    assert (st / "runs" / "a" / "metrics.json").stat().st_mtime_ns == kept


def test_resume_after_removing_the_edited_run_makes_it_with_the_new_settings(cli, st):
    (cli.root / "s.yaml").write_text(STUDY.replace("a: {train.seed: 1}", "a: {train.seed: 5}"))
    shutil.rmtree(st / "runs" / "a")
    cli.succeeds("study", "s.yaml", "--out", "st", "--resume", outputs=("st",))
    assert "seed: 5" in (st / "runs" / "a" / "config.yaml").read_text()


# --- --workers and --storage: refused before anything is made ---------------------------------------


@pytest.mark.parametrize("count", ["0", "-1", "-300", "257", "10000"])
def test_a_worker_count_out_of_range_is_refused_before_anything_is_made(cli, count):
    (cli.root / "s.yaml").write_text(STUDY)
    cli.refused("study", "s.yaml", "--out", "new", "--workers", count, names=("--workers",))
    assert not (cli.root / "new").exists()


def test_more_workers_than_twice_the_cores_or_gpus_are_refused(cli, monkeypatch):
    """Each worker is a process with torch and the data in memory: --workers 256 on a laptop is a bomb."""
    (cli.root / "s.yaml").write_text(STUDY)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    line = cli.refused("study", "s.yaml", "--out", "new", "--workers", "5", names=("--workers 5", "2 CPU core(s)"))
    assert "at most 4" in line and "--worker on other machines" in line
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    line = cli.refused("study", "s.yaml", "--out", "new", "--workers", "9", names=("--workers 9", "4 GPU(s)"))
    assert "at most 8" in line


def test_workers_and_worker_together_are_refused(cli):
    (cli.root / "s.yaml").write_text(STUDY)
    cli.refused("study", "s.yaml", "--out", "new", "--workers", "1", "--worker", names=("--workers N", "--worker"))


@pytest.mark.parametrize("workers", [0, -2, 300, True, 1.5, "2"])
def test_the_python_api_refuses_the_same_worker_counts(tmp_path, workers):
    (tmp_path / "s.yaml").write_text(STUDY)
    with pytest.raises(ConfigError, match="--workers"):
        run_workers(tmp_path / "s.yaml", out=tmp_path / "new", workers=workers)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    "storage", ["sqlite:///q.db", "notaurl", "", "postgresql://u@127.0.0.1:1/db", "mysql://u@127.0.0.1:1/db"]
)
def test_a_refused_storage_leaves_no_study_folder(cli, storage):
    (cli.root / "s.yaml").write_text(STUDY)
    cli.refused("study", "s.yaml", "--out", "new", "--worker", "--storage", storage, names=("--storage",))
    assert not (cli.root / "new").exists()


@pytest.mark.parametrize(
    "heartbeat, grace", [(10.0, 5.0), (0.0, 60.0), (-1.0, 60.0), (float("nan"), 60.0), (10.0, float("inf"))]
)
def test_nonsense_queue_timings_are_refused_before_anything_is_made(cli, monkeypatch, heartbeat, grace):
    (cli.root / "s.yaml").write_text(STUDY)
    monkeypatch.setattr(q, "HEARTBEAT", heartbeat)
    monkeypatch.setattr(q, "GRACE", grace)
    cli.refused("study", "s.yaml", "--out", "new", "--worker", names=("ADLAB_QUEUE_",))


def test_a_journal_record_with_odd_values_does_not_break_status(cli, st):
    """A hand-edited trial (its attempt and heartbeat text, not numbers): status still reads it."""
    record = {
        "op_code": 4,
        "worker_id": "w",
        "study_id": 0,
        "datetime_start": None,
        "state": 0,
        "value": None,
        "values": None,
        "distributions": {},
        "params": {},
        "system_attrs": {},
        "intermediate_values": {},
        "user_attrs": {"run": "a", "attempt": "many", "heartbeat": "soon", "worker": ["odd"]},
    }
    with open(st / q.JOURNAL, "a") as f:
        f.write(json.dumps(record) + "\n")
    (st / "runs" / "a" / "metrics.json").unlink()
    out = cli.succeeds("study", "s.yaml", "--out", "st", "--status")
    assert out.splitlines()[0].endswith("1 done, 1 running")
    assert "  a: running on ['odd'] for " in out


def test_a_claimed_run_finished_meanwhile_is_kept_not_made_twice(tmp_path, made):
    """`adlab study --resume` finished a run while it waited in the queue: the worker keeps it."""
    out = tmp_path / "st"
    shutil.copytree(made, out, symlinks=True)
    (tmp_path / "s.yaml").write_text(STUDY)
    queue = q.open_queue(out)
    queue.enqueue_trial({}, user_attrs={"run": "a", "attempt": 2})
    kept = (out / "runs" / "a" / "metrics.json").stat().st_mtime_ns
    said = []
    study = load_study(tmp_path / "s.yaml")
    assert q.work(study, out, queue, said.append) == (0, 0)
    assert any("a: finished earlier, kept" in line for line in said)
    assert (out / "runs" / "a" / "metrics.json").stat().st_mtime_ns == kept
