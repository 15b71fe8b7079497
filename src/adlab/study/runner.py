"""`run_study(file)`: make every run of a study (resumable), the fusions, then the report."""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

from adlab import io, ownership
from adlab.formatting import clock
from adlab.errors import AdlabError, Interrupted
from adlab.study.spec import load_study, section_runs


def finished(run_dir: Path) -> bool:
    return (run_dir / "metrics.json").is_file()


def run_study(path: str | Path, out: str | Path | None = None, resume: bool = False, verbose: bool = True,
              overrides: list[str] | None = None, study=None, kind: str = "study") -> Path:
    """Runs go in OUT/runs/<name>/; with `resume`, finished ones are kept, interrupted ones continue
    from their last checkpoint, and the rest are made. `overrides` (`--set key=value`) apply to every
    run and are recorded: a resumed study takes the same ones. `study`: the study already loaded
    from `path` (the demo adapts it to its data); kind "demo": an earlier demo in OUT is replaced."""
    study = study or load_study(path, overrides=overrides)  # every run's config is validated before anything starts
    out = ownership.canonical(out or Path("runs") / "studies" / study.name)
    check_inputs(study)
    open_study_folder(path, out, overrides, resume, kind)
    try:
        _make_runs(study, out, resume, verbose)
    except Interrupted as exc:  # the study's own command continues it, fusions and report included
        what = str(exc).split("; continue with:")[0]
        sets = "".join(f" --set {shlex.quote(item)}" for item in overrides or [])
        raise Interrupted(f"{what}; continue the study with: adlab study {shlex.quote(str(path))} "
                          f"--out {shlex.quote(str(out))}{sets} --resume", exc.exit_code) from None
    return out


SETTINGS = "study.json"  # the study file and the --set items the study was started with


def open_study_folder(path, out: Path, overrides: list[str] | None, resume: bool, kind: str = "study") -> None:
    """The study folder, new or (with `resume`) begun earlier with the same --set items, holding a copy
    of the study file and those items; kind "demo": an earlier demo there is replaced."""
    if kind == "demo":
        ownership.prepare_output(out, "demo", overwrite=True)
    else:
        claim_study_folder(out, resume)
        check_same_overrides(out, overrides or [])
    (out / "runs").mkdir(parents=True, exist_ok=True)
    io.write_text(out / "study.yaml", Path(path).read_text(encoding="utf-8"))
    io.write_json(out / SETTINGS, {"study_file": str(Path(path).absolute()), "set": list(overrides or [])})


def check_same_overrides(out: Path, overrides: list[str]) -> None:
    """A resumed study keeps the --set items it started with: its finished runs were made with them."""
    recorded = (out / SETTINGS)
    if not recorded.is_file():
        return
    earlier = io.read_json_mapping(recorded, "study settings").get("set", [])
    if earlier != overrides:
        shown = " ".join(f"--set {item}" for item in earlier) or "no --set"
        raise AdlabError(f"{out}: this study was started with {shown}; resume it with the same "
                         "(or start another study folder with --out)")


def run_workers(path: str | Path, out: str | Path | None = None, workers: int | None = None, worker: bool = False,
                storage: str | None = None, overrides: list[str] | None = None, retry_failed: bool = False,
                verbose: bool = True) -> Path:
    """`--workers N`: N local worker processes sharing the study's queue, each with its share of the
    CPU threads (or one GPU); `--worker`: this process is one worker (on any machine) of the study in
    OUT. Either way each run is made once, fusions and the report after the last run."""
    from adlab.study import queue as q

    study = load_study(path, overrides=overrides)
    out = ownership.canonical(out or Path("runs") / "studies" / study.name)
    check_inputs(study)
    open_study_folder(path, out, overrides, resume=True)  # workers join a study folder, new or begun
    say = io.printer(verbose)
    queue = q.open_queue(out, storage)
    q.enqueue_once(queue, study, out, finished, say)
    if retry_failed:
        again = q.retry_failed(queue)
        say(f"queued again: {', '.join(again)}" if again else "no failed runs to retry")
    if worker:
        threads = os.environ.get(q.THREADS_ENV)
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        os.environ[q.WORKER_ENV] = "1"
        made, failed = q.work(study, out, queue, say)
        q.finish_once(study, out, say)  # the last worker: it has everything the report needs imported already
        if failed:
            raise AdlabError(f"{out}: {failed} run(s) failed (adlab study {path} --out {out} --status; "
                             "--retry-failed runs them again)")
        return out
    _start_workers(path, out, workers or 1, storage, overrides, say)
    if not q.finish_once(study, out, say):  # the last worker wrote the report unless it died after the last run
        raise AdlabError(f"{out}: some runs did not finish (adlab study {shlex.quote(str(path))} --out "
                         f"{shlex.quote(str(out))} --status)")
    return out


