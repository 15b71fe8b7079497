"""Study workers as real processes: kill -9 one of two workers mid-run and the study still makes
every run exactly once, the killed run continued from its checkpoint, with the numbers of a study
run in one process at the same threads per run."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import adlab
from adlab.study import queue as q
from checks import frozen_mid_run

STUDY = """name: kill
config:
  data: {name: digits}
  model: {name: cnn, cnn: {conv_channels: [8, 16], convs_per_block: 1, hidden: [32]}}
  train: {epochs: 6, batch_size: 32, lr: 0.003, progress_bar: false, num_threads: 1}
grid: {train.lr: [0.01, 0.003, 0.001]}
fusion: [{name: both, runs: [lr=0.01, lr=0.003]}]
"""


def _without_timings(metrics: dict) -> dict:
    """metrics.json without timings, and a fusion's members by run name (their folders differ)."""
    kept = {k: v for k, v in metrics.items() if not k.endswith("seconds")}
    if "members" in kept:
        kept["members"] = {path.rsplit("/", 1)[1]: value for path, value in kept["members"].items()}
    return kept


@pytest.mark.slow
def test_a_killed_worker_loses_nothing_and_duplicates_nothing(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text(STUDY)
    out = tmp_path / "workers"
    env = {**os.environ, "ADLAB_QUEUE_HEARTBEAT": "0.5", "ADLAB_QUEUE_GRACE": "4"}
    parent = subprocess.Popen(
        [sys.executable, "-m", "adlab", "study", str(study), "--out", str(out), "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    victim = None
    deadline = time.monotonic() + 300
    while victim is None and time.monotonic() < deadline and parent.poll() is None:
        time.sleep(0.2)
        victim = frozen_mid_run(out)
    assert victim is not None, "no run reached its first checkpoint"
    victim = (victim[0].user_attrs["run"], victim[1])  # (run name, worker pid)
    os.kill(victim[1], signal.SIGKILL)  # mid-run: after at least one epoch, before metrics.json
    printed, _ = parent.communicate(timeout=900)
    assert parent.returncode == 0, printed[-3000:]
    assert "ended with signal 9" in printed and "queued again" in printed

    queue = q.open_queue(out, create=False)
    trials = [t for t in queue.get_trials() if not t.user_attrs.get("idle")]
    complete = sorted(t.user_attrs["run"] for t in trials if t.state.name == "COMPLETE")
    assert complete == ["lr=0.001", "lr=0.003", "lr=0.01"]  # every run exactly once
    killed = sorted(
        (t.user_attrs["attempt"], t.state.name, bool(t.user_attrs.get("continued")))
        for t in trials
        if t.user_attrs["run"] == victim[0]
    )
    assert killed == [(1, "FAIL", False), (2, "COMPLETE", True)]  # the second attempt continued from the checkpoint
    history = (out / "runs" / victim[0] / "history.csv").read_text().splitlines()[1:]
    assert [int(line.split(",")[0]) for line in history] == [1, 2, 3, 4, 5, 6]  # no epoch lost or trained twice
    assert (out / "runs" / "both" / "metrics.json").is_file() and (out / "report.md").is_file()
    assert json.loads((out / "runs" / "lr=0.01" / "env.json").read_text())["torch_threads"] == 1

    # the same study in one process, one run after another, at the same threads per run
    alone = adlab.run_study(study, out=tmp_path / "sequential", verbose=False)
    for name in ("lr=0.01", "lr=0.003", "lr=0.001", "both"):
        a = json.loads((out / "runs" / name / "metrics.json").read_text())
        b = json.loads((alone / "runs" / name / "metrics.json").read_text())
        assert _without_timings(a) == _without_timings(b), name


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_a_signalled_worker_gives_its_run_back_at_once(tmp_path, signum):
    """SIGTERM (scancel, preemption) or the USR1 a job script asked for: the worker stops at its last
    checkpoint, puts its run back in the queue before it exits (not after the grace period), and the
    next worker continues it to the numbers of an uninterrupted run."""
    study = tmp_path / "study.yaml"
    study.write_text(STUDY.replace("fusion: [{name: both, runs: [lr=0.01, lr=0.003]}]\n", ""))
    out = tmp_path / "signalled"
    env = {**os.environ, "ADLAB_QUEUE_HEARTBEAT": "0.5", "ADLAB_QUEUE_GRACE": "600"}  # no takeover by silence
    command = [sys.executable, "-m", "adlab", "study", str(study), "--out", str(out), "--worker"]
    worker = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    victim = None
    deadline = time.monotonic() + 300
    while victim is None and time.monotonic() < deadline and worker.poll() is None:
        time.sleep(0.2)
        victim = frozen_mid_run(out)
    assert victim is not None, "no run reached its first checkpoint"
    victim = (victim[0].user_attrs["run"], victim[1])  # (run name, worker pid)
    os.kill(victim[1], signum)
    os.kill(victim[1], signal.SIGCONT)
    printed, _ = worker.communicate(timeout=300)
    assert worker.returncode == 143, printed[-3000:]
    last = printed.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"adlab: worker stopped \({signum.name} after [0-5] of 6 epochs\); run '{re.escape(victim[0])}' "
        "is back in the queue for the other workers",
        last,
    ), last
    latest = q.latest_attempts(q.open_queue(out, create=False))[victim[0]]
    assert latest.state.name == "WAITING" and latest.user_attrs["attempt"] == 2  # back at once

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = [t for t in q.open_queue(out, create=False).get_trials() if not t.user_attrs.get("idle")]
    assert sorted(t.user_attrs["run"] for t in trials if t.state.name == "COMPLETE") == [
        "lr=0.001",
        "lr=0.003",
        "lr=0.01",
    ]
    history = (out / "runs" / victim[0] / "history.csv").read_text().splitlines()[1:]
    assert [int(line.split(",")[0]) for line in history] == [1, 2, 3, 4, 5, 6]
    alone = adlab.run_study(study, out=tmp_path / "sequential", verbose=False)
    a = json.loads((out / "runs" / victim[0] / "metrics.json").read_text())
    b = json.loads((alone / "runs" / victim[0] / "metrics.json").read_text())
    assert _without_timings(a) == _without_timings(b)
