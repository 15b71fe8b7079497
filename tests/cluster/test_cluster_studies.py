"""A study on a real (one-machine) SLURM cluster and a real PostgreSQL queue: submitted as a job array,
array tasks cancelled or killed mid-run, workers that lose their database; every run made exactly
once, with the metrics of the same study made in one process at the same threads per run."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adlab.study import queue as q
from checks import frozen_mid_run

pytestmark = [pytest.mark.slow, pytest.mark.requires("srun")]

STUDY = """name: six
config:
  data: {name: digits}
  model: {name: cnn, cnn: {conv_channels: [8, 16], convs_per_block: 1, hidden: [32]}}
  train: {epochs: 8, batch_size: 32, lr: 0.003, progress_bar: false}
grid: {train.lr: [0.01, 0.003, 0.001]}
seeds: [0, 1]
"""
RUNS = sorted(f"lr={lr}-seed={seed}" for lr in ("0.01", "0.003", "0.001") for seed in (0, 1))
THREADS = ["--set", "train.num_threads=1"]  # the same threads per run as the one-process study
SRUN_HINT = "srun` command is available on your system but is not used"
FAST_QUEUE = {"ADLAB_QUEUE_HEARTBEAT": "0.5", "ADLAB_QUEUE_GRACE": "4"}


def adlab(*args, env, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "adlab", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=kw.pop("timeout", 600),
        **kw,
    )


def start_adlab(*args, env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "adlab", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def without_timings(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.endswith("seconds")}


def metrics_of(out: Path) -> dict:
    return {run: without_timings(json.loads((out / "runs" / run / "metrics.json").read_text())) for run in RUNS}


@pytest.fixture(scope="module")
def study_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cluster-study") / "six.yaml"
    path.write_text(STUDY)
    return path


@pytest.fixture(scope="module")
def one_process(study_file) -> dict:
    """The study made in one process, one run after another: the numbers every other way must give."""
    out = study_file.parent / "one-process"
    done = adlab("study", study_file, "--out", out, *THREADS, env=dict(os.environ))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert SRUN_HINT not in done.stdout + done.stderr
    return metrics_of(out)


def submit(study_file, out: Path, env: dict, *extra) -> str:
    done = adlab("study", study_file, "--out", out, "--submit", "slurm", "--array", 3, *THREADS, *extra, env=env)
    assert done.returncode == 0, done.stderr
    job = re.search(r"submitted SLURM job (\d+)", done.stdout)
    assert job, done.stdout
    return job.group(1)


def in_queue(job: str, env: dict) -> bool:
    done = subprocess.run(["squeue", "--noheader", "--array", "--jobs", job], env=env, capture_output=True, text=True)
    return bool(done.stdout.strip())


def wait_for_job(job: str, env: dict, timeout: float = 600, watch=None) -> None:
    deadline = time.monotonic() + timeout
    while in_queue(job, env):
        assert time.monotonic() < deadline, f"SLURM job {job} still in the queue after {timeout} s"
        if watch:
            watch()
        time.sleep(0.3)


def wait_frozen(out: Path, storage: str | None = None, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = frozen_mid_run(out, storage)
        if found:
            return found
        time.sleep(0.2)
    pytest.fail("no run reached its first checkpoint")


def check_each_run_once(out: Path, victim: str, storage: str | None = None) -> None:
    """Every run COMPLETE exactly once; the victim's second attempt continued from its checkpoint, and its
    history has every epoch exactly once."""
    trials = [t for t in q.open_queue(out, storage, create=False).get_trials() if not t.user_attrs.get("idle")]
    assert sorted(t.user_attrs["run"] for t in trials if t.state.name == "COMPLETE") == RUNS
    attempts = sorted(
        (t.user_attrs["attempt"], t.state.name, bool(t.user_attrs.get("continued")))
        for t in trials
        if t.user_attrs["run"] == victim
    )
    assert attempts == [(1, "FAIL", False), (2, "COMPLETE", True)]
    history = (out / "runs" / victim / "history.csv").read_text().splitlines()[1:]
    assert [int(line.split(",")[0]) for line in history] == list(range(1, 9))


def worker_logs(out: Path) -> str:
    return "\n".join(p.read_text() for p in sorted((out / "slurm").glob("worker-*.log")))


def test_a_study_submitted_as_a_job_array_matches_one_process(slurm, study_file, one_process, tmp_path):
    out = tmp_path / "array"
    env = {**slurm.env, **FAST_QUEUE}
    job = submit(study_file, out, env)
    script = (out / "slurm" / "worker.sbatch").read_text()
    assert "#SBATCH --array=0-2" in script and f"--out {out} --worker --set train.num_threads=1" in script
    assert json.loads((out / "slurm" / "jobs.json").read_text())[0]["job"] == job

    statuses = []

    def watch():
        done = adlab("study", study_file, "--out", out, "--status", env=env)
        assert done.returncode == 0, done.stderr
        statuses.append(done.stdout)

    wait_for_job(job, env, watch=watch)
    assert any(re.search(rf"running on \S+ \(SLURM job {job}_[0-2]\)", s) for s in statuses), statuses[-3:]
    assert any(f"SLURM job {job} (3 worker(s)): " in s and "running" in s.splitlines()[1] for s in statuses)
    assert metrics_of(out) == one_process
    assert (out / "report.md").is_file()
    logs = worker_logs(out)
    assert "Traceback" not in logs and SRUN_HINT not in logs
    final = adlab("study", study_file, "--out", out, "--status", env=env).stdout
    assert "6 done" in final and f"SLURM job {job} (3 worker(s)): no task left in the queue" in final


def test_a_cancelled_array_task_gives_its_run_back_at_once(slurm, study_file, one_process, tmp_path):
    out = tmp_path / "scancel"
    env = {**slurm.env, "ADLAB_QUEUE_HEARTBEAT": "0.5", "ADLAB_QUEUE_GRACE": "600"}  # no takeover by silence
    job = submit(study_file, out, env)
    trial, pid = wait_frozen(out)
    task = trial.user_attrs["slurm"]
    assert task.startswith(f"{job}_")
    subprocess.run(["scancel", task], env=env, check=True)  # SIGCONT, then SIGTERM
    os.kill(pid, signal.SIGCONT)
    wait_for_job(job, env, timeout=300)  # a grace of 600 s: only the worker's own give-back brings the run back
    victim = trial.user_attrs["run"]
    check_each_run_once(out, victim)
    given_back = [
        t
        for t in q.open_queue(out, create=False).get_trials()
        if t.user_attrs.get("run") == victim and t.state.name == "FAIL"
    ]
    assert "SIGTERM" in given_back[0].user_attrs["error"]
    assert f"{victim}: SIGTERM" in worker_logs(
        out
    ) and "queued again, to continue from its last checkpoint" in worker_logs(out)
    assert metrics_of(out) == one_process
    assert (out / "report.md").is_file()


def test_a_killed_worker_in_an_array_task_loses_nothing(slurm, study_file, one_process, tmp_path):
    out = tmp_path / "sigkill"
    env = {**slurm.env, **FAST_QUEUE}
    job = submit(study_file, out, env)
    trial, pid = wait_frozen(out)
    os.kill(pid, signal.SIGKILL)
    wait_for_job(job, env, timeout=300)
    check_each_run_once(out, trial.user_attrs["run"])
    assert "its worker went silent" in worker_logs(out)
    assert metrics_of(out) == one_process


def test_cancel_stops_the_studys_jobs_and_a_new_submission_finishes_it(slurm, study_file, one_process, tmp_path):
    out = tmp_path / "cancel"
    env = {**slurm.env, "ADLAB_QUEUE_HEARTBEAT": "0.5", "ADLAB_QUEUE_GRACE": "600"}
    job = submit(study_file, out, env)
    _, pid = wait_frozen(out)
    cancelled = adlab("study", study_file, "--out", out, "--cancel", env=env)
    os.kill(pid, signal.SIGCONT)
    assert cancelled.returncode == 0 and f"cancelled SLURM job(s) {job}" in cancelled.stdout, cancelled.stderr
    wait_for_job(job, env, timeout=120)
    status = adlab("study", study_file, "--out", out, "--status", env=env).stdout
    assert "running" not in status.split("\n", 2)[2] and "waiting" in status  # every held run was given back
    again = submit(study_file, out, env)
    wait_for_job(again, env)
    assert metrics_of(out) == one_process
    assert [j["job"] for j in json.loads((out / "slurm" / "jobs.json").read_text())] == [job, again]


def test_workers_under_one_srun_step_are_independent_workers(slurm, study_file, one_process, tmp_path):
    """`srun --ntasks=2 adlab study --worker`: two workers sharing the queue, never two DDP ranks."""
    out = tmp_path / "srun-workers"
    done = subprocess.run(
        [
            "srun",
            "--ntasks=2",
            sys.executable,
            "-m",
            "adlab",
            "study",
            str(study_file),
            "--out",
            str(out),
            "--worker",
            *THREADS,
        ],
        env={**slurm.env, **FAST_QUEUE},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    workers = {
        t.user_attrs["worker"] for t in q.open_queue(out, create=False).get_trials() if t.state.name == "COMPLETE"
    }
    assert len(workers) == 2  # both made runs
    assert metrics_of(out) == one_process
    assert SRUN_HINT not in done.stdout + done.stderr


def test_ddp_under_srun_trains_as_two_ranks_with_one_run_folder(slurm, tmp_path):
    config = Path(__file__).parents[2] / "configs" / "digits_cnn.yaml"
    ddp = [
        "--set",
        "train.strategy=ddp",
        "--set",
        "train.devices=2",
        "--set",
        "train.epochs=3",
        "--set",
        "train.num_threads=1",
    ]
    srun = subprocess.run(
        [
            "srun",
            "--ntasks=2",
            sys.executable,
            "-m",
            "adlab",
            "train",
            str(config),
            *ddp,
            "--out",
            str(tmp_path / "runs" / "srun"),
        ],
        env=slurm.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert srun.returncode == 0, srun.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["srun"]  # rank 1 wrote no folder of its own
    assert srun.stdout.count("test: accuracy=") == 1  # rank 0 scores and writes
    # the same two ranks started by Lightning itself: the same numbers
    local = adlab("train", config, *ddp, "--out", tmp_path / "lightning", env=slurm.env)
    assert local.returncode == 0, local.stderr[-3000:]
    a = json.loads((tmp_path / "runs" / "srun" / "metrics.json").read_text())
    b = json.loads((tmp_path / "lightning" / "metrics.json").read_text())
    assert without_timings(a) == without_timings(b)
    assert SRUN_HINT not in srun.stdout + srun.stderr + local.stdout + local.stderr


# --- PostgreSQL as the queue's storage ----------------------------------------------------------------


@pytest.mark.requires("cluster")
def test_two_workers_on_postgresql_one_killed_give_the_same_numbers(
    postgres_server, fresh_database, study_file, one_process, tmp_path
):
    out, url = tmp_path / "pg", fresh_database
    env = {**os.environ, **FAST_QUEUE}
    workers = [
        start_adlab("study", study_file, "--out", out, "--worker", "--storage", url, *THREADS, env=env)
        for _ in range(2)
    ]
    try:
        trial, pid = wait_frozen(out, url)
        os.kill(pid, signal.SIGKILL)
        outputs = [w.communicate(timeout=600)[0] for w in workers]
    finally:
        for w in workers:
            w.kill()
    codes = sorted(w.returncode for w in workers)
    assert codes == [-9, 0], outputs
    assert not (out / q.JOURNAL).exists()  # the queue lives in the database
    check_each_run_once(out, trial.user_attrs["run"], url)
    assert metrics_of(out) == one_process
    status = adlab("study", study_file, "--out", out, "--storage", url, "--status", env=env)
    assert status.returncode == 0 and "6 done" in status.stdout


@pytest.mark.requires("cluster")
def test_a_database_that_vanishes_mid_study_stops_the_worker_in_one_line(
    postgres_server, fresh_database, study_file, one_process, tmp_path
):
    out, url = tmp_path / "vanish", fresh_database
    env = {**os.environ, **FAST_QUEUE}
    worker = start_adlab("study", study_file, "--out", out, "--worker", "--storage", url, *THREADS, env=env)
    try:
        trial, pid = wait_frozen(out, url)
        postgres_server.stop()
        os.kill(pid, signal.SIGCONT)
        printed, _ = worker.communicate(timeout=300)
    finally:
        worker.kill()
        postgres_server.start()
    assert worker.returncode == 2, printed[-3000:]
    last = printed.strip().splitlines()[-1]
    assert last.startswith(f"adlab: error: --storage {url}: the queue's database stopped answering"), last
    assert "Traceback" not in printed
    # the database back: the next worker takes the silent run over and finishes the study
    again = adlab("study", study_file, "--out", out, "--worker", "--storage", url, *THREADS, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert metrics_of(out) == one_process
