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

import contextlib
import importlib.util
import logging
import os
import re
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from adlab import io
from adlab.config import Config
from adlab.errors import ConfigError

PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}  # csv needs nothing beyond Lightning
RUN_TAG = "adlab.run_dir"  # the run folder an MLflow run belongs to: a resumed run continues it


def check_installed(loggers: list[str]) -> None:
    """Checked when a run starts, not when a config is read: a finished run's config.yaml must still
    load (evaluate, table, reports) where the tracker is not installed. With mlflow, the store that
    MLFLOW_TRACKING_URI names is checked too, before the run folder exists (check_tracking_store)."""
    for name in loggers:
        package = PACKAGES.get(name)
        if package and importlib.util.find_spec(package) is None:
            raise ConfigError(
                f"train.loggers: {name} needs the {package} package, which is not installed: pip install 'adlab[track]'"
            )
    if "mlflow" in loggers:
        check_tracking_store(os.environ.get("MLFLOW_TRACKING_URI"))


# --- MLflow: the store MLFLOW_TRACKING_URI names, checked before a run starts ---------------------

URI_VARIABLE = "MLFLOW_TRACKING_URI"
CONNECT_SECONDS = 5.0  # a store that does not take a connection in this time is not there
PROBE_SECONDS = 10  # MLflow's own default: 7 retries with backoff (minutes) and 120 s a request
SQLITE_HEADER = b"SQLite format 3\x00"
MLFLOW_TABLES = {"experiments", "runs", "alembic_version"}  # what makes a SQLite file an MLflow store
DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
STORE_KINDS = "a SQLite file (sqlite:////abs/path/mlflow.db), a server (http(s)://host:port) or a database server"


def check_tracking_store(uri: str | None) -> None:
    """MLFLOW_TRACKING_URI, judged before anything is written: MLflow would otherwise hang for minutes on
    a server that is not there (7 retries with backoff), add its tables to (or fail with a traceback
    on) any file it is pointed at, or fill a user's folder with its own. Accepted: a store MLflow made
    or a place that does not exist yet (MLflow makes it); a server that answers MLflow's API."""
    if not uri:
        return  # the run folder's own store
    from urllib.parse import urlparse

    if uri != uri.strip() or any(ord(c) < 32 for c in uri):
        raise ConfigError(f"{URI_VARIABLE}: {uri!r} has spaces or control characters around or in it")
    scheme = uri.lower() if uri.lower() in ("databricks", "databricks-uc", "uc") else urlparse(uri).scheme.lower()
    engine = scheme.split("+")[0]
    if engine == "sqlite":
        _check_sqlite_store(uri)
    elif scheme in ("http", "https"):
        _check_server(uri)
    elif engine in DATABASE_PORTS:
        _check_database_server(uri, engine)
    elif scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        _check_file_store(uri)
    elif scheme in ("databricks", "databricks-uc", "uc"):
        _probe(uri)  # the workspace's credentials and host: MLflow reads them from its own config
    else:
        raise ConfigError(
            f"{URI_VARIABLE}: {uri!r}: MLflow has no tracking store for '{scheme}:' URIs; use {STORE_KINDS}"
        )


def _refuse(uri: str, problem: str, hint: str = f"unset {URI_VARIABLE} to log into the run folder") -> ConfigError:
    return ConfigError(f"{URI_VARIABLE}: {uri}: {problem}; {hint}")