def _start_workers(path, out: Path, count: int, storage, overrides, say) -> None:
    import subprocess
    import sys

    from adlab.study import queue as q

    gpus = _visible_gpus()
    threads = max(1, (os.cpu_count() or 1) // count)
    command = [sys.executable, "-m", "adlab", "study", str(path), "--out", str(out), "--worker"]
    command += ["--storage", storage] if storage else []
    for item in overrides or []:
        command += ["--set", item]
    children = []
    for index in range(count):
        env = {**os.environ, q.THREADS_ENV: str(threads), "OMP_NUM_THREADS": str(threads)}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
        children.append(subprocess.Popen(command, env=env))
    say(f"{count} workers, {f'one GPU each of {len(gpus)}' if gpus else f'{threads} CPU thread(s) each'}; "
        f"queue in {storage or out / q.JOURNAL}")
    try:
        codes = [child.wait() for child in children]
    except KeyboardInterrupt:
        for child in children:
            child.terminate()
        for child in children:
            child.wait()
        raise Interrupted(f"workers stopped; continue the study with: adlab study {shlex.quote(str(path))} "
                          f"--out {shlex.quote(str(out))} --workers {count}", 130) from None
    for index, code in enumerate(codes):
        if code != 0:
            say(f"worker {index + 1} ended with {'signal ' + str(-code) if code < 0 else 'exit code ' + str(code)}; "
                "its run, if any, was queued again for the others")


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
    from adlab.study import queue as q

    study = load_study(path, check_configs=False)
    out = ownership.canonical(out or Path("runs") / "studies" / study.name)
    if storage is None and not (out / q.JOURNAL).is_file():
        done = [run.name for run in study.runs if finished(out / "runs" / run.name)]
        return [f"study {study.name} in {out}: no worker queue (run one process at a time); "
                f"{len(done)} of {len(study.runs)} runs done"] + [
            f"  {run.name}: {'done' if run.name in done else 'not done'}" for run in study.runs]
    return q.status_lines(study, out, q.open_queue(out, storage, create=False))


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
    if out.is_dir() and any(out.iterdir()) and not resume and (
            ownership.marker_kind(out) == "study" or all((out / f).exists() for f in legacy)):
        raise AdlabError(f"{out}: study folder already exists (use --resume to continue it, or another --out)")
    ownership.adopt_or_create(out, "study", legacy_files=legacy)


def _make_runs(study, out: Path, resume: bool, verbose: bool) -> None:
    from adlab.study.prepare import run_steps

    runs_dir = out / "runs"
    say = io.printer(verbose)
    run_steps(study.prepare, study.path, out, say)

    total = len(study.runs)
    started = time.perf_counter()
    made = 0
    for i, run in enumerate(study.runs, start=1):
        if finished(runs_dir / run.name):
            say(f"[{i}/{total}] {run.name}: finished earlier, kept")
            continue
        t0 = time.perf_counter()
        metrics = make_run(run, out, resume, say, f"[{i}/{total}] ")
        made += 1
        elapsed = time.perf_counter() - started
        left = elapsed / made * sum(1 for r in study.runs[i:] if not finished(runs_dir / r.name))
        say(f"[{i}/{total}] {run.name}: {headline(run.config.task, metrics)}done in {time.perf_counter() - t0:.0f} s; "
            f"elapsed {clock(elapsed)}, about {clock(left)} left")
    finish(study, out, resume, say)


def make_run(run, out: Path, resume: bool, say, label: str = "") -> dict:
    """One run of the study in OUT/runs/<name>; with `resume`, an interrupted one continues from its
    last checkpoint. Errors name the run."""
    from adlab.run.train import resumable, train

    run_dir = out / "runs" / run.name
    config = with_study_folder(run.config, out)
    partial = resume and resumable(run_dir, config)  # interrupted part-way: continue from its checkpoint
    if partial:
        say(f"{label}{run.name}: resuming from its last checkpoint")
    try:
        return train(config, out=run_dir, overwrite=True, verbose=False, resume=partial).metrics
    except Interrupted:
        raise
    except AdlabError as exc:  # which run of the study, in the same one line
        raise type(exc)(f"run '{run.name}': {exc}") from None


def finish(study, out: Path, resume: bool, say) -> None:
    """The fusion steps (each once its runs are done), then the report."""
    from adlab.study.report import write_report
    from adlab.tasks.classify.fuse import fuse

    runs_dir = out / "runs"
    for step in study.spec.fusion:
        for seed in study.spec.seeds or [None]:
            suffix = "" if seed is None else f"-seed={seed}"
            members = [runs_dir / f"{name}{suffix}" for name in step.runs]
            target = runs_dir / f"{step.name}{suffix}"
            if finished(target) and resume:
                continue
            metrics = fuse(members, out=target, method=step.method, overwrite=True, verbose=False)
            say(f"fusion {step.name}{suffix}: {step.method} of {', '.join(m.name for m in members)}: "
                f"{headline('classify', metrics)}".rstrip("; :"))
    report = write_report(out, study, sections=section_runs(study))
    say(f"report: {report} (and {report.with_suffix('.html')})")


def with_study_folder(config, out: Path):
    """`{out}` in model.weights or data.root is this study's folder (for runs that use earlier runs)."""
    from adlab.config import load_config

    raw = config.to_dict()
    changed = False
    for section, key in (("model", "weights"), ("data", "root")):
        value = raw[section].get(key)
        if isinstance(value, str) and "{out}" in value:
            raw[section][key] = value.replace("{out}", str(out))
            changed = True
    return load_config(raw) if changed else config


def headline(task: str, metrics: dict) -> str:
    """The task's first report column, e.g. 'accuracy 0.9444; ' ('' when the run has none)."""
    from adlab.tasks import get_task

    for key, _ in get_task(task).report.columns:
        if isinstance(metrics.get(key), (int, float)):
            return f"{key} {metrics[key]:.4f}; "
    return ""
