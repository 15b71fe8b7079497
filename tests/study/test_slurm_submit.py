"""`adlab study --submit slurm` without a cluster: the script it writes, the flags it refuses, and what
it says where SLURM is missing (the real cluster: tests/cluster)."""

import json

import pytest

from adlab.study import queue as q
from adlab.study import slurm

STUDY = """name: tiny
config:
  data: {name: digits}
  train: {epochs: 1, progress_bar: false}
grid: {train.lr: [0.01, 0.003]}
"""


@pytest.fixture
def study(cli):
    path = cli.root / "s.yaml"
    path.write_text(STUDY)
    return path


def test_plan_prints_the_job_array_script_and_writes_nothing(cli, study):
    out = cli.succeeds(
        "study",
        study,
        "--out",
        "o",
        "--submit",
        "slurm",
        "--array",
        "4",
        "--partition",
        "gpu",
        "--time",
        "1-02:00:00",
        "--cpus-per-task",
        "8",
        "--gpus-per-task",
        "a100:1",
        "--mem",
        "16G",
        "--signal",
        "USR1@120",
        "--requeue",
        "--sbatch=--qos=long",
        "--set",
        "train.epochs=2",
        "--storage",
        "postgresql://me@db/adlab",
        "--plan",
    )
    lines = out.splitlines()
    assert (
        lines[0] == f"# {cli.root / 'o' / 'slurm' / 'worker.sbatch'} (not written: --plan), then: sbatch "
        f"{cli.root / 'o' / 'slurm' / 'worker.sbatch'}"
    )
    for line in [
        "#SBATCH --array=0-3",
        "#SBATCH --ntasks=1",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=1-02:00:00",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --gpus-per-task=a100:1",
        "#SBATCH --mem=16G",
        "#SBATCH --signal=B:USR1@120",
        "#SBATCH --requeue",
        "#SBATCH --qos=long",
        f"#SBATCH --chdir={cli.root}",
        f"#SBATCH --output={cli.root / 'o' / 'slurm'}/worker-%A_%a.log",
    ]:
        assert line in lines, line
    command = lines[-1]
    assert command.startswith("exec ") and command.endswith(
        f"study {study} --out {cli.root / 'o'} --worker --storage postgresql://me@db/adlab --set train.epochs=2"
    )
    assert not (cli.root / "o").exists()


def test_values_with_spaces_are_quoted_in_the_worker_command(tmp_path):
    text = slurm.worker_script(
        tmp_path / "my study.yaml", tmp_path / "out", ["train.note=a b; rm -rf ~"], None, slurm.Options(array=2), "x y"
    )
    assert "#SBATCH --job-name=adlab-x_y" in text
    assert f"'{tmp_path / 'my study.yaml'}' --out {tmp_path / 'out'} --worker --set 'train.note=a b; rm -rf ~'" in text


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--array", "0"], "--array"),
        (["--array", "1001"], "--array"),
        (["--time", "soon"], "--time"),
        (["--partition", "a b"], "--partition"),
        (["--mem", "lots"], "--mem"),
        (["--gpus-per-task", "1;rm"], "--gpus-per-task"),
        (["--cpus-per-task", "0"], "--cpus-per-task"),
        (["--signal", "KILL@10"], "--signal"),
        (["--signal", "TERM"], "--signal"),
        (["--sbatch=--array=0-99"], "give --array N"),
        (["--sbatch=--output=/elsewhere"], "adlab writes --output itself"),
        (["--sbatch=qos=long"], "one sbatch option"),
        (["--sbatch=--qos=long\n#SBATCH --array=1"], "one sbatch option"),
        (["--sbatch=--qos=x --array=0-99"], "one sbatch option"),
        (["--sbatch=-a0-99"], "adlab writes -a itself; give --array N"),
        (["--sbatch=--arr=0-99"], "adlab writes --array itself"),
        (["--sbatch=-Jname"], "adlab writes -J itself"),
        (["--out", "my runs"], "which an #SBATCH line cannot hold"),
        (["--out", "o%j"], "which an #SBATCH line cannot hold"),
    ],
)
def test_bad_job_array_flags_are_one_line_before_anything_is_made(cli, study, flags, named):
    cli.refused("study", study, "--out", "o", "--submit", "slurm", *flags, names=(named,))


