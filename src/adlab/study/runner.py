"""`run_study(file)`: make every run of a study (resumable), the fusions, then the report."""

from __future__ import annotations

import os
import shlex
import shutil
import time
from pathlib import Path

from adlab import io, ownership
from adlab.config import load_config
from adlab.errors import AdlabError, ConfigError, Interrupted, WorkerStopped
from adlab.formatting import clock, plural
from adlab.processes import THREADS_ENV, WORKER_ENV
from adlab.run.resume import changed_keys
from adlab.study import queue as q
from adlab.study import slurm
from adlab.study.plan import planned_seconds, seconds_left
from adlab.study.prepare import run_steps
from adlab.study.runs import finish, finished, headline, make_run, with_study_folder
from adlab.study.spec import SETTINGS, load_study, recorded_overrides
from adlab.tasks import get_task


def run_study(
    path: str | Path,
    out: str | Path | None = None,
    resume: bool = False,
    verbose: bool = True,
    overrides: list[str] | None = None,
    study=None,
    kind: str = "study",
) -> Path:
    """Runs go in OUT/runs/<name>/; with `resume`, finished ones are kept, interrupted ones continue
    from their last checkpoint, and the rest are made. `overrides` (`--set key=value`) apply to every
    run and are recorded: a resumed study takes the same ones. `study`: the study already loaded
    from `path` (the demo adapts it to its data); kind "demo": an earlier demo in OUT is replaced."""
    study = study or load_study(path, overrides=overrides)  # every run's config is validated before anything starts
    out = ownership.canonical(out or Path("runs") / "studies" / study.name)
    check_inputs(study)
    if resume and kind != "demo":
        check_same_overrides(out, overrides or [])  # the --set items first: they explain every run's difference
        check_kept_runs(study, out)
    existed = out.is_dir()
    fresh = kind != "demo" and (not existed or not any(out.iterdir()))
    open_study_folder(path, out, overrides, resume, kind)
    try:
        _make_runs(study, out, resume, verbose)
    except AdlabError:
        if fresh:
            _forget_new_study(out, existed)
        raise
    except Interrupted as exc:  # the study's own command continues it, fusions and report included
        what = str(exc).split("; continue with:")[0]
        sets = "".join(f" --set {shlex.quote(item)}" for item in overrides or [])
        raise Interrupted(
            f"{what}; continue the study with: adlab study {shlex.quote(str(path))} "
            f"--out {shlex.quote(str(out))}{sets} --resume",
            exc.exit_code,
        ) from None
    return out


def _forget_new_study(out: Path, existed: bool) -> None:
    """A study folder made by this command and refused before its first run began (a prepare step's
    bad input): nothing of it is left, so the same command can simply be given again."""
    runs = out / "runs"
    if runs.is_dir() and any(runs.iterdir()):
        return  # a run began: its folder is work that --resume continues
    if not existed:
        shutil.rmtree(out, ignore_errors=True)
        return
    for child in out.iterdir():  # an empty folder of the user's stays, empty again
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def open_study_folder(path, out: Path, overrides: list[str] | None, resume: bool, kind: str = "study") -> None:
    """The study folder, new or (with `resume`) begun earlier with the same --set items, holding a copy
    of the study file and those items; kind "demo": an earlier demo there is replaced."""
    if kind == "demo":
        ownership.prepare_output(out, "demo", overwrite=True)
    else:
        claim_study_folder(out, resume)
        check_same_overrides(out, overrides or [])
    (out / "runs").mkdir(parents=True, exist_ok=True)
    copy, text = out / "study.yaml", Path(path).read_bytes()
    if (out / SETTINGS).is_file() and copy.is_file() and not copy.is_symlink() and copy.read_bytes() == text:
        return  # the same study again (a joining worker, a resume): its record stays as it began
    io.write_text(copy, text.decode("utf-8"))
    io.write_json(out / SETTINGS, {"study_file": str(Path(path).absolute()), "set": list(overrides or [])})


