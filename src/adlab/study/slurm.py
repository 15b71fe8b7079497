"""A study's workers as a SLURM job array: `adlab study FILE --out DIR --submit slurm --array N`.

adlab writes a plain batch script, DIR/slurm/worker.sbatch, whose every array task is one study
worker (`adlab study FILE --out DIR --worker`), submits it with `sbatch` and records the job id in
DIR/slurm/jobs.json. The study's queue (adlab.study.queue) does the coordination: no launcher stays
alive, a task that starts late or again (`--requeue`) simply joins, and the same script can be
submitted again to add workers. submitit was not taken: it hands work over as pickles in the shared
folder (which adlab refuses to load) and needs its launcher's Python objects; a script of a few
lines can be read, edited and resubmitted by hand (docs/cluster.md).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from adlab import io
from adlab.errors import AdlabError, ConfigError

FOLDER = "slurm"
SCRIPT = "worker.sbatch"
JOBS = "jobs.json"
MAX_ARRAY = 1000  # SLURM's default MaxArraySize is 1001 (task ids 0-1000)
SIGNALS = ("TERM", "USR1", "USR2")  # a worker stops on each the same way (adlab.study.queue.stop_on_signals)
# flags adlab writes itself: given again with --sbatch they would contradict the script
OWN_FLAGS = {
    "--array": "--array N",
    "-a": "--array N",
    "--output": None,
    "-o": None,
    "--error": None,
    "-e": None,
    "--wrap": None,
    "--parsable": None,
    "--job-name": None,
    "-J": None,
    "--chdir": None,
    "-D": None,
    "--ntasks": None,
    "-n": None,
    "--signal": "--signal",
    "--requeue": "--requeue",
    "--partition": "--partition",
    "-p": "--partition",
    "--time": "--time",
    "-t": "--time",
    "--cpus-per-task": "--cpus-per-task",
    "-c": "--cpus-per-task",
    "--gpus-per-task": "--gpus-per-task",
    "--mem": "--mem",
}


@dataclass
class Options:
    """What the job array asks of SLURM (the command line's --array, --partition, ...)."""

    array: int = 1
    partition: str | None = None
    time: str | None = None
    cpus_per_task: int | None = None
    gpus_per_task: str | None = None
    mem: str | None = None
    signal: str | None = None
    requeue: bool = False
    extra: list[str] = field(default_factory=list)

    def check(self) -> None:
        """Each value as SLURM takes it, and nothing that would break a line of the script."""
        if isinstance(self.array, bool) or not isinstance(self.array, int) or not 1 <= self.array <= MAX_ARRAY:
            raise ConfigError(f"--array: need 1 to {MAX_ARRAY} workers, got {self.array}")
        rules = [
            ("--partition", self.partition, r"[A-Za-z0-9_.,-]+", "a partition name, e.g. gpu"),
            ("--time", self.time, r"(\d+-)?\d+(:\d+){0,2}", "minutes, HH:MM:SS or D-HH:MM:SS"),
            ("--gpus-per-task", self.gpus_per_task, r"([A-Za-z0-9_.-]+:)?\d+", "a number, e.g. 1 or a100:1"),
            ("--mem", self.mem, r"\d+[KMGT]?", "e.g. 16G or 4000M"),
            ("--signal", self.signal, rf"({'|'.join(SIGNALS)})@\d+", "SIG@SECONDS, e.g. TERM@120"),
        ]
        for flag, value, pattern, what in rules:
            if value is not None and not re.fullmatch(pattern, value):
                raise ConfigError(f"{flag} {value!r}: need {what}")
        if self.cpus_per_task is not None and not 1 <= self.cpus_per_task <= 4096:
            raise ConfigError(f"--cpus-per-task: need 1 to 4096, got {self.cpus_per_task}")
        for item in self.extra:
            try:
                words = shlex.split(item)
            except ValueError:
                words = []
            if len(words) != 1 or not item.startswith("-") or any(ord(c) < 32 for c in item):
                raise ConfigError(f"--sbatch {item!r}: need one sbatch option on one line, e.g. --sbatch=--qos=long")
            own_flag = _own_flag(item)
            if own_flag:
                own = OWN_FLAGS[own_flag]
                raise ConfigError(
                    f"--sbatch {item!r}: adlab writes {own_flag} itself" + (f"; give {own}" if own else "")
                )

    def lines(self) -> list[str]:
        values = [
            ("--partition", self.partition),
            ("--time", self.time),
            ("--cpus-per-task", self.cpus_per_task),
            ("--gpus-per-task", self.gpus_per_task),
            ("--mem", self.mem),
            # B: the batch shell is the worker itself (exec), not a job step
            ("--signal", f"B:{self.signal}" if self.signal else None),
        ]
        lines = [f"#SBATCH {flag}={value}" for flag, value in values if value is not None]
        lines += ["#SBATCH --requeue"] if self.requeue else []
        return lines + [f"#SBATCH {item}" for item in self.extra]


def _own_flag(item: str) -> str | None:
    """The flag of adlab's own that an --sbatch item sets: `-a0-9` (a short option with its value joined),
    `--arr=0-9` (SLURM takes any unambiguous start of a long option)."""
    if not item.startswith("--"):
        return item[:2] if item[:2] in OWN_FLAGS else None
    name = item.split("=", 1)[0]
    return next((flag for flag in OWN_FLAGS if flag.startswith("--") and len(name) > 3 and flag.startswith(name)), None)


def check_path(path: Path, what: str) -> None:
    """A path written into an #SBATCH line: sbatch splits those at white space and expands % in file
    names, and a line break would end the line."""
    if any(c.isspace() or c == "%" or ord(c) < 32 for c in str(path)):
        raise ConfigError(
            f"{path}: {what} has a space, a % or a control character, which an #SBATCH line cannot "
            "hold; choose a plain path for --submit slurm"
        )


def worker_script(path, out: Path, overrides: list[str], storage: str | None, options: Options, name: str) -> str:
    """The batch script: one study worker per array task, in the folder the study was submitted from
    (a study file's relative paths are read from there)."""
    command = [sys.executable, "-m", "adlab", "study", str(Path(path).absolute()), "--out", str(out), "--worker"]
    command += ["--storage", storage] if storage else []
    for item in overrides:
        command += ["--set", item]
    check_path(out, "the study folder")
    check_path(Path.cwd(), "the folder the study is submitted from")
    job_name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"adlab-{name}")[:64]
    return "\n".join(
        [
            "#!/bin/bash",
            f"# One worker of the adlab study {out} per array task; written by `adlab study --submit slurm`.",
            "# Every task joins the study's queue: submit this file again (sbatch FILE) to add workers.",
            f"#SBATCH --job-name={job_name}",
            f"#SBATCH --array=0-{options.array - 1}",
            "#SBATCH --ntasks=1",
            f"#SBATCH --chdir={Path.cwd()}",
            f"#SBATCH --output={out / FOLDER}/worker-%A_%a.log",
            *options.lines(),
            "",
            "# torch threads per worker: the CPUs SLURM gave this task",
            "export ADLAB_WORKER_THREADS=${SLURM_CPUS_PER_TASK:-1}",
            "export OMP_NUM_THREADS=$ADLAB_WORKER_THREADS",
            "# exec: the worker is the batch shell, so SLURM's signals (scancel, the time limit) reach it",
            "exec " + shlex.join(command),
            "",
        ]
    )


