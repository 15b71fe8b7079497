"""train.loggers: Lightning's CSV, TensorBoard and MLflow loggers write into the run folder (and
nowhere else); detection switches ultralytics' integrations on exactly when asked; the MLflow UI
shows a run."""

from __future__ import annotations

import csv
import html
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import lightning as L
import pytest
import yaml
from tests.conftest import fast_config

import adlab
from checks import chromium_command

pytestmark = pytest.mark.requires("track")  # skipped without adlab[track]; fails with CI=true (tests/conftest.py)
MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID")


def tracked_config(epochs: int = 2, loggers=("csv", "tensorboard", "mlflow"), name: str = "tracked") -> dict:
    return {**fast_config(train={"epochs": epochs, "loggers": list(loggers)}), "name": name}


def history(run: Path) -> list[dict]:
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


def mlflow_client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def store_uri(run: Path) -> str:
    return f"sqlite:///{(run / 'logs' / 'mlflow' / 'mlflow.db').resolve()}"


def only_run(client, experiment: str):
    found = client.get_experiment_by_name(experiment)
    assert found is not None, [e.name for e in client.search_experiments()]
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One run logging to all three, started in an empty working folder that must stay empty, with no
    MLflow variables of the developer's shell in the way."""
    root = tmp_path_factory.mktemp("tracked")
    (root / "cwd").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for name in MLFLOW_ENV:
            mp.delenv(name, raising=False)
        mp.chdir(root / "cwd")
        run = adlab.train(tracked_config(), out=root / "run", verbose=False)
        leftover = {name: os.environ.get(name) for name in MLFLOW_ENV}
    return run, root, leftover


def test_default_logs_nowhere_new(digits_run):
    assert not (digits_run.path / "logs").exists()


def test_unknown_or_repeated_logger_is_one_line(cli):
    (cli.root / "c.yaml").write_text("train: {epochs: 1}\n")
    cli.refused(
        "train",
        "c.yaml",
        "--set",
        "train.loggers=[csv,wandb]",
        names=("train.loggers", "'wandb'", "csv, tensorboard, mlflow"),
    )
    cli.refused(
        "train", "c.yaml", "--set", "train.loggers=[mlflow,mlflow]", names=("train.loggers", "mlflow is listed twice")
    )


