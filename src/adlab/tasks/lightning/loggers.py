"""Experiment trackers (`train.loggers`): Lightning's own CSV, TensorBoard and MLflow loggers for the
Lightning tasks, and where a run's MLflow record lives, which task detect shares (it switches on
ultralytics' integrations instead: tasks/detect/train.py).

Everything goes into the run folder unless the user points MLflow elsewhere:

    RUN/logs/csv/version_0/metrics.csv        CSVLogger (a resumed run continues in version_1)
    RUN/logs/tensorboard/version_0/events.*   TensorBoardLogger
    RUN/logs/mlflow/mlflow.db, mlartifacts/   a local MLflow store (SQLite: MLflow 3's default kind)

MLFLOW_TRACKING_URI and MLFLOW_EXPERIMENT_NAME, read as MLflow reads them, put the runs of a whole
study into one store and one experiment (docs/tracking.md).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from adlab.config import Config
from adlab.errors import ConfigError

PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}  # csv needs nothing beyond Lightning
RUN_TAG = "adlab.run_dir"  # the run folder an MLflow run belongs to: a resumed run continues it


def check_installed(loggers: list[str]) -> None:
    """Checked when a run starts, not when a config is read: a finished run's config.yaml must still
    load (evaluate, table, reports) where the tracker is not installed."""
    for name in loggers:
        package = PACKAGES.get(name)
        if package and importlib.util.find_spec(package) is None:
            raise ConfigError(f"train.loggers: {name} needs the {package} package, which is not installed: "
                              "pip install 'adlab[track]'")


def flat_params(config: Config) -> dict[str, Any]:
    """The resolved config under the dotted keys `--set` takes (train.lr, model.cnn.hidden); each
    logger writes the values its own way (MLflow as text, CSV and TensorBoard in hparams.yaml)."""

    def walk(node: dict, prefix: str):
        for key, value in node.items():
            if isinstance(value, dict) and value:
                yield from walk(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    return dict(walk(config.to_dict(), ""))


def final_numbers(metrics: dict) -> dict[str, float]:
    """metrics.json's numbers under their own names (accuracy, test_loss, train_seconds, ...);
    mappings and lists (per class, confusion matrix) stay in metrics.json, logged as an artifact."""
    return {key: float(value) for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


# --- MLflow: where a run goes ---------------------------------------------------------------------

@dataclass(frozen=True)
class MlflowTarget:
    uri: str
    experiment: str
    run_name: str
    tags: dict[str, str]
    artifact_location: str | None  # for a new experiment; None: the store's own default


def mlflow_target(config: Config, run_dir: Path) -> MlflowTarget:
    """MLFLOW_TRACKING_URI if set (one store for a study, or a team's server), else a SQLite store in
    the run folder; the experiment MLFLOW_EXPERIMENT_NAME if set, else the config's name (the task's
    without one), which the runs of one study share; the run named after its folder."""
    from mlflow.utils.file_utils import path_to_local_sqlite_uri

    run_dir = Path(run_dir).resolve()
    uri = os.environ.get("MLFLOW_TRACKING_URI") or path_to_local_sqlite_uri(str(run_dir / "logs" / "mlflow" / "mlflow.db"))
    experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or config.name or config.task
    tags = {RUN_TAG: str(run_dir), "adlab.task": config.task}
    return MlflowTarget(uri, experiment, run_dir.name, tags, _artifact_location(uri))


def _sqlite_file(uri: str) -> Path | None:
    return Path(unquote(uri.removeprefix("sqlite:///"))).absolute() if uri.startswith("sqlite:///") else None


def _artifact_location(uri: str) -> str | None:
    """Artifacts next to a local SQLite store: MLflow's default for one is ./mlruns in the working
    directory, which would litter wherever adlab happens to be started."""
    database = _sqlite_file(uri)
    return (database.parent / "mlartifacts").as_uri() if database else None


@contextmanager
def _first_use_lock(uri: str):
    """One process at a time opens a SQLite store: MLflow creates a new store's tables without a lock,
    and two study workers doing it at once fail ("duplicate column name"). POSIX only (fcntl)."""
    database = _sqlite_file(uri)
    if database is None or os.name == "nt":
        yield
        return
    import fcntl

    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def mlflow_run_id(target: MlflowTarget, resuming: bool) -> tuple[str, str | None]:
    """(experiment id, the run to continue): a resumed run continues its own MLflow run; a run made
    anew (--overwrite, a study re-making an interrupted run) replaces the earlier record of its
    folder, which is soft-deleted (MLflow's trash, restorable) as the folder itself was replaced."""
    from mlflow.tracking import MlflowClient

    # MLflow's chatter ("Creating initial MLflow database tables", "Autologging successfully enabled")
    for name in ("mlflow.store.db.utils", "mlflow.tracking.fluent"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with _first_use_lock(target.uri):
        client = MlflowClient(target.uri)
        experiment_id = _experiment_id(client, target)
    earlier = [run for run in client.search_runs([experiment_id], order_by=["attributes.start_time DESC"])
               if run.data.tags.get(RUN_TAG) == target.tags[RUN_TAG]]
    if resuming and earlier:
        return experiment_id, earlier[0].info.run_id
    for run in earlier:
        client.delete_run(run.info.run_id)
    return experiment_id, None


def _experiment_id(client, target: MlflowTarget) -> str:
    """Get or create the experiment. Workers sharing a tracking server may race to create it: a first
    try that fails is made once more."""
    from mlflow.exceptions import MlflowException

    def get_or_create():
        found = client.get_experiment_by_name(target.experiment)
        if found is None:
            client.create_experiment(target.experiment, artifact_location=target.artifact_location)
            found = client.get_experiment_by_name(target.experiment)
        return found

    try:
        try:
            found = get_or_create()
        except MlflowException:
            found = get_or_create()
    except MlflowException as exc:
        raise ConfigError(f"train.loggers: mlflow: cannot use the store {target.uri} "
                          f"({str(exc).strip().splitlines()[0]})") from None
    if found.lifecycle_stage != "active":  # MLflow keeps a deleted experiment's name until it is purged
        raise ConfigError(f"train.loggers: mlflow: experiment {target.experiment!r} is deleted in {target.uri}; "
                          "restore it (MLflow UI) or log to another one (MLFLOW_EXPERIMENT_NAME)")
    return found.experiment_id


@contextmanager
def mlflow_process_state():
    """Restores MLflow's process-wide tracking URI, which MLFlowLogger sets (and MLflow copies into
    MLFLOW_TRACKING_URI for subprocesses): the next run of a study must not log into this run's store."""
    import mlflow

    saved = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME",
                                                      "MLFLOW_EXPERIMENT_ID")}
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])  # None unsets it again
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def log_outputs_to_mlflow(client, run_id: str, run_dir: Path, metrics: dict, step: int,
                          params: dict | None = None) -> None:
    """metrics.json's numbers as metrics (and `params`, if given), and figures/*.png, metrics.json and
    config.yaml as artifacts."""
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in final_numbers(metrics).items()],
                     params=[Param(k, str(v)) for k, v in (params or {}).items()])
    for figure in sorted((Path(run_dir) / "figures").glob("*.png")):
        client.log_artifact(run_id, str(figure), "figures")
    for name in ("metrics.json", "config.yaml"):
        client.log_artifact(run_id, str(Path(run_dir) / name))


