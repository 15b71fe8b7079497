"""`train(config) -> Run`: one run of any task, from config to finished run folder, in named phases.

This module knows no task: the task registered under `config.task` (adlab.tasks) builds, trains
and scores; this module owns the run folder (where it is, who may replace it, what it records
before training) and resuming.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from adlab import io, ownership
from adlab.config import Config, load_config
from adlab.errors import AdlabError
from adlab.processes import launched_worker
from adlab.run.resume import check_config_unchanged
from adlab.rundir import Run, check_run_dir, default_run_dir, environment, prepare_run_dir
from adlab.tasks import get_task

RUN_DIR_ENV = "ADLAB_RUN_DIR"  # set while training: DDP processes started by Lightning use the same folder


def train(
    config: Config | dict | str | Path,
    out: str | Path | None = None,
    overwrite: bool = False,
    overrides: list[str] | None = None,
    verbose: bool = True,
    callbacks: list | None = None,
    resume: bool = False,
) -> Run:
    """Train and evaluate one model; every input is checked before any file is written.
    `resume`: `out` is an interrupted run of this config; continue from its last checkpoint."""
    source = str(config) if isinstance(config, (str, Path)) else None
    loaded = _as_config(config, overrides)
    task = get_task(loaded.task)
    resolved: Config = task.resolve(loaded)
    say = io.printer(verbose)
    rank_zero = not launched_worker()
    run_dir = _run_dir(resolved, out, source, rank_zero)
    if rank_zero and not resume:
        check_run_dir(run_dir, overwrite)  # first: loading a large data set to be refused after helps nobody
    began = time.perf_counter()
    job = task.prepare(resolved, run_dir, say, callbacks or [])
    # the data read and the model built, before env.json's "started": part of a run's time
    job.environment["prepare_seconds"] = round(time.perf_counter() - began, 2)
    restart_from = task.resume_point(run_dir) if resume else None
    if rank_zero and restart_from is None:
        start_run_folder(run_dir, job, replace=overwrite or resume)
    elif rank_zero:
        say(f"resuming from {restart_from}")
    os.environ[RUN_DIR_ENV] = str(run_dir)
    try:
        metrics = task.fit(job, run_dir, restart_from, say)
    finally:
        os.environ.pop(RUN_DIR_ENV, None)
    if rank_zero:
        say(f"run: {run_dir}")
    return Run(run_dir, job.config, metrics)


def start_run_folder(run_dir: Path, job, replace: bool) -> None:
    """The run folder with its marker, config.yaml and env.json, before the first epoch."""
    prepare_run_dir(run_dir, replace, config=job.config.to_dict())
    io.write_yaml(run_dir / "config.yaml", job.config.to_dict())
    io.write_json(run_dir / "env.json", environment(job.config.train.seed, job.environment))


def resume(run: str | Path, verbose: bool = True) -> Run:
    """Continue an interrupted run from its last checkpoint, or from the start if it never finished
    an epoch; a finished run is left as it is."""
    run_dir = Path(run)
    if ownership.marker_kind(run_dir) != "run" or not (run_dir / "config.yaml").is_file():
        raise AdlabError(f"{run_dir}: not an adlab run folder (no run marker {ownership.MARKER} or no config.yaml)")
    config = load_config(run_dir / "config.yaml", notices=False)
    check_config_unchanged(run_dir, config.to_dict())
    if (run_dir / "metrics.json").is_file():
        if verbose:
            print(f"{run_dir}: already finished (metrics.json exists); nothing to resume")
        return Run(run_dir, config, io.read_json_mapping(run_dir / "metrics.json", "metrics file"))
    return train(config, out=run_dir, verbose=verbose, resume=True)


def resumable(run_dir: Path, config: Config) -> bool:
    """Whether run_dir is an unfinished run of exactly this config with a checkpoint to continue from."""
    run_dir = Path(run_dir)
    if (run_dir / "metrics.json").is_file() or ownership.marker_kind(run_dir) != "run":
        return False
    task = get_task(config.task)
    try:
        if task.resume_point(run_dir) is None:
            return False
        saved = load_config(run_dir / "config.yaml", notices=False)
    except AdlabError:  # a damaged checkpoint or config: the run is made again
        return False
    return saved.to_dict() == task.resolve(config).to_dict()


def _as_config(config: Config | dict | str | Path, overrides: list[str] | None) -> Config:
    if not isinstance(config, Config):
        return load_config(config, overrides)
    return load_config(config.to_dict(), overrides) if overrides else config


def _run_dir(config: Config, out: str | Path | None, source: str | None, rank_zero: bool) -> Path:
    if not rank_zero and RUN_DIR_ENV in os.environ:  # a DDP process: the folder is rank zero's
        return Path(os.environ[RUN_DIR_ENV])
    return ownership.canonical(out or default_run_dir(config, source))