def _check_sqlite_store(uri: str) -> None:
    import sqlite3
    import stat

    database = _sqlite_file(uri)
    if database is None:
        raise _refuse(
            uri,
            "not a SQLite file (an in-memory store keeps nothing); sqlite:/// then the file's path "
            "(four slashes for an absolute one)",
        )
    written = uri.split(":///", 1)[1]
    if written.startswith("~"):  # neither MLflow nor SQLite expands it: a folder named '~' would appear
        raise _refuse(
            uri,
            "'~' is not expanded in a URI (MLflow would make a folder named '~' here)",
            "give the absolute path: sqlite:////home/you/mlflow.db",
        )
    try:
        info = database.stat()
    except FileNotFoundError:
        info = None
    except (OSError, ValueError) as exc:  # a symlink loop, a path through a file, a NUL (%00) in it
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise _refuse(uri, f"cannot be read ({reason})") from None
    if info is None:
        if not os.path.isdir(_deepest_existing(database.parent)):
            raise _refuse(uri, f"{_deepest_existing(database.parent)} is not a folder")
        return  # MLflow makes a new store here
    if not stat.S_ISREG(info.st_mode):
        raise _refuse(uri, f"{database} is {io.file_kind(info.st_mode)}, not a SQLite file")
    if info.st_size == 0:
        return  # an empty file is an empty database: MLflow makes its tables
    try:
        with open(database, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise _refuse(uri, f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    if header != SQLITE_HEADER:
        raise _refuse(
            uri,
            f"{database} is not a SQLite database (MLflow would fail on it, adlab leaves it as it is)",
            "point it at an MLflow store, or at a file that does not exist yet",
        )
    try:  # read-only and immutable: not even a journal file appears beside it
        with contextlib.closing(sqlite3.connect(f"{database.as_uri()}?mode=ro&immutable=1", uri=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as exc:
        raise _refuse(uri, f"{database} is a damaged SQLite database ({exc})") from None
    if tables and not MLFLOW_TABLES <= tables:
        raise _refuse(
            uri,
            f"{database} is a SQLite database but not an MLflow store (tables: "
            f"{', '.join(sorted(tables)[:5])}); MLflow would add its tables to it",
            "point it at an MLflow store, or at a file that does not exist yet",
        )


def _check_file_store(uri: str) -> None:
    """MLflow 3 refuses its old folder store unless MLFLOW_ALLOW_FILE_STORE is true; with it, a folder
    is accepted only if it is an MLflow store already, empty, or not there yet."""
    from mlflow.utils.file_utils import local_file_uri_to_path

    if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("true", "1"):
        raise _refuse(
            uri,
            "a folder store, which MLflow 3 no longer takes (MLFLOW_ALLOW_FILE_STORE is not set)",
            "use a SQLite file such as sqlite:////abs/path/mlflow.db, or unset it to log into the run folder",
        )
    from urllib.parse import urlparse

    if uri.startswith("~"):
        raise _refuse(
            uri, "'~' is not expanded by MLflow (it would make a folder named '~' here)", "give the absolute path"
        )
    if urlparse(uri).netloc not in ("", "localhost"):
        raise _refuse(uri, f"not a local folder (a file: URI naming host {urlparse(uri).netloc})")
    try:
        folder = Path(local_file_uri_to_path(uri))
    except Exception as exc:  # a file: URI with a host, ...
        raise _refuse(uri, f"not a local folder ({_first_line(exc)})") from None
    if not os.path.lexists(folder):
        if not os.path.isdir(_deepest_existing(folder.parent)):
            raise _refuse(uri, f"{_deepest_existing(folder.parent)} is not a folder")
        return
    if not folder.is_dir():
        raise _refuse(uri, f"{folder} is not a folder")
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise _refuse(uri, f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    if entries and not ((folder / ".trash").is_dir() or (folder / "0" / "meta.yaml").is_file()):
        raise _refuse(
            uri,
            f"{folder} is a folder with other files, not an MLflow store (MLflow would write its "
            "experiments among them)",
            "point it at an MLflow store or a new folder",
        )


def _deepest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _reach(uri: str, host: str | None, port: int | None) -> None:
    """A TCP connection within CONNECT_SECONDS, or one line: a server that is not there fails now."""
    import socket

    if not host or port is None:
        raise _refuse(uri, "names no host to connect to")
    try:
        socket.create_connection((host, port), timeout=CONNECT_SECONDS).close()
    except socket.gaierror:
        raise _refuse(
            uri, f"host {host} is not known", "check the name, or unset it to log into the run folder"
        ) from None
    except TimeoutError:
        raise _refuse(
            uri,
            f"{host}:{port} does not answer (no connection within {CONNECT_SECONDS:.0f} s)",
            "start the server, or unset it to log into the run folder",
        ) from None
    except OSError as exc:
        raise _refuse(
            uri,
            f"nothing answers at {host}:{port} ({exc.strerror or type(exc).__name__})",
            "start the server (mlflow server ...), or unset it to log into the run folder",
        ) from None


def _port(uri: str, default: int) -> tuple[str | None, int | None]:
    from urllib.parse import urlparse

    parsed = urlparse(uri)
    try:
        return parsed.hostname, parsed.port or default
    except ValueError:  # a port that is not a number, or out of range
        raise _refuse(uri, "its port is not a number from 1 to 65535") from None


def _check_server(uri: str) -> None:
    """Connect, then one request through MLflow's own client with one short try (MLflow's default
    retries for minutes): a server that is not MLflow's, or that refuses the credentials, fails here."""
    host, port = _port(uri, 443 if uri.lower().startswith("https") else 80)
    _reach(uri, host, port)
    _probe(uri)


def _probe(uri: str) -> None:
    """One request (list one experiment) with no retries and a short timeout, unless the user set
    MLflow's own MLFLOW_HTTP_REQUEST_* variables: MLflow's defaults retry for minutes."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(PROBE_SECONDS)}
    saved = {name: os.environ.get(name) for name in quick}
    os.environ.update({name: value for name, value in quick.items() if saved[name] is None})
    chatty = logging.getLogger("mlflow.utils.databricks_utils")  # its credential fallback, said as a warning
    level = chatty.level
    chatty.setLevel(logging.ERROR)
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except MlflowException as exc:
        text = str(exc)
        if "timed out" in text or "Max retries exceeded" in text:  # requests' error, wrapped by MLflow
            why = f"within {PROBE_SECONDS} s" if "timed out" in text else "(the connection failed)"
            raise _refuse(
                uri,
                f"no answer from an MLflow server {why}",
                "check the address, or unset it to log into the run folder",
            ) from None
        raise _refuse(
            uri,
            f"not an MLflow server that takes this client ({_first_line(exc)})",
            "check the address and credentials (MLFLOW_TRACKING_TOKEN, ...), or unset it",
        ) from None
    except Exception as exc:  # requests' errors: a timeout, TLS, a dropped connection
        raise _refuse(
            uri,
            f"no answer from an MLflow server ({_first_line(exc)})",
            "check the address, or unset it to log into the run folder",
        ) from None
    finally:
        chatty.setLevel(level)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)


def _check_database_server(uri: str, engine: str) -> None:
    """A database server MLflow's SQLAlchemy store would use: its driver is installed and it is there."""
    try:
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        url = make_url(uri)
        create_engine(url).dispose()  # imports the driver; connects to nothing yet
    except Exception as exc:
        raise _refuse(
            uri,
            f"cannot use this database URI ({_first_line(exc)})",
            "install its driver, fix the URI, or unset it to log into the run folder",
        ) from None
    _reach(uri, url.host, url.port or DATABASE_PORTS[engine])


def _first_line(exc: BaseException) -> str:
    text = re.sub(r"\s+", " ", str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    return text[:200]


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
    return {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


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
    uri = os.environ.get("MLFLOW_TRACKING_URI") or path_to_local_sqlite_uri(
        str(run_dir / "logs" / "mlflow" / "mlflow.db")
    )
    experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or config.name or config.task
    tags = {RUN_TAG: str(run_dir), "adlab.task": config.task}
    return MlflowTarget(uri, experiment, run_dir.name, tags, _artifact_location(uri))


def _sqlite_file(uri: str) -> Path | None:
    """The file of a sqlite:/// URI (SQLAlchemy's form: three slashes, then the path; options after '?'),
    None for any other store and for an in-memory one."""
    found = re.fullmatch(r"sqlite(\+\w+)?:///([^?]*)(\?.*)?", uri, flags=re.IGNORECASE | re.DOTALL)
    path = unquote(found.group(2)) if found else ""
    return Path(path).absolute() if path and path != ":memory:" else None


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
    from mlflow.exceptions import MlflowException

    try:
        with _first_use_lock(target.uri):
            client = MlflowClient(target.uri)
            experiment_id = _experiment_id(client, target)
        earlier = [
            run
            for run in client.search_runs([experiment_id], order_by=["attributes.start_time DESC"])
            if run.data.tags.get(RUN_TAG) == target.tags[RUN_TAG]
        ]
    except (MlflowException, OSError) as exc:  # a store that passed check_tracking_store and failed since
        raise ConfigError(f"train.loggers: mlflow: cannot use the store {target.uri} ({_first_line(exc)})") from None
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
        raise ConfigError(
            f"train.loggers: mlflow: cannot use the store {target.uri} ({str(exc).strip().splitlines()[0]})"
        ) from None
    if found.lifecycle_stage != "active":  # MLflow keeps a deleted experiment's name until it is purged
        raise ConfigError(
            f"train.loggers: mlflow: experiment {target.experiment!r} is deleted in {target.uri}; "
            "restore it (MLflow UI) or log to another one (MLFLOW_EXPERIMENT_NAME)"
        )
    return found.experiment_id


@contextmanager
def mlflow_process_state():
    """Restores MLflow's process-wide tracking URI, which MLFlowLogger sets (and MLflow copies into
    MLFLOW_TRACKING_URI for subprocesses): the next run of a study must not log into this run's store."""
    import mlflow

    saved = {
        name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID")
    }
    try:
        yield
    finally:
        # None unsets it again (MLflow's annotation leaves None out; its code unsets the URI for it)
        mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])  # type: ignore[arg-type]
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def log_outputs_to_mlflow(
    client, run_id: str, run_dir: Path, metrics: dict, step: int, params: dict | None = None
) -> None:
    """metrics.json's numbers as metrics (and `params`, if given), and figures/*.png, metrics.json and
    config.yaml as artifacts."""
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, now, step) for k, v in final_numbers(metrics).items()],
        params=[Param(k, str(v)) for k, v in (params or {}).items()],
    )
    for figure in sorted((Path(run_dir) / "figures").glob("*.png")):
        client.log_artifact(run_id, str(figure), "figures")
    for name in ("metrics.json", "config.yaml"):
        client.log_artifact(run_id, str(Path(run_dir) / name))


# --- the Lightning loggers ------------------------------------------------------------------------


def make_loggers(config: Config, run_dir: Path, resuming: bool) -> list:
    """Lightning's loggers for train.loggers, writing under RUN/logs."""
    from lightning.pytorch import loggers as pl_loggers

    logs = Path(run_dir) / "logs"
    made: list[pl_loggers.Logger] = []
    for name in config.train.loggers:
        if name == "csv":
            made.append(pl_loggers.CSVLogger(logs, name="csv"))
        elif name == "tensorboard":
            # no placeholder hp_metric: the hyperparameters are logged with the test metrics at the end
            made.append(pl_loggers.TensorBoardLogger(logs, name="tensorboard", default_hp_metric=False))
        elif name == "mlflow":
            target = mlflow_target(config, run_dir)
            _, run_id = mlflow_run_id(target, resuming)
            made.append(
                pl_loggers.MLFlowLogger(
                    experiment_name=target.experiment,
                    run_name=target.run_name,
                    tracking_uri=target.uri,
                    tags=target.tags,
                    run_id=run_id,
                    artifact_location=target.artifact_location,
                )
            )
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
            client = logger.experiment
            run_id = logger.run_id
            assert run_id is not None  # the experiment is open: its run has an id
            log_outputs_to_mlflow(client, run_id, run_dir, metrics, step)
        else:
            logger.log_metrics(numbers, step=step)
        logger.finalize("success")


def _rgb(path: Path):
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