def check_joining(path, out: Path, overrides: list[str]) -> None:
    """A worker joins a study folder only with the study it holds: the same study file content (its
    copy OUT/study.yaml) and the same --set items (OUT/study.json). Another study's runs would be
    failed as unknown by this worker, and its own never queued. Writes nothing."""
    if check_same_study(path, out):
        check_same_overrides(out, overrides)


def check_same_study(path, out: Path) -> bool:
    """Refused: a study file whose content differs from the copy OUT/study.yaml of the study begun
    there, naming both; False where OUT holds no study settings to compare with."""
    recorded = out / SETTINGS
    if not recorded.is_file() or ownership.marker_kind(out) not in ("study", None):
        return False
    settings = io.read_json_mapping(recorded, "study settings")
    copy = out / "study.yaml"
    if copy.is_file() and not copy.is_symlink():
        try:
            same = copy.read_bytes() == Path(path).read_bytes()
        except OSError:
            same = False
        if not same:
            started = settings.get("study_file")
            raise AdlabError(
                f"{path}: not the study file of {out} (it was started with "
                f"{started if isinstance(started, str) else copy}, copied in {copy}, which differs); "
                "a worker joins with the same file: give that one, or another --out"
            )
    return True


def check_kept_runs(study, out: Path) -> None:
    """A finished run is kept only when it was made with the settings the study asks for now: a
    variant edited since is refused, naming the run and the keys (remove its folder to make it
    again). Writes nothing."""
    for run in study.runs:
        run_dir = out / "runs" / run.name
        if not finished(run_dir) or not (run_dir / "config.yaml").is_file():
            continue
        config = with_study_folder(run.config, out)
        now = get_task(config.task).resolve(config).to_dict()
        try:
            saved = load_config(run_dir / "config.yaml", notices=False).to_dict()
        except AdlabError as exc:
            raise AdlabError(f"run '{run.name}': {exc}") from None
        asked = run.config.to_dict()
        differ = [(key, a, b) for key, a, b in changed_keys(saved, now) if not _same_study_path(key, a, b, asked)]
        if differ:
            shown = "; ".join(f"{key}: {a!r} -> {b!r}"[:120] for key, a, b in differ[:3])
            more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
            raise AdlabError(
                f"{run_dir}: run '{run.name}' was finished with other settings than the study asks "
                f"for now ({shown}{more}); remove that run folder to make it again, or undo the edit"
            )


def _same_study_path(key: str, saved, now, asked: dict) -> bool:
    """A `{out}` path recorded from another working directory or --out spelling, the same file in the
    study folder (`{out}` is the study folder, wherever it was reached from)."""
    section, _, name = key.partition(".")
    template = (
        (asked.get(section) or {}).get(name) if (section, name) in (("data", "root"), ("model", "weights")) else None
    )
    if not (isinstance(template, str) and "{out}" in template and isinstance(saved, str) and isinstance(now, str)):
        return False
    tail = template.split("{out}", 1)[1]
    return saved.endswith(tail) and now.endswith(tail)


def check_same_overrides(out: Path, overrides: list[str]) -> None:
    """A resumed study keeps the --set items it started with: its finished runs were made with them."""
    recorded = out / SETTINGS
    if not recorded.is_file():
        return
    earlier = io.read_json_mapping(recorded, "study settings").get("set", [])
    if earlier != overrides:
        shown = " ".join(f"--set {item}" for item in earlier) or "no --set"
        raise AdlabError(
            f"{out}: this study was started with {shown}; resume it with the same "
            "(or start another study folder with --out)"
        )