def submit(script: Path, out: Path, options: Options, say) -> str:
    """`sbatch SCRIPT`; the job id, recorded in OUT/slurm/jobs.json."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise ConfigError(
            "--submit slurm: sbatch not found on the PATH (submit from the cluster's login node, "
            "or run `sbatch " + str(script) + "` there)"
        )
    done = subprocess.run([sbatch, "--parsable", str(script)], capture_output=True, text=True)
    if done.returncode != 0:
        why = " ".join((done.stderr or done.stdout).split())[:300] or f"exit code {done.returncode}"
        raise AdlabError(f"{script}: sbatch refused it: {why}")
    job = done.stdout.strip().split(";")[0]
    if not job.isdigit():
        raise AdlabError(f"{script}: sbatch answered {done.stdout.strip()[:100]!r}, not a job id")
    jobs = recorded_jobs(out)
    jobs.append(
        {
            "job": job,
            "array": options.array,
            "script": str(script),
            "submitted": dt.datetime.now().isoformat(timespec="seconds"),
        }
    )
    io.write_json(out / FOLDER / JOBS, jobs)
    say(
        f"submitted SLURM job {job}: {options.array} worker(s), script {script}, logs {out / FOLDER}/worker-{job}_*.log"
    )
    return job


def recorded_jobs(out: Path) -> list[dict]:
    """The study's SLURM jobs, oldest first ([] where none was submitted or the record is not adlab's)."""
    path = Path(out) / FOLDER / JOBS
    if not path.is_file() or path.is_symlink():
        return []
    try:
        jobs = json.loads(io.bounded_text(path, 1 << 20, "SLURM job record"))
    except (ValueError, AdlabError):
        return []
    return (
        [j for j in jobs if isinstance(j, dict) and str(j.get("job", "")).isdigit()] if isinstance(jobs, list) else []
    )


def task_id() -> str | None:
    """This process's SLURM job and array task, e.g. '123_4' (None outside SLURM)."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def job_states(jobs: list[str]) -> dict[str, str] | None:
    """Each array task of JOBS that SLURM still holds -> its state (PENDING, RUNNING, ...); None when
    squeue is missing or does not answer (the study folder is then the only record)."""
    squeue = shutil.which("squeue")
    if squeue is None or not jobs:
        return None
    try:
        done = subprocess.run(
            [squeue, "--noheader", "--array", "--jobs", ",".join(jobs), "--format=%i %T"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0 and "Invalid job id" not in done.stderr:  # jobs long gone: squeue says so
        return None
    states = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


def status_lines(out: Path) -> list[str]:
    """One line per submitted job: its tasks by state, as squeue tells them."""
    jobs = recorded_jobs(out)
    if not jobs:
        return []
    states = job_states([j["job"] for j in jobs])
    lines = []
    for record in jobs:
        job = record["job"]
        if states is None:
            lines.append(f"  SLURM job {job} ({record.get('array', '?')} worker(s)): squeue did not answer")
            continue
        mine = [state for task, state in states.items() if task == job or task.startswith(f"{job}_")]
        counts: dict[str, int] = {}
        for state in mine:
            counts[state.lower()] = counts.get(state.lower(), 0) + 1
        shown = ", ".join(f"{n} {state}" for state, n in counts.items()) or "no task left in the queue"
        lines.append(f"  SLURM job {job} ({record.get('array', '?')} worker(s)): {shown}")
    return lines


def cancel(out: Path, say) -> list[str]:
    """scancel every job the study submitted (its workers put their runs back in the queue and stop);
    without scancel here, the line to run where it is."""
    jobs = [j["job"] for j in recorded_jobs(out)]
    if not jobs:
        raise AdlabError(f"{out}: no SLURM job was submitted for this study ({out / FOLDER / JOBS} is missing)")
    states = job_states(jobs)
    if states is not None:  # squeue answered: only the jobs it still holds (scancel refuses finished ones)
        jobs = [job for job in jobs if any(task == job or task.startswith(f"{job}_") for task in states)]
        if not jobs:
            say(f"no SLURM job of this study is in the queue any more ({out / FOLDER / JOBS}); nothing to cancel")
            return []
    line = ["scancel", *jobs]
    scancel = shutil.which("scancel")
    if scancel is None:
        say(f"scancel is not on this machine's PATH; on the cluster run: {shlex.join(line)}")
        return jobs
    done = subprocess.run([scancel, *jobs], capture_output=True, text=True)
    if done.returncode != 0:
        raise AdlabError(f"{out}: scancel {' '.join(jobs)} failed: {' '.join(done.stderr.split())[:300]}")
    say(
        f"cancelled SLURM job(s) {', '.join(jobs)}: each worker puts its run back in the queue and stops; "
        "submit again (or start --worker) to continue the study"
    )
    return jobs