def test_logger_without_its_package_is_one_line_but_its_config_still_loads(cli, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    (cli.root / "c.yaml").write_text("train: {epochs: 1}\n")
    cli.refused(
        "train",
        "c.yaml",
        "--set",
        "train.loggers=mlflow",
        "--out",
        "run",
        names=("train.loggers", "mlflow", "adlab[track]"),
    )
    # reading a finished run's config (evaluate, table, reports) does not need the tracker
    assert adlab.load_config({"train": {"loggers": ["mlflow"]}}).train.loggers == ["mlflow"]


def test_nothing_is_written_outside_the_run_folder(tracked):
    run, root, leftover = tracked
    assert sorted(p.name for p in root.iterdir()) == ["cwd", "run"]
    assert not any((root / "cwd").iterdir()), "MLflow or a logger wrote into the working folder"
    assert leftover == dict.fromkeys(MLFLOW_ENV), "MLflow's process-wide tracking URI was left set"
    assert sorted(p.name for p in (run.path / "logs").iterdir()) == ["csv", "mlflow", "tensorboard"]


def test_csv_logger_has_each_epoch_and_the_test_metrics(tracked):
    run = tracked[0]
    with open(run.path / "logs" / "csv" / "version_0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    per_epoch = [float(r["val_accuracy"]) for r in rows if r["val_accuracy"]]
    assert per_epoch == pytest.approx([float(r["val_accuracy"]) for r in history(run.path)])
    final = [r for r in rows if r["accuracy"]]
    assert len(final) == 1 and float(final[0]["accuracy"]) == pytest.approx(run.metrics["accuracy"])
    params = yaml.safe_load((run.path / "logs" / "csv" / "version_0" / "hparams.yaml").read_text())
    assert params["train.lr"] == 0.003 and params["model.cnn.conv_channels"] == [16, 32]


def test_tensorboard_has_each_epoch_the_hyperparameters_and_the_figures(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tracked[0]
    events = EventAccumulator(str(run.path / "logs" / "tensorboard" / "version_0"), size_guidance={"images": 0})
    events.Reload()
    per_epoch = [e.value for e in events.Scalars("val_accuracy")]
    assert per_epoch == pytest.approx([float(r["val_accuracy"]) for r in history(run.path)])
    assert events.Scalars("accuracy")[-1].value == pytest.approx(run.metrics["accuracy"])
    figures = set(events.Tags()["images"])
    assert figures == {f"figures/{p.stem}" for p in (run.path / "figures").glob("*.png")} and len(figures) == 3
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")


def test_mlflow_run_has_params_metrics_and_figures(tracked, tmp_path):
    run = tracked[0]
    client = mlflow_client(store_uri(run.path))
    found = only_run(client, "tracked")  # the experiment is named after the config
    assert found.info.run_name == run.path.name and found.info.status == "FINISHED"
    assert found.data.tags["adlab.run_dir"] == str(run.path.resolve())
    params = found.data.params
    assert params["train.lr"] == "0.003" and params["model.cnn.conv_channels"] == "[16, 32]"
    assert params["train.loggers"] == "['csv', 'tensorboard', 'mlflow']"
    per_epoch = client.get_metric_history(found.info.run_id, "val_accuracy")
    assert [m.value for m in per_epoch] == pytest.approx([float(r["val_accuracy"]) for r in history(run.path)])
    assert [m.step for m in per_epoch] == sorted({m.step for m in per_epoch})  # one point per epoch, in order
    for key in ("accuracy", "macro_f1", "test_loss", "train_seconds"):
        assert found.data.metrics[key] == pytest.approx(run.metrics[key]), key
    listed = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert listed == {"figures", "metrics.json", "config.yaml"}
    local = Path(client.download_artifacts(found.info.run_id, "figures", str(tmp_path)))
    for figure in (run.path / "figures").glob("*.png"):
        assert (local / figure.name).read_bytes() == figure.read_bytes(), figure.name
    # artifacts live in the run folder's store, not in MLflow's default ./mlruns
    assert found.info.artifact_uri.startswith((run.path / "logs" / "mlflow" / "mlartifacts").resolve().as_uri())


def test_a_study_shares_one_store_and_experiment_through_mlflow_variables(tmp_path, monkeypatch):
    store = tmp_path / "study" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    for name in ("lr=0.01", "lr=0.001"):  # a study's runs share their base config's name
        adlab.train(
            tracked_config(epochs=1, loggers=["mlflow"], name="lr_study"), out=tmp_path / "study" / name, verbose=False
        )
        assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{store}"  # the user's setting, kept
        assert not (tmp_path / "study" / name / "logs").exists()
    client = mlflow_client(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("lr_study")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["lr=0.001", "lr=0.01"]
    assert all(r.info.artifact_uri.startswith((tmp_path / "study" / "mlartifacts").as_uri()) for r in runs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study"]


OPEN_STORE = """
import sys, time
from pathlib import Path
import mlflow.tracking
from adlab.config import load_config
from adlab.tasks.lightning.loggers import mlflow_run_id, mlflow_target
go, run = Path(sys.argv[1]), Path(sys.argv[2])
run.with_suffix(".ready").touch()
while not go.exists():
    time.sleep(0.005)
print(mlflow_run_id(mlflow_target(load_config({"name": "shared"}), run), resuming=False)[0])
"""


def test_study_workers_open_a_new_shared_store_at_the_same_moment(tmp_path):
    """MLflow creates a new SQLite store's tables without a lock; workers starting together must not
    fail on it (they did: "duplicate column name")."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"}
    env.pop("MLFLOW_EXPERIMENT_NAME", None)
    go = tmp_path / "go"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_STORE, str(go), str(tmp_path / f"run{i}")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("*.ready"))) < len(workers) and time.monotonic() < deadline:
        time.sleep(0.05)  # until every worker has imported MLflow and waits
    go.touch()
    results = [worker.communicate(timeout=120) for worker in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], [err[-800:] for _, err in results]
    assert len({out.strip() for out, _ in results}) == 1  # one experiment for all


class StopInSecondEpoch(L.Callback):
    """Stops before the second epoch's checkpoint (Lightning runs checkpoint callbacks last)."""

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("stopped on purpose")


def test_a_resumed_run_continues_its_mlflow_run(tmp_path, monkeypatch):
    from adlab.run.train import resume

    for name in MLFLOW_ENV:
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="stopped on purpose"):
        adlab.train(
            tracked_config(epochs=3, loggers=["mlflow"]), out=out, verbose=False, callbacks=[StopInSecondEpoch()]
        )
    assert (out / "checkpoints" / "last.ckpt").is_file() and not (out / "metrics.json").exists()
    finished = resume(out, verbose=False)
    found = only_run(mlflow_client(store_uri(out)), "tracked")
    assert found.info.status == "FINISHED" and found.data.metrics["accuracy"] == pytest.approx(
        finished.metrics["accuracy"]
    )
    epochs = {m.step for m in mlflow_client(store_uri(out)).get_metric_history(found.info.run_id, "val_accuracy")}
    assert len(epochs) == 3  # the epochs before and after the stop (the second one made twice), in one MLflow run


# --- detection: ultralytics' integrations -----------------------------------------------------------


def adlab_process(args: list[str], cwd: Path, yolo_config: Path) -> subprocess.CompletedProcess:
    """`adlab` as a user starts it: not under pytest (ultralytics' integrations stay quiet inside pytest
    and GitHub Actions), with a settings file of the user's that has every integration on."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "GITHUB_WORKFLOW", "RUNNER_OS", *MLFLOW_ENV)
    }
    env.update(YOLO_CONFIG_DIR=str(yolo_config), MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, "-m", "adlab", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def user_settings(tmp_path: Path) -> Path:
    """The user's ultralytics settings file, as ultralytics writes it, with every integration switched
    on (`yolo settings mlflow=True ...`) and its folders in tmp_path."""
    folder = tmp_path / "yolo-config"
    env = {**os.environ, "YOLO_CONFIG_DIR": str(folder)}
    subprocess.run([sys.executable, "-c", "import ultralytics.utils"], env=env, check=True, capture_output=True)
    path = folder / "Ultralytics" / "settings.json"
    settings = json.loads(path.read_text())
    assert {"mlflow", "tensorboard"} <= settings.keys()
    settings.update(
        {
            "runs_dir": str(tmp_path / "yolo-runs"),
            "datasets_dir": str(tmp_path / "yolo-datasets"),
            "weights_dir": str(tmp_path / "yolo-weights"),
            **dict.fromkeys(("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb"), True),
        }
    )
    path.write_text(json.dumps(settings, indent=2))
    return folder


def detect_run(tmp_path: Path, loggers: list[str]) -> Path:
    """A one-epoch detection run in a process of its own; the user's settings and working folder untouched."""
    from tests.detection.conftest import make_rectangles

    data_yaml = make_rectangles(tmp_path / "rects", n_train=8, n_val=4)
    config = tmp_path / "detect.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "task": "detect",
                "name": "boxes",
                "data": {"name": "yolo", "root": str(data_yaml), "image_size": 64},
                "model": {"name": "yolov8n"},
                "train": {"epochs": 1, "batch_size": 8, "loggers": loggers},
            }
        )
    )
    yolo_config = user_settings(tmp_path)
    (tmp_path / "cwd").mkdir()
    before = (yolo_config / "Ultralytics" / "settings.json").read_bytes()
    done = adlab_process(
        ["train", str(config), "--out", str(tmp_path / "run"), "--quiet"], tmp_path / "cwd", yolo_config
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (yolo_config / "Ultralytics" / "settings.json").read_bytes() == before, "the user's settings were written"
    assert not any((tmp_path / "cwd").iterdir()), sorted(p.name for p in (tmp_path / "cwd").iterdir())
    return tmp_path / "run"


detection = pytest.mark.requires("detect")


@detection
@pytest.mark.slow
def test_detection_with_loggers_off_logs_nothing_although_everything_is_installed_and_on(tmp_path):
    run = detect_run(tmp_path, [])
    assert (run / "metrics.json").is_file()
    logged = [
        p
        for p in tmp_path.rglob("*")
        if p.name in ("mlruns", "mlflow.db", "mlartifacts", "logs") or p.name.startswith("events.out.tfevents")
    ]
    assert not logged, logged
    assert not (tmp_path / "yolo-runs").exists()


@detection
@pytest.mark.slow
def test_detection_with_mlflow_and_tensorboard_logs_into_the_run_folder(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = detect_run(tmp_path, ["mlflow", "tensorboard"])
    metrics = json.loads((run / "metrics.json").read_text())
    client = mlflow_client(store_uri(run))
    found = only_run(client, "boxes")
    assert found.info.run_name == "run" and found.info.status == "FINISHED"
    assert (
        found.data.params["imgsz"] == "64" and found.data.params["train.batch_size"] == "8"
    )  # ultralytics' and adlab's
    assert 0 in {m.step for m in client.get_metric_history(found.info.run_id, "metrics/mAP50B")}  # ultralytics' epoch
    assert found.data.metrics["map50_torchmetrics"] == pytest.approx(metrics["map50_torchmetrics"])  # adlab's result
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id, "figures")}
    assert "figures/pr_curve.png" in artifacts and "figures/predictions.png" in artifacts
    events = list((run / "ultralytics").glob("events.out.tfevents*"))
    assert len(events) == 1
    accumulator = EventAccumulator(str(events[0]))
    accumulator.Reload()
    assert "metrics/mAP50(B)" in accumulator.Tags()["scalars"]
    assert not [p for p in tmp_path.rglob("mlruns")] and not (tmp_path / "yolo-runs").exists()


# --- the MLflow UI in a browser ---------------------------------------------------------------------

CHROMIUM = chromium_command(20000)  # the MLflow UI loads its runs by script


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, f"mlflow ui exited with {server.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"mlflow ui did not answer {url} within {seconds} s")


def page_text(dom: str) -> str:
    """The page's visible text, one cell or line per `|`-separated piece."""
    dom = re.sub(r"<(script|style)\b.*?</\1>", "", dom, flags=re.S)
    return re.sub(r"\s*\|[\s|]*", "|", html.unescape(re.sub(r"<[^>]+>", "|", dom)))


@pytest.mark.slow
@pytest.mark.requires("chromium", "mlflow-cli")
def test_the_mlflow_ui_shows_the_run_and_its_metric(tracked, tmp_path):
    """`mlflow ui --backend-store-uri` on the run's store, as docs/tracking.md says, opened in a real
    headless Chromium: the run's page names the run and shows its test accuracy."""
    run = tracked[0]
    found = only_run(mlflow_client(store_uri(run.path)), "tracked")
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "ui",
            "--backend-store-uri",
            store_uri(run.path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )  # its own process group: the uvicorn workers go with it
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", server)
        url = f"http://127.0.0.1:{port}/#/experiments/{found.info.experiment_id}/runs/{found.info.run_id}"
        browser = subprocess.run(
            [*CHROMIUM, f"--user-data-dir={tmp_path / 'profile'}", url],
            capture_output=True,
            text=True,
            timeout=180,
        )
        text = page_text(browser.stdout)
        assert f"|{run.path.name}|" in text, browser.stderr[-1500:]
        assert f"|accuracy|{run.metrics['accuracy']!r}|" in text, text[:3000]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=20)
    assert not [p for p in tmp_path.iterdir() if p.name not in ("profile",)], "mlflow ui wrote into its folder"