def run_workers(
    path: str | Path,
    out: str | Path | None = None,
    workers: int | None = None,
    worker: bool = False,
    storage: str | None = None,
    overrides: list[str] | None = None,
    retry_failed: bool = False,
    verbose: bool = True,
) -> Path:
    """`--workers N`: N local worker processes sharing the study's queue, each with its share of the
    CPU threads (or one GPU); `--worker`: this process is one worker (on any machine) of the study in
    OUT. Either way each run is made once, fusions and the report after the last run."""
    check_worker_count(workers, worker)
    q.check_timing()
    study = load_study(path, overrides=overrides)
    out = ownership.canonical(out or Path("runs") / "studies" / study.name)
    check_inputs(study)
    store = q.storage_for(out, storage, make=False)  # checked before the study folder is made or changed
    if out.is_dir():
        check_joining(path, out, overrides or [])
        check_kept_runs(study, out)
    open_study_folder(path, out, overrides, resume=True)  # workers join a study folder, new or begun
    say = io.printer(verbose)
    queue = q.open_queue(out, storage, store=store)
    q.enqueue_once(queue, study, out, finished, say)
    if retry_failed:
        again = q.retry_failed(queue)
        say(f"queued again: {', '.join(again)}" if again else "no failed runs to retry")
    if worker:
        threads = os.environ.get(THREADS_ENV)
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        os.environ[WORKER_ENV] = "1"
        try:
            with q.stop_on_signals():
                made, failed = q.work(study, out, queue, say)
                q.finish_once(study, out, say)  # the last worker: it has everything the report needs imported
        except q.Signalled as exc:  # waiting for a run, or writing the report: nothing to give back
            raise WorkerStopped(
                f"worker {exc} while it held no run; the study goes on in the other workers, "
                "or in the next one started",
                143,
            ) from None
        except AdlabError:
            raise
        except Exception as exc:  # the queue's database stopped answering: one line, the runs are safe
            lost = q.storage_error(exc, storage)
            if lost is None:
                raise
            raise lost from None
        if failed:
            raise AdlabError(
                f"{out}: {plural(failed, 'run')} failed (adlab study {path} --out {out} --status; "
                "--retry-failed runs them again)"
            )
        return out
    count = min(workers or 1, len(study.runs))
    if count < (workers or 1):
        say(f"{count} workers, not {workers}: the study has {plural(len(study.runs), 'run')}")
    _start_workers(path, out, count, storage, overrides, say)
    if not q.finish_once(study, out, say):  # the last worker wrote the report unless it died after the last run
        raise AdlabError(
            f"{out}: some runs did not finish (adlab study {shlex.quote(str(path))} --out "
            f"{shlex.quote(str(out))} --status)"
        )
    return out


def submit_workers(
    path: str | Path,
    options,
    out: str | Path | None = None,
    storage: str | None = None,
    overrides: list[str] | None = None,
    plan: bool = False,
    verbose: bool = True,
) -> Path:
    """`--submit slurm`: the study folder opened as a worker would (every check first), the job array's
    script written to OUT/slurm/worker.sbatch and submitted with sbatch; returns at once. `plan`: the
    script is printed, nothing written or submitted."""
    options.check()
    q.check_timing()
    study = load_study(path, overrides=overrides)
    out = ownership.canonical(out or Path("runs") / "studies" / study.name)
    check_inputs(study)
    script = out.absolute() / slurm.FOLDER / slurm.SCRIPT  # absolute: read on the compute nodes
    text = slurm.worker_script(path, out.absolute(), overrides or [], storage, options, study.name)
    say = io.printer(verbose)
    if plan:  # the storage is not opened: that would connect to the database and make its tables
        print(f"# {script} (not written: --plan), then: sbatch {script}\n{text}", end="")
        return out
    q.storage_for(out, storage, make=False)  # a refused --storage is said here, not in every array task
    if out.is_dir():
        check_joining(path, out, overrides or [])
        check_kept_runs(study, out)
    existed = out.is_dir()
    fresh = not existed or not any(out.iterdir())
    open_study_folder(path, out, overrides, resume=True)  # the workers join it, new or begun
    try:
        (out / slurm.FOLDER).mkdir(exist_ok=True)
        io.write_text(script, text)
        os.chmod(script, 0o700)  # yours only: it may hold the --storage URL
        if storage and q.masked(storage) != storage:
            io.notice(
                f"the --storage password is written in {script} (readable by you only) and is on the "
                "workers' command line; ~/.pgpass keeps it out of both"
            )
        slurm.submit(script, out, options, say)
    except AdlabError:
        if fresh:
            shutil.rmtree(out / slurm.FOLDER, ignore_errors=True)
            _forget_new_study(out, existed)
        raise
    follow = f"adlab study {shlex.quote(str(path))} --out {shlex.quote(str(out))}"
    where = f" --storage {shlex.quote(q.masked(storage))}" if storage else ""
    say(f"follow it: {follow}{where} --status; stop it: {follow} --cancel")
    return out


