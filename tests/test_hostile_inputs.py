"""Hostile inputs, round two (issue 28): tracking stores, predict's input files, weights files and their
provenance, and third-party noise, tried as a user who read only the docs would, through the real CLI.

Each refused case: exit 2, one `adlab: error:` line naming the file or variable, no traceback, and not
one file under the working folder created, changed or deleted (the `cli` fixture compares a checksum
listing before and after: a user's file named by a case sits in that folder so its bytes are compared
too). FIFOs live outside it (the listing would block reading them). The CIFAR reader's crafted batches
are in tests/data/test_cifar.py.
"""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import json
import os
import pickle
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch

from checks import FAST, grey_png

MLFLOW = ["--set", "train.loggers=[mlflow]"]
LIKE_DIGITS_RUN = [
    "--set",
    "train.epochs=1",
    "--set",
    "train.progress_bar=false",
    "--set",
    "train.batch_size=64",
    "--set",
    "model.cnn.conv_channels=[16,32]",
    "--set",
    "model.cnn.convs_per_block=1",
    "--set",
    "model.cnn.hidden=[64]",
]  # the network of the digits_run fixture (tests/conftest.py)
needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="needs adlab[track] (mlflow)")


@pytest.fixture
def config(cli_config):
    return cli_config  # tests/conftest.py


@pytest.fixture
def no_mlflow_env(monkeypatch):
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_ALLOW_FILE_STORE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- MLFLOW_TRACKING_URI at odd places ------------------------------------------------------------


@needs_mlflow
def test_mlflow_server_that_is_not_there_fails_fast_in_one_line(cli, config, no_mlflow_env):
    no_mlflow_env.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    started = time.monotonic()
    line = cli.refused("train", config, "--out", "r", *MLFLOW, *FAST, names=("MLFLOW_TRACKING_URI", "127.0.0.1:1"))
    assert time.monotonic() - started < 60  # MLflow alone: 7 retries with backoff, minutes
    assert "nothing answers" in line


@needs_mlflow
def test_a_tracking_uri_is_not_checked_when_mlflow_is_not_a_logger(cli, config, no_mlflow_env):
    no_mlflow_env.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    cli.succeeds("train", config, "--out", "r", "--quiet", *FAST, outputs=("r",))