def test_a_flag_of_its_own_abbreviated_is_still_known():
    assert slurm._own_flag("--arr=0-3") == "--array" and slurm._own_flag("--qos=long") is None
    assert slurm._own_flag("--parti=gpu") == "--partition" and slurm._own_flag("--co=x") is None  # too short to tell


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--array", "3"], "--array: go with --submit slurm"),
        (["--requeue", "--workers", "2"], "--requeue: go with --submit slurm"),
        (["--submit", "slurm", "--workers", "2"], "--submit does not go with --workers"),
        (["--submit", "slurm", "--worker"], "--submit does not go with --worker"),
        (["--submit", "slurm", "--status"], "--submit does not go with --status"),
        (["--cancel", "--worker"], "--cancel does not go with --worker"),
        (["--cancel", "--plan"], "--cancel does not go with --plan"),
    ],
)
def test_flags_that_do_not_go_together(cli, study, flags, named):
    cli.refused("study", study, "--out", "o", *flags, names=(named,))


def test_without_sbatch_the_study_is_not_begun(cli, study, monkeypatch):
    monkeypatch.setenv("PATH", str(cli.root / "no-such-bin"))
    line = cli.refused("study", study, "--out", "o", "--submit", "slurm", names=("sbatch not found",))
    assert "login node" in line


def test_cancel_without_a_submitted_job_names_the_record(cli, study):
    cli.succeeds("study", study, "--out", "o", "--workers", "1", outputs=("o",))
    cli.refused("study", study, "--out", "o", "--cancel", names=("no SLURM job was submitted", "jobs.json"))


def test_cancel_without_scancel_prints_the_line_to_run(cli, study, monkeypatch):
    cli.succeeds("study", study, "--out", "o", "--workers", "1", outputs=("o",))
    (cli.root / "o" / "slurm").mkdir()
    (cli.root / "o" / "slurm" / "jobs.json").write_text(json.dumps([{"job": "41", "array": 2}, {"job": "42"}]))
    monkeypatch.setenv("PATH", str(cli.root / "no-such-bin"))
    out = cli.succeeds("study", study, "--out", "o", "--cancel")
    assert "on the cluster run: scancel 41 42" in out


@pytest.mark.parametrize("content", ["not json", '[{"job": "1; rm -rf /"}]', '{"job": 3}', "[3, null]"])
def test_a_damaged_job_record_holds_no_job(tmp_path, content):
    (tmp_path / "slurm").mkdir()
    (tmp_path / "slurm" / "jobs.json").write_text(content)
    assert slurm.recorded_jobs(tmp_path) == []


def test_the_slurm_task_is_read_from_the_environment(monkeypatch):
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    assert slurm.task_id() is None
    monkeypatch.setenv("SLURM_JOB_ID", "17")
    assert slurm.task_id() == "17"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "12")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert slurm.task_id() == "12_3"


def test_a_password_never_shows(monkeypatch):
    assert q.masked("postgresql://me:s3cr/t@db:5432/adlab") == "postgresql://me:***@db:5432/adlab"
    assert q.masked("postgresql://me@db/adlab") == "postgresql://me@db/adlab"
    assert (
        q.masked("postgresql://db/adlab?user=me&password=s3cr&sslmode=require")
        == "postgresql://db/adlab?user=me&password=***&sslmode=require"
    )
    error = RuntimeError('connection to server failed: password "s3cr" for user "me" was refused')
    assert "s3cr" not in q._first_line(error, "postgresql://me:s3cr@db/adlab")


@pytest.mark.requires("cluster")
def test_a_refused_connection_is_one_line_and_leaves_no_folder(cli, study):
    url = "postgresql://student:secret@127.0.0.1:9/adlab"  # the discard port: nothing listens there
    line = cli.refused(
        "study",
        study,
        "--out",
        "o",
        "--worker",
        "--storage",
        url,
        names=("--storage postgresql://student:***@127.0.0.1:9/adlab: cannot open",),
    )
    assert "secret" not in line


def test_a_run_whose_worker_died_between_closing_its_claim_and_queueing_it_again_is_queued(monkeypatch, tmp_path):
    """The two writes of a give-back (claim closed, run enqueued) with a SIGKILL between them: the next
    worker to fill the queue finds the run stranded (after the grace period) and queues it."""
    import optuna
    from optuna.trial import TrialState

    from adlab.study.spec import load_study

    path = tmp_path / "s.yaml"
    path.write_text(STUDY)
    study = load_study(path)
    queue = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    for run in study.runs:
        queue.enqueue_trial({}, user_attrs={"run": run.name, "attempt": 1})
    claimed = q.claim(queue)
    queue._storage.set_trial_user_attr(claimed.trial._trial_id, "stale", True)
    queue._storage.set_trial_state_values(claimed.trial._trial_id, TrialState.FAIL)  # ... and killed here
    never_finished = lambda run_dir: False  # noqa: E731
    assert q.unqueued(queue, study, tmp_path, never_finished) == []  # within the grace period: its worker may go on
    monkeypatch.setattr(q, "GRACE", 0.0)
    assert [run.name for run in q.unqueued(queue, study, tmp_path, never_finished)] == [claimed.run]
