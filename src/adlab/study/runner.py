"""`run_study(file)`: make every run of a study (resumable), the fusions, then the report."""

from __future__ import annotations

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
    out = Path(out) if out else Path("runs") / "studies" / study.name
    check_inputs(study)
    if kind == "demo":
        ownership.prepare_output(out, "demo", overwrite=True)
    else:
        claim_study_folder(out, resume)
        check_same_overrides(out, overrides or [])
    (out / "runs").mkdir(parents=True, exist_ok=True)
    io.write_text(out / "study.yaml", Path(path).read_text(encoding="utf-8"))
    io.write_json(out / SETTINGS, {"study_file": str(Path(path).absolute()), "set": list(overrides or [])})
    try:
        _make_runs(study, out, resume, verbose)
    except Interrupted as exc:  # the study's own command continues it, fusions and report included
        what = str(exc).split("; continue with:")[0]
        sets = "".join(f" --set {shlex.quote(item)}" for item in overrides or [])
        raise Interrupted(f"{what}; continue the study with: adlab study {shlex.quote(str(path))} "
                          f"--out {shlex.quote(str(out))}{sets} --resume", exc.exit_code) from None
    return out


SETTINGS = "study.json"  # the study file and the --set items the study was started with


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
                f"{headline('classify', metrics)}".rstrip(": "))
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