class NotMlflow(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(404)
        self.end_headers()
        self.wfile.write(b"<html>a wiki</html>")

    do_POST = do_GET

    def log_message(self, *args):
        pass


@needs_mlflow
def test_a_web_server_that_is_not_mlflow_is_one_line_at_once(cli, config, no_mlflow_env):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotMlflow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        no_mlflow_env.setenv("MLFLOW_TRACKING_URI", uri)
        started = time.monotonic()
        line = cli.refused("train", config, "--out", "r", *MLFLOW, *FAST, names=(uri,))
        assert time.monotonic() - started < 60 and "not an MLflow server" in line
    finally:
        server.shutdown()


@needs_mlflow
def test_a_server_that_takes_the_connection_but_never_answers_fails_in_seconds(cli, config, no_mlflow_env):
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections are taken (the kernel's backlog) and never answered
    try:
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        no_mlflow_env.setenv("MLFLOW_TRACKING_URI", uri)
        started = time.monotonic()
        line = cli.refused("train", config, "--out", "r", *MLFLOW, *FAST, names=(uri,))
        assert time.monotonic() - started < 60 and "no answer" in line, line
    finally:
        silent.close()


def user_files(root: Path) -> dict[str, Path]:
    """A user's files a tracking URI may be pointed at (their bytes are in the cli fixture's listing)."""
    (root / "thesis").mkdir()
    (root / "thesis" / "chapter1.tex").write_text("my thesis\n")
    (root / "x.db").write_text("not a database\n")
    (root / "thesis.txt").write_text("my notes\n")
    with sqlite3.connect(root / "contacts.db") as db:  # a SQLite database of the user's, not MLflow's
        db.execute("CREATE TABLE people (name TEXT)")
        db.execute("INSERT INTO people VALUES ('ada')")
    db.close()
    (root / "empty").mkdir()
    return {
        "folder": root / "thesis",
        "text": root / "x.db",
        "thesis": root / "thesis.txt",
        "sqlite": root / "contacts.db",
        "empty": root / "empty",
    }


ODD_URIS = {
    # (the URI given a user's files, MLFLOW_ALLOW_FILE_STORE, what the line says)
    "a user folder": (lambda f: str(f["folder"]), None, "folder store"),
    "a user folder, as a file: URI": (lambda f: f["folder"].as_uri(), None, "folder store"),
    "a user folder with the file store allowed": (lambda f: str(f["folder"]), "true", "folder with other files"),
    "a text file named x.db": (lambda f: f"sqlite:///{f['text']}", None, "not a SQLite database"),
    "a thesis as a SQLite store": (lambda f: f"sqlite:///{f['thesis']}", None, "not a SQLite database"),
    "a user's own SQLite database": (lambda f: f"sqlite:///{f['sqlite']}", None, "not an MLflow store"),
    "a folder as a SQLite file": (lambda f: f"sqlite:///{f['empty']}", None, "a folder, not a SQLite file"),
    "a SQLite file under a file": (lambda f: f"sqlite:///{f['thesis']}/m.db", None, "cannot be read|not a folder"),
    "an in-memory store": (lambda f: "sqlite:///:memory:", None, "in-memory"),
    "sqlite with no path": (lambda f: "sqlite://", None, "in-memory"),
    "an unknown scheme": (lambda f: "ftp://example.org/store", None, "no tracking store for 'ftp:'"),
    "a port out of range": (lambda f: "http://127.0.0.1:99999", None, "port"),
    "an unknown host": (lambda f: "http://no-such-host.invalid:5000", None, "not known"),
    "spaces around it": (lambda f: " sqlite:///m.db", None, "spaces or control characters"),
    "a newline in it": (lambda f: "sqlite:///m.db\nx", None, "spaces or control characters"),
    "a home folder that is never expanded": (lambda f: "sqlite:///~/mlflow.db", None, "'~' is not expanded"),
    "a home folder store": (lambda f: "~/mlruns", "true", "'~' is not expanded"),
    "a NUL byte in the path": (lambda f: "sqlite:///m%00.db", None, "cannot be read"),
    "databricks without its credentials": (lambda f: "databricks", None, "credential"),
    "a host in a file: URI": (lambda f: "file://otherhost/share/mlruns", "true", "not a local folder"),
    "a database server without its driver": (
        lambda f: "mssql+nosuchdriver://u@127.0.0.1:1/db",
        None,
        "cannot use this database URI",
    ),
}


@needs_mlflow
@pytest.mark.parametrize("case", sorted(ODD_URIS))
def test_odd_tracking_uris_are_one_line_and_touch_no_file(cli, config, no_mlflow_env, case):
    uri, allow, reason = ODD_URIS[case]
    files = user_files(cli.root)
    before = {name: sha256(p) for name, p in files.items() if p.is_file()}
    no_mlflow_env.setenv("MLFLOW_TRACKING_URI", uri(files))
    if case.startswith("databricks"):  # no credentials of the developer's in the way
        no_mlflow_env.setenv("HOME", str(cli.root.parent))
        for name in [k for k in os.environ if k.startswith("DATABRICKS_")]:
            no_mlflow_env.delenv(name)
    if allow:
        no_mlflow_env.setenv("MLFLOW_ALLOW_FILE_STORE", allow)
    line = cli.refused("train", config, "--out", "r", *MLFLOW, *FAST, names=("MLFLOW_TRACKING_URI",))
    assert any(part in line for part in reason.split("|")), line
    assert {name: sha256(p) for name, p in files.items() if p.is_file()} == before


@needs_mlflow
def test_a_fifo_as_the_sqlite_store_is_refused_without_opening_it(cli, config, no_mlflow_env, tmp_path):
    fifo = tmp_path / "pipes" / "mlflow.db"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    no_mlflow_env.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{fifo}")
    line = cli.refused("train", config, "--out", "r", *MLFLOW, *FAST, names=(str(fifo),))
    assert "a named pipe" in line


@needs_mlflow
def test_the_store_check_accepts_what_mlflow_should_use(tmp_path, monkeypatch):
    """A new file (MLflow makes it), an empty one, an MLflow store; a new or MLflow-made folder with the
    file store allowed."""
    from adlab.tasks.lightning.loggers import check_tracking_store

    check_tracking_store(None)
    check_tracking_store("")
    check_tracking_store(f"sqlite:///{tmp_path / 'new' / 'deeper' / 'mlflow.db'}")
    (tmp_path / "empty.db").touch()
    check_tracking_store(f"sqlite:///{tmp_path / 'empty.db'}")
    with sqlite3.connect(tmp_path / "store.db") as db:
        for table in ("experiments", "runs", "alembic_version"):
            db.execute(f"CREATE TABLE {table} (x)")
    db.close()
    before = sha256(tmp_path / "store.db")
    check_tracking_store(f"sqlite:///{tmp_path / 'store.db'}?timeout=30")
    assert sha256(tmp_path / "store.db") == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "empty.db",
        "store.db",
    ]  # read-only: no journal beside it, no folder made
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    check_tracking_store(str(tmp_path / "mlruns"))
    (tmp_path / "old" / ".trash").mkdir(parents=True)
    (tmp_path / "old" / "0").mkdir()
    check_tracking_store((tmp_path / "old").as_uri())


# --- adlab predict: only regular files are opened -------------------------------------------------


@pytest.fixture
def pipes(tmp_path) -> Path:
    folder = tmp_path / "pipes"
    folder.mkdir(exist_ok=True)
    return folder


def test_a_fifo_named_like_an_image_is_refused_without_blocking(cli, digits_run, pipes):
    os.mkfifo(pipes / "x.png")
    line = cli.refused("predict", digits_run.path, pipes / "x.png", names=(str(pipes / "x.png"),))
    assert "named pipe" in line


@pytest.mark.parametrize("case", ["folder", "device", "symlink loop", "link to a fifo"])
def test_things_that_are_not_image_files_are_named(cli, digits_run, pipes, case):
    if case == "folder":
        (cli.root / "x.png").mkdir()
        path, reason = "x.png", "a folder, not an image file"
    elif case == "device":
        path, reason = "/dev/zero", "a device, not an image file"
    elif case == "symlink loop":
        (cli.root / "a.png").symlink_to("b.png")
        (cli.root / "b.png").symlink_to("a.png")
        path, reason = "a.png", "symbolic links"
    else:
        os.mkfifo(pipes / "p")
        (cli.root / "y.png").symlink_to(pipes / "p")
        path, reason = "y.png", "named pipe"
    line = cli.refused("predict", digits_run.path, path, names=(path,))
    assert reason in line


@pytest.mark.parametrize("what", ["fifo", "device"])
def test_a_checkpoint_that_is_not_a_regular_file_is_refused_without_blocking(cli, config, pipes, what):
    grey_png(cli.root / "x.png")
    if what == "fifo":
        os.mkfifo(pipes / "w.ckpt")
        path = str(pipes / "w.ckpt")
    else:
        path = "/dev/zero"
    cli.refused("predict", path, "x.png", names=(path,))
    cli.refused("train", config, "--out", "r", "--set", f"model.weights={path}", *FAST, names=(path,))


# --- weights files: crafted ones, and the sha256 of every one a run loads ---------------------------


def test_fine_tuning_from_a_local_checkpoint_records_its_sha256(cli, config, digits_run):
    best = digits_run.path / "checkpoints" / "best.ckpt"
    expected = sha256(best)
    for source, name in ((digits_run.path, "from_run"), (best, "from_file")):
        out = cli.succeeds(
            "train", config, "--out", name, "--set", f"model.weights={source}", *LIKE_DIGITS_RUN, outputs=(name,)
        )
        weights = json.loads((cli.root / name / "env.json").read_text())["weights"]
        assert weights["sha256"] == expected and weights["file"] == str(best.resolve())
        assert weights["source"] == str(source)
        line = next(line for line in out.splitlines() if line.startswith("weights: loaded"))
        assert f"sha256 {expected[:12]}" in line and str(source) in line


def test_a_legacy_torch_save_file_as_weights_loads_quietly_with_its_sha256(cli, config, digits_run):
    legacy = cli.root / "legacy.ckpt"
    checkpoint = torch.load(digits_run.path / "checkpoints" / "best.ckpt", weights_only=True)
    torch.save(checkpoint, legacy, _use_new_zipfile_serialization=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli.succeeds(
            "train",
            config,
            "--out",
            "r",
            "--quiet",
            "--set",
            f"model.weights={legacy}",
            *LIKE_DIGITS_RUN,
            outputs=("r",),
        )
    assert not [w for w in caught if "torch" in str(w.filename)], [str(w.message) for w in caught]
    assert json.loads((cli.root / "r" / "env.json").read_text())["weights"]["sha256"] == sha256(legacy)


class RunsCode:
    def __reduce__(self):
        return (print, ("code ran",))


CRAFTED_WEIGHTS = {
    # (bytes of the file, what the line says)
    "a raw pickle (protocol 4)": (lambda: pickle.dumps({"state_dict": {}}, protocol=4), "a plain pickle"),
    "a raw pickle with code": (lambda: pickle.dumps({"x": RunsCode()}, protocol=2), "refused"),
    "a zip that is not torch's": (lambda: b"PK\x05\x06" + b"\0" * 18, "not a checkpoint"),
    "random bytes": (lambda: os.urandom(4096), "not a"),
    "an empty file": (lambda: b"", "not a"),
    "a list": (lambda: _torch_bytes([torch.zeros(2)]), "expected a dict of tensors"),
    "a dict without tensors": (lambda: _torch_bytes({"state_dict": {"a": 1}}), "holds no tensors"),
    "tensors of another network": (
        lambda: _torch_bytes({"state_dict": {"x.weight": torch.zeros(3, 3)}}),
        "no tensor of the checkpoint fits",
    ),
    "the same network, other shapes": (
        lambda: _torch_bytes({"state_dict": {"features.0.weight": torch.zeros(3, 1, 3, 3)}}),
        "the same layers with other shapes",
    ),
}


def _torch_bytes(obj) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("case", sorted(CRAFTED_WEIGHTS))
def test_crafted_weights_files_are_one_line_without_torch_noise(cli, config, digits_run, case, capsys):
    make, reason = CRAFTED_WEIGHTS[case]
    (cli.root / "w.ckpt").write_bytes(make())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = cli.refused("train", config, "--out", "r", "--set", "model.weights=w.ckpt", *FAST, names=("w.ckpt",))
        assert reason in line
        if case.startswith("a raw pickle") or case in ("random bytes", "an empty file", "a list"):
            grey_png(cli.root / "x.png")
            line = cli.refused("predict", "w.ckpt", "x.png", names=("w.ckpt",))
    assert not caught, [str(w.message)[:200] for w in caught]
    assert "code ran" not in capsys.readouterr().out
    assert "add_safe_globals" not in line  # torch's advice would run the file's code


def test_a_huge_sparse_weights_file_is_refused_without_reading_it_whole(cli, config, tmp_path):
    big = tmp_path / "big.ckpt"
    with open(big, "wb") as handle:
        handle.truncate(6 << 30)
    started = time.monotonic()
    cli.refused("train", config, "--out", "r", "--set", f"model.weights={big}", *FAST, names=(str(big),))
    assert time.monotonic() - started < 120


def test_a_crafted_pickle_in_torch_hubs_cache_is_one_line_without_torch_noise(cli, config, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(pickle.dumps({"x": RunsCode()}, protocol=4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = cli.refused(
            "train",
            config,
            "--out",
            "r",
            "--set",
            "model.name=resnet18",
            "--set",
            "model.weights=imagenet",
            "--set",
            "data.image_size=32",
            *FAST[:6],
            names=(str(cached),),
        )
    assert not caught, [str(w.message)[:200] for w in caught]
    assert "add_safe_globals" not in line


# --- CIFAR batches through the CLI (the reader's own cases: tests/data/test_cifar.py) ---------------


def cifar_config(cli) -> Path:
    from standins.cifar import write_cifar10

    write_cifar10(cli.root / "cifar", per_batch=10)
    path = cli.root / "cifar.yaml"
    path.write_text(
        "data: {name: cifar10, root: cifar, verify: false, download: false}\n"
        "train: {epochs: 1, progress_bar: false, batch_size: 32}\n"
        "model: {cnn: {conv_channels: [8], convs_per_block: 1, hidden: [16]}}\n"
    )
    return path


def test_a_cifar_batch_asking_for_gigabytes_is_one_line_through_the_cli(cli):
    config = cifar_config(cli)
    reconstruct = __import__("numpy").zeros(1).__reduce__()[0]

    class Bomb:
        def __reduce__(self):
            return (reconstruct, (__import__("numpy").ndarray, (1_500_000_000,), b"B"))

    batch = cli.root / "cifar" / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(pickle.dumps({"data": Bomb(), "labels": []}, protocol=4))
    line = cli.refused("train", config, "--out", "r", names=("data_batch_3",))
    assert "1,500,000,000 bytes" in line


def test_a_mathtext_class_name_in_batches_meta_trains_and_is_drawn_as_written(cli):
    config = cifar_config(cli)
    names = ["f$^$"] + [f"c{i}" for i in range(9)]
    (cli.root / "cifar" / "cifar-10-batches-py" / "batches.meta").write_bytes(
        pickle.dumps({b"label_names": [n.encode() for n in names]}, protocol=2)
    )
    cli.succeeds("train", config, "--out", "r", "--quiet", outputs=("r",))
    assert json.loads((cli.root / "r" / "metrics.json").read_text())["class_names"][0] == "f$^$"
    assert (cli.root / "r" / "figures" / "confusion_matrix.png").is_file()


# --- third-party noise ----------------------------------------------------------------------------


def adlab_process(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """`adlab` started as a user starts it (warnings reach stderr: no pytest capturing them)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PYTEST_"))}
    environment.update(MPLBACKEND="Agg", **env)
    return subprocess.run(
        [sys.executable, "-m", "adlab", *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=600
    )


def test_srun_on_the_path_prints_no_slurm_hint(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    config = tmp_path / "c.yaml"
    config.write_text(
        "data: {name: digits}\ntrain: {epochs: 1, progress_bar: false}\n"
        "model: {cnn: {conv_channels: [8], convs_per_block: 1, hidden: [16]}}\n"
    )
    done = adlab_process(
        ["train", str(config), "--out", str(tmp_path / "r")],
        tmp_path,
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "The `srun` command" not in done.stdout + done.stderr, done.stderr[-3000:]
    assert done.stderr == "", done.stderr[-3000:]  # nothing else from Lightning either


def test_the_cluster_environment_is_lightnings_own_only_under_a_real_launcher(monkeypatch):
    from lightning.fabric.plugins.environments import LightningEnvironment

    from adlab.tasks.lightning import _cluster_environment

    for name in [k for k in os.environ if k.startswith(("SLURM_", "LSB_", "TORCHELASTIC", "GROUP_RANK"))]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("ADLAB_STUDY_WORKER", raising=False)
    assert [type(p) for p in _cluster_environment()] == [LightningEnvironment]
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    assert _cluster_environment() == []  # really under srun: Lightning's SLURMEnvironment
    monkeypatch.setenv("SLURM_JOB_NAME", "interactive")
    assert [type(p) for p in _cluster_environment()] == [LightningEnvironment]
    monkeypatch.setenv("ADLAB_STUDY_WORKER", "1")
    monkeypatch.delenv("SLURM_JOB_NAME")
    assert [type(p) for p in _cluster_environment()] == [LightningEnvironment]  # a worker is its own


@pytest.mark.requires("detect")
def test_ultralytics_writes_no_settings_into_a_fresh_config_dir_and_prints_no_banner(tmp_path):
    fresh = tmp_path / "yolo-config"
    fresh.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    code = "from adlab.tasks.detect.train import _import_ultralytics; _import_ultralytics()"
    environment = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME")}
    environment.update(YOLO_CONFIG_DIR=str(fresh), HOME=str(home))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert not any(fresh.iterdir()), sorted(fresh.rglob("*"))
    assert "Ultralytics Settings" not in done.stdout + done.stderr and done.stderr == "", done.stderr[-2000:]
    assert (home / ".cache" / "adlab" / "ultralytics" / "Ultralytics" / "settings.json").is_file()


@pytest.mark.requires("detect")
def test_a_users_own_ultralytics_settings_are_read_where_they_are(tmp_path):
    folder = tmp_path / "yolo-config" / "Ultralytics"
    folder.mkdir(parents=True)
    code = (
        "import json, os; from adlab.tasks.detect.train import _import_ultralytics; _import_ultralytics(); "
        "from ultralytics.utils import SETTINGS_FILE; print(SETTINGS_FILE)"
    )
    environment = {**os.environ, "YOLO_CONFIG_DIR": str(tmp_path / "yolo-config"), "HOME": str(tmp_path)}
    subprocess.run(
        [sys.executable, "-c", "import ultralytics.utils"],
        env=environment,
        check=True,
        capture_output=True,
        timeout=300,
    )  # the user's settings file, as ultralytics makes it
    before = (folder / "settings.json").read_bytes()
    done = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(folder / "settings.json")
    assert (folder / "settings.json").read_bytes() == before
