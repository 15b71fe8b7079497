"""`adlab search`: hyperparameter search with Optuna over a base config.

    name: digits_search
    base: ../digits_cnn.yaml
    objective: {metric: val_accuracy, direction: maximize}   # best value over epochs of a run
    sampler: tpe                # tpe | random | grid
    trials: 20
    cv_folds: 5                 # optional k-fold cross-validation: the objective is the mean over folds
    pruning: true               # stop bad trials early (Optuna's Lightning callback; between folds with CV)
    storage: null               # default sqlite:///OUT/search.db (resumable); any Optuna RDB URL for workers
    seed: 0
    space:
      train.lr: {low: 0.0001, high: 0.01, log: true}
      model.cnn.dropout: {low: 0.0, high: 0.5}
      train.batch_size: {low: 32, high: 128, step: 32}          # ints when low/high/step are ints
      train.optimizer: {choices: [adam, sgd]}                   # categorical (and grid) values

At the end the best settings are trained again on train + val and scored once on the test set.
"""

from __future__ import annotations

import copy
import shlex
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from adlab import io, ownership
from adlab.config import Seed, load_config, set_dotted
from adlab.errors import AdlabError, ConfigError, Interrupted
from adlab.names import name_field
from adlab.study.spec import merge_dicts, read_spec_file