def cancel_study(path: str | Path, out: str | Path | None = None, verbose: bool = True) -> list[str]:
    """`--cancel`: scancel the study's SLURM jobs (their workers give their runs back to the queue)."""
    study = load_study(path, check_configs=False)
    out = ownership.canonical(out or Path("runs") / "studies" / study.name)
    check_same_study(path, out)
    return slurm.cancel(out, io.printer(verbose))


MAX_WORKERS = 256


def check_worker_count(workers, worker: bool) -> None:
    """--workers N: 1 to twice the machine's CPU cores (or GPUs, where it has more; each worker is a
    process with its own copy of torch and the data: hundreds on a laptop would exhaust its memory),
    not with --worker."""
    if workers is None:
        return
    if worker:
        raise ConfigError("--workers N starts N workers, --worker makes this process one: give one of them")
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"--workers: need 1 to {MAX_WORKERS}, got {workers}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    gpus = len(_visible_gpus())
    if workers > 2 * max(cores, gpus):
        raise ConfigError(
            f"--workers {workers}: this machine gives adlab {cores} CPU core(s)"
            f"{f' and {gpus} GPU(s)' if gpus else ' and no GPU'}, so at most {2 * max(cores, gpus)} "
            "workers here; start more with --worker on other machines that see the study folder"
        )