# --- the Lightning loggers ------------------------------------------------------------------------

def make_loggers(config: Config, run_dir: Path, resuming: bool) -> list:
    """Lightning's loggers for train.loggers, writing under RUN/logs."""
    from lightning.pytorch import loggers as pl_loggers

    logs = Path(run_dir) / "logs"
    made = []
    for name in config.train.loggers:
        if name == "csv":
            made.append(pl_loggers.CSVLogger(logs, name="csv"))
        elif name == "tensorboard":
            # no placeholder hp_metric: the hyperparameters are logged with the test metrics at the end
            made.append(pl_loggers.TensorBoardLogger(logs, name="tensorboard", default_hp_metric=False))
        elif name == "mlflow":
            target = mlflow_target(config, run_dir)
            _, run_id = mlflow_run_id(target, resuming)
            made.append(pl_loggers.MLFlowLogger(experiment_name=target.experiment, run_name=target.run_name,
                                                tracking_uri=target.uri, tags=target.tags, run_id=run_id,
                                                artifact_location=target.artifact_location))
    return made


@contextmanager
def attached_loggers(config: Config, run_dir: Path, trainer, resuming: bool):
    """The trainer gets its loggers once the run folder exists (they write into it); rank zero only,
    as Lightning logs from rank zero anyway. Yields them for `log_outputs` after the test set is scored."""
    if not config.train.loggers or not trainer.is_global_zero:
        yield []
        return
    with mlflow_process_state() if "mlflow" in config.train.loggers else nullcontext():
        loggers = make_loggers(config, run_dir, resuming)
        trainer.loggers = loggers
        params = flat_params(config)
        for logger in loggers:
            logger.log_hyperparams(params)
        yield loggers


def log_outputs(loggers: list, run_dir: Path, config: Config, metrics: dict, step: int) -> None:
    """After the test set is scored (metrics.json and figures written): the final numbers to every
    logger, the figures as TensorBoard images and MLflow artifacts; then each logger is closed again
    (Lightning closed them when fit ended)."""
    from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger

    numbers = final_numbers(metrics)
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            # hyperparameters with the metrics they gave: TensorBoard's HPARAMS tab compares runs
            logger.log_hyperparams(flat_params(config), metrics=numbers, step=step)
            for figure in sorted((Path(run_dir) / "figures").glob("*.png")):
                logger.experiment.add_image(f"figures/{figure.stem}", _rgb(figure), step, dataformats="HWC")
        elif isinstance(logger, MLFlowLogger):
            log_outputs_to_mlflow(logger.experiment, logger.run_id, run_dir, metrics, step)
        else:
            logger.log_metrics(numbers, step=step)
        logger.finalize("success")


def _rgb(path: Path):
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