class Param(BaseModel):
    model_config = ConfigDict(extra="forbid")
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> Param:
        if self.choices is None:
            if self.low is None or self.high is None:
                raise ValueError("give either choices: [...] or low: and high:")
            if self.low >= self.high:
                raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class Objective(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metric: str = "val_accuracy"
    direction: Literal["maximize", "minimize"] = "maximize"


class SearchSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None

    _safe_name = field_validator("name")(name_field)
    base: str | None = None
    config: dict[str, Any] = {}
    objective: Objective = Objective()
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    trials: int = Field(20, ge=1, le=100_000)
    cv_folds: int | None = Field(None, ge=2, le=100)
    pruning: bool = True
    storage: str | None = None
    seed: Seed = 0
    space: dict[str, Param]


def load_search(path: Path) -> tuple[SearchSpec, dict]:
    spec = read_spec_file(path, SearchSpec, "search file")
    base: dict = {}
    if spec.base:
        base_path = path.parent / spec.base
        if not base_path.is_file():
            raise ConfigError(f"{path}: base config {base_path} not found")
        base = load_config(base_path).to_dict()
    base = merge_dicts(base, spec.config)
    if spec.sampler == "grid" and any(p.choices is None for p in spec.space.values()):
        bad = next(k for k, p in spec.space.items() if p.choices is None)
        raise ConfigError(f"{path}: space.{bad}: the grid sampler needs choices: [...] for every parameter")
    _check_objective(path, spec.objective.metric, load_config(base).task)
    # every parameter must be a real config key: try the extremes of each before searching
    for key, param in spec.space.items():
        for value in param.choices or [param.low, param.high]:
            raw_config = copy.deepcopy(base)
            try:
                set_dotted(raw_config, key, value)
                load_config(raw_config)
            except ConfigError as exc:
                raise ConfigError(f"{path}: space.{key}: {str(exc).removeprefix('config: ')}") from None
    return spec, base


def _check_objective(path: Path, metric: str, task_name: str) -> None:
    """The objective is a column of the runs' history.csv: refused before the first trial, not
    after it (Optuna's pruning callback only warns about an unknown metric)."""
    from adlab.tasks import get_task

    columns = ["train_loss", "val_loss", *get_task(task_name).val_columns]
    if metric not in columns:
        raise ConfigError(
            f"{path}: objective.metric: {metric[:60]!r} is not a column of a {task_name} run's "
            f"history (valid: {', '.join(columns)})"
        )


def _suggest(trial, key: str, param: Param) -> Any:
    if param.choices is not None:
        return trial.suggest_categorical(key, param.choices)
    low, high = param.low, param.high
    assert low is not None and high is not None  # Param's validator: low and high where there are no choices
    if all(isinstance(v, int) for v in (low, high)) and (param.step is None or isinstance(param.step, int)):
        return trial.suggest_int(key, low, high, step=param.step or 1, log=param.log)
    return trial.suggest_float(key, float(low), float(high), step=param.step, log=param.log)


def _best_of_run(history_path: Path, metric: str, direction: str) -> float:
    from adlab.rundir import read_history

    values = [row[metric] for row in read_history(history_path) if row.get(metric) is not None]
    if not values:
        raise AdlabError(
            f"{history_path}: no '{metric}' column to optimise (a validation metric such as "
            "val_accuracy, val_loss or val_mse)"
        )
    return max(values) if direction == "maximize" else min(values)


def _retry_interrupted_trials(study, storage, say) -> None:
    """The default SQLite file belongs to one worker: a trial still marked running there was cut
    short (Ctrl-C, kill -9, a crash). Mark it failed and queue its settings again."""
    import optuna

    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
        study.enqueue_trial(trial.params, skip_if_exists=False)
        say(f"trial {trial.number} was interrupted; its settings are tried again")


def run_search(path: str | Path, out: str | Path | None = None, verbose: bool = True) -> dict:
    import optuna

    from adlab.run.train import train

    path = Path(path)
    spec, base = load_search(path)
    name = spec.name or path.stem
    out = ownership.canonical(out or Path("runs") / "searches" / name)
    ownership.adopt_or_create(out, "search", legacy_files=("search.db",))  # a search continues in its folder
    say = io.printer(verbose)
    # ERROR: an interrupted trial would print Optuna's traceback; adlab says what happened in one line
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    from optuna.storages import RDBStorage, RetryFailedTrialCallback

    url = spec.storage or f"sqlite:///{(out / 'search.db').resolve()}"
    if spec.storage:  # shared by several workers: a trial whose worker stopped beating is failed and retried
        storage = RDBStorage(
            url, heartbeat_interval=30, grace_period=120, failed_trial_callback=RetryFailedTrialCallback(max_retry=1)
        )
    else:
        storage = RDBStorage(url)
    sampler = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=spec.seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=spec.seed),
        "grid": lambda: optuna.samplers.GridSampler(
            # load_search gave every parameter choices for the grid
            {k: p.choices for k, p in spec.space.items() if p.choices is not None},
            seed=spec.seed,
        ),
    }[spec.sampler]()
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
        if spec.pruning
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction=spec.objective.direction,
        load_if_exists=True,
    )
    metric, direction = spec.objective.metric, spec.objective.direction
    counted = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)  # failed trials do not count
    if not spec.storage:
        _retry_interrupted_trials(study, storage, say)

    def objective(trial) -> float:
        raw = copy.deepcopy(base)
        for key, param in spec.space.items():
            set_dotted(raw, key, _suggest(trial, key, param))
        folds = range(spec.cv_folds) if spec.cv_folds else [None]
        scores = []
        for fold in folds:
            run_raw = copy.deepcopy(raw)
            run_dir = out / "trials" / f"{trial.number:04d}"
            if fold is not None:
                set_dotted(run_raw, "data.cv_folds", spec.cv_folds)
                set_dotted(run_raw, "data.cv_fold", fold)
                run_dir = run_dir / f"fold{fold}"
            set_dotted(run_raw, "train.progress_bar", False)
            callbacks = []
            if spec.pruning and fold is None:
                # optuna-integration ships no type information (no py.typed)
                from optuna_integration import PyTorchLightningPruningCallback  # type: ignore[import-untyped]

                callbacks.append(PyTorchLightningPruningCallback(trial, monitor=metric))
            train(run_raw, out=run_dir, overwrite=True, verbose=False, callbacks=callbacks)
            for callback in callbacks:
                callback.check_pruned()
            scores.append(_best_of_run(run_dir / "history.csv", metric, direction))
            if fold is not None and spec.pruning:
                trial.report(float(np.mean(scores)), fold)
                if trial.should_prune():
                    raise optuna.TrialPruned()
        trial.set_user_attr("fold_scores", scores)
        trial.set_user_attr("std", float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0)
        return float(np.mean(scores))

    def progress(study_, trial) -> None:
        done = len(study_.get_trials(deepcopy=False, states=counted))
        value = "pruned" if trial.state == optuna.trial.TrialState.PRUNED else f"{metric}={trial.value:.4f}"
        say(f"[{done}/{spec.trials}] trial {trial.number}: {value} {trial.params}")

    finished = len(study.get_trials(deepcopy=False, states=counted))
    if finished < spec.trials:
        try:
            study.optimize(
                objective, n_trials=spec.trials - finished, callbacks=[progress], catch=(), gc_after_trial=True
            )
        except Interrupted as exc:  # the search's own command continues it (the cut trial is tried again)
            what = str(exc).split("; continue with:")[0]
            raise Interrupted(
                f"{what}; continue the search with: adlab search {shlex.quote(str(path))} "
                f"--out {shlex.quote(str(out))}",
                exc.exit_code,
            ) from None
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise AdlabError(f"{out}: no trial completed")
    best = study.best_trial

    # the best settings, trained again on train + val, scored once on the test set
    final_raw = copy.deepcopy(base)
    for key, value in best.params.items():
        set_dotted(final_raw, key, value)
    set_dotted(final_raw, "data.val_fraction", 0.0)
    set_dotted(final_raw, "train.early_stopping_patience", None)
    set_dotted(final_raw, "train.progress_bar", False)
    started = time.perf_counter()
    final = train(final_raw, out=out / "final", overwrite=True, verbose=False)
    final_test = {k: v for k, v in final.metrics.items() if isinstance(v, (int, float))}
    result = {
        "best_trial": best.number,
        "best_value": best.value,
        "objective": metric,
        "direction": direction,
        "cv_folds": spec.cv_folds,
        "cv_std": best.user_attrs.get("std"),
        "fold_scores": best.user_attrs.get("fold_scores"),
        "best_params": best.params,
        "trials_complete": len(complete),
        "trials_pruned": len([t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]),
        "final_test": final_test,
        "final_seconds": round(time.perf_counter() - started, 1),
        "storage": url,
    }
    _write_outputs(out, study, result, metric)
    say(
        f"best trial {best.number}: {metric}={best.value:.4f}"
        + (f" +- {result['cv_std']:.4f} over {spec.cv_folds} folds" if spec.cv_folds else "")
        + f" {best.params}"
    )
    main = "accuracy" if "accuracy" in final.metrics else next(iter(final_test))
    say(f"retrained on train+val, test {main}={final.metrics[main]:.4f}; results in {out}")
    return result