def _start_workers(path, out: Path, count: int, storage, overrides, say) -> None:
    import subprocess
    import sys

    gpus = _visible_gpus()
    threads = max(1, (os.cpu_count() or 1) // count)
    command = [sys.executable, "-m", "adlab", "study", str(path), "--out", str(out), "--worker"]
    command += ["--storage", storage] if storage else []
    for item in overrides or []:
        command += ["--set", item]
    children = []
    for index in range(count):
        env = {**os.environ, THREADS_ENV: str(threads), "OMP_NUM_THREADS": str(threads)}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
        children.append(subprocess.Popen(command, env=env))
    say(
        f"{count} workers, {f'one GPU each of {len(gpus)}' if gpus else f'{threads} CPU thread(s) each'}; "
        f"queue in {q.masked(storage) if storage else out / q.JOURNAL}"
    )
    try:
        codes = [child.wait() for child in children]
    except KeyboardInterrupt:
        for child in children:
            child.terminate()
        for child in children:
            child.wait()
        raise Interrupted(
            f"workers stopped; continue the study with: adlab study {shlex.quote(str(path))} "
            f"--out {shlex.quote(str(out))} --workers {count}",
            130,
        ) from None
    for index, code in enumerate(codes):
        if code != 0:
            say(
                f"worker {index + 1} ended with {'signal ' + str(-code) if code < 0 else 'exit code ' + str(code)}; "
                "its run, if any, was queued again for the others"
            )


def _visible_gpus() -> list[str]:
    """The NVIDIA GPUs this process may use, as CUDA_VISIBLE_DEVICES entries for the workers. Read from
    the environment and /dev, not from torch: importing torch here would delay every worker's start by
    seconds on the study's critical path."""
    import glob

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        devices = []
        for entry in (e.strip() for e in visible.split(",")):
            if not entry or entry.startswith("-"):  # CUDA hides this entry and every one after it
                break
            devices.append(entry)
        return devices
    return [str(i) for i in range(len(glob.glob("/dev/nvidia[0-9]*")))]


def study_status(path: str | Path, out: str | Path | None = None, storage: str | None = None) -> list[str]:
    """`--status`: done / running (where, how long) / waiting / failed, per run; writes nothing."""
    study = load_study(path, check_configs=False)
    out = ownership.canonical(out or Path("runs") / "studies" / study.name)
    check_same_study(path, out)  # another study's file would show its own runs as never queued
    study = load_study(path, check_configs=False, overrides=recorded_overrides(out))  # its --only and --quick
    jobs = slurm.status_lines(out)  # the SLURM jobs submitted for it, as squeue sees them now
    if storage is None and not os.path.lexists(out / q.JOURNAL):  # anything else there is checked, and refused
        done = [run.name for run in study.runs if finished(out / "runs" / run.name)]
        how = "submitted, no worker has started yet" if jobs else "run one process at a time"
        return (
            [f"study {study.name} in {out}: no worker queue ({how}); {len(done)} of {len(study.runs)} runs done"]
            + jobs
            + [f"  {run.name}: {'done' if run.name in done else 'not done'}" for run in study.runs]
        )
    lines = q.status_lines(study, out, q.open_queue(out, storage, create=False))
    return lines[:1] + jobs + lines[1:]


def check_inputs(study) -> None:
    """Files the runs read that must be there already (not made by the study, not downloaded):
    refused before the study folder exists, naming the run."""
    for run in study.runs:
        data, model = run.config.data, run.config.model
        wanted = [("data.root", data.root)] if data.name in ("folder", "yolo") else []
        if model.weights and ("/" in model.weights or "\\" in model.weights):
            wanted.append(("model.weights", model.weights))
        for key, value in wanted:
            if value and "{out}" not in value and not Path(value).exists():
                raise AdlabError(f"{study.path}: run '{run.name}': {key}: {value} not found")


def claim_study_folder(out: Path, resume: bool) -> None:
    """A new study folder (with its marker), or with `resume` an earlier study's; never a folder
    adlab did not make, and never an earlier study without --resume."""
    legacy = ("study.yaml", "runs")  # study folders of adlab versions before the marker
    if (
        out.is_dir()
        and any(out.iterdir())
        and not resume
        and (ownership.marker_kind(out) == "study" or all((out / f).exists() for f in legacy))
    ):
        raise AdlabError(f"{out}: study folder already exists (use --resume to continue it, or another --out)")
    ownership.adopt_or_create(out, "study", legacy_files=legacy)


def _make_runs(study, out: Path, resume: bool, verbose: bool) -> None:
    runs_dir = out / "runs"
    say = io.printer(verbose)
    run_steps(study.prepare, study.path, out, say)

    total = len(study.runs)
    # for the time left, said after each run: the runs still to make (a resumed study's finished ones are not timed)
    todo = [run if verbose and not finished(runs_dir / run.name) else None for run in study.runs]
    planned = planned_seconds(todo)
    started = time.perf_counter()
    done: list[tuple[float | None, float]] = []
    for i, run in enumerate(study.runs, start=1):
        if finished(runs_dir / run.name):
            say(f"[{i}/{total}] {run.name}: finished earlier, kept")
            continue
        t0 = time.perf_counter()
        metrics = make_run(run, out, resume, say, f"[{i}/{total}] ")
        done.append((planned[i - 1], time.perf_counter() - t0))
        elapsed = time.perf_counter() - started
        left = seconds_left(done, [planned[j] for j in range(i, total) if not finished(runs_dir / study.runs[j].name)])
        say(
            f"[{i}/{total}] {run.name}: {headline(run.config.task, metrics)}done in {time.perf_counter() - t0:.0f} s; "
            f"elapsed {clock(elapsed)}, about {clock(left)} left"
        )
    finish(study, out, say)
