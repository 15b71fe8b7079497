"""One run of a study and the study's ending (fusions, report): what a study in one process and every
worker of a study's queue both do."""

from __future__ import annotations

from pathlib import Path

from adlab.config import load_config
from adlab.errors import AdlabError, Interrupted
from adlab.run.train import resumable, train
from adlab.study.report import write_report
from adlab.study.spec import section_runs
from adlab.tasks import get_task
from adlab.taskspec import fusing_task


def finished(run_dir: Path) -> bool:
    return (run_dir / "metrics.json").is_file()


def make_run(run, out: Path, resume: bool, say, label: str = "") -> dict:
    """One run of the study in OUT/runs/<name>; with `resume`, an interrupted one continues from its
    last checkpoint. Errors name the run."""
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


def finish(study, out: Path, say) -> None:
    """The fusion steps, then the report. A fusion is made again each time (it only reads its
    members' predictions.csv): kept on --resume, it would outlive a member that was remade."""
    from adlab.tasks.classify.fuse import fuse  # imports torch: only when a study has fusions

    runs_dir = out / "runs"
    for step in study.spec.fusion:
        for seed in study.spec.seeds or [None]:
            suffix = "" if seed is None else f"-seed={seed}"
            members = [runs_dir / f"{name}{suffix}" for name in step.runs]
            target = runs_dir / f"{step.name}{suffix}"
            metrics = fuse(members, out=target, method=step.method, overwrite=True, verbose=False)
            say(
                f"fusion {step.name}{suffix}: {step.method} of {', '.join(m.name for m in members)}: "
                f"{headline(fusing_task().name, metrics)}".rstrip("; :")
            )
    report = write_report(out, study, sections=section_runs(study))
    say(f"report: {report} (and {report.with_suffix('.html')})")


def with_study_folder(config, out: Path):
    """`{out}` in model.weights or data.root is this study's folder (for runs that use earlier runs)."""
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
    for key, _ in get_task(task).report.columns:
        if isinstance(metrics.get(key), (int, float)):
            return f"{key} {metrics[key]:.4f}; "
    return ""