def _write_outputs(out: Path, study, result: dict, metric: str) -> None:
    import optuna

    keys = sorted({k for t in study.trials for k in t.params})
    rows = [
        [
            t.number,
            t.state.name.lower(),
            "" if t.value is None else t.value,
            t.user_attrs.get("std", ""),
            *[t.params.get(k, "") for k in keys],
        ]
        for t in study.trials
    ]
    io.write_csv(out / "trials.csv", ["trial", "state", metric, "cv_std", *keys], rows)
    io.write_yaml(out / "best.yaml", result)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    lines = [
        f"# Search: {study.study_name}",
        "",
        f"{len(complete)} complete and {result['trials_pruned']} pruned trials; objective {metric} "
        f"({result['direction']})" + (f", mean over {result['cv_folds']} folds" if result["cv_folds"] else "") + ".",
        "",
        "| trial | " + " | ".join([metric, "cv std", *keys]) + " |",
        "|---|" + "---:|" * (len(keys) + 2),
    ]
    ranked = sorted(complete, key=lambda t: t.value, reverse=result["direction"] == "maximize")
    for t in ranked[:20]:
        cells = [f"{t.value:.4f}", f"{t.user_attrs.get('std', 0):.4f}", *[_fmt(t.params.get(k)) for k in keys]]
        lines.append(f"| {t.number} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Best settings retrained on train + val, scored once on the test set: "
        + ", ".join(
            f"{k} {v:.4f}"
            for k, v in result["final_test"].items()
            if k in ("accuracy", "mean_class_accuracy", "macro_f1", "test_mse")
        ),
        "",
    ]
    io.write_text(out / "report.md", "\n".join(lines))


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
