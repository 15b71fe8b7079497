"""Interrupted runs: a real `adlab train` process is stopped part-way (kill -9, SIGTERM, Ctrl-C),
then `adlab train --resume` finishes it with exactly the metrics of an uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from adlab.cli import main

EPOCHS = 24
CONFIG = {
    "data": {"name": "digits", "augment": {"crop_padding": 1}},  # augmentation: the RNG state must resume too
    "model": {"name": "cnn", "conv_channels": [16, 32], "convs_per_block": 1, "hidden": [64], "dropout": 0.2},
    "train": {"epochs": EPOCHS, "batch_size": 64, "lr": 0.003, "scheduler": "cosine", "progress_bar": False},
}
TIMING = ("train_seconds",)


def adlab(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from adlab.cli import main; sys.exit(main())", *args]


# A child inherits SIGINT ignored when pytest's process ignores it (started as a background job of a shell
# without job control, as CI may start the suite), and Python then installs no Ctrl-C handler: the run never
# saw the test's Ctrl-C and finished (CI, exit 0). The interrupted run takes Ctrl-C as a foreground job does.
FOREGROUND = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "


def adlab_in_foreground(*args: str) -> list[str]:
    command = adlab(*args)
    command[2] = FOREGROUND + command[2]
    return command


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("resume") / "cfg.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """Every run of these comparisons is its own process (same threads, no state left by other tests)."""
    return subprocess.run(adlab(*args), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def uninterrupted(config_file) -> dict:
    run = config_file.parent / "full"
    assert run_cli("train", str(config_file), "--out", str(run), "--quiet").returncode == 0
    return json.loads((run / "metrics.json").read_text())


def history_rows(run: Path) -> int:
    try:
        return max(0, len((run / "history.csv").read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def interrupt(config_file: Path, run: Path, sig: int, after_epochs: int = 2) -> subprocess.CompletedProcess:
    process = subprocess.Popen(
        adlab_in_foreground("train", str(config_file), "--out", str(run)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while history_rows(run) < after_epochs and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be stopped: nothing would be tested"
    process.send_signal(sig)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def assert_same_result(run: Path, uninterrupted: dict) -> None:
    resumed = json.loads((run / "metrics.json").read_text())
    assert {k: v for k, v in resumed.items() if k not in TIMING} == {
        k: v for k, v in uninterrupted.items() if k not in TIMING
    }
    assert history_rows(run) == EPOCHS


def test_resume_after_kill_9_gives_the_uninterrupted_metrics(config_file, uninterrupted, tmp_path):
    run = tmp_path / "run"
    killed = interrupt(config_file, run, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert not (run / "metrics.json").exists(), "the run finished before it was killed: nothing was tested"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert run_cli("train", "--resume", str(run), "--quiet").returncode == 0
    assert_same_result(run, uninterrupted)
    assert not list(run.rglob(".*.tmp")), "temporary files left behind"


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "interrupted")])
def test_resume_after_sigterm_or_ctrl_c(config_file, uninterrupted, tmp_path, sig, code, word):
    run = tmp_path / "run"
    stopped = interrupt(config_file, run, sig)
    assert stopped.returncode == code, stopped.stderr
    last = stopped.stderr.strip().splitlines()[-1]
    assert last.startswith(f"adlab: {word} after ") and f"adlab train --resume {run}" in last
    assert "Traceback" not in stopped.stderr
    assert not (run / "metrics.json").exists()
    assert run_cli("train", "--resume", str(run), "--quiet").returncode == 0
    assert_same_result(run, uninterrupted)


def test_resume_of_a_finished_run_changes_nothing(config_file, uninterrupted, capsys):
    run = config_file.parent / "full"
    before = (run / "metrics.json").stat().st_mtime_ns
    assert main(["train", "--resume", str(run)]) == 0
    assert "already finished" in capsys.readouterr().out
    assert (run / "metrics.json").stat().st_mtime_ns == before


def test_resume_needs_a_run_folder_and_nothing_else(config_file, tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "not an adlab run folder" in capsys.readouterr().err
    assert main(["train", str(config_file), "--resume", str(tmp_path)]) == 2
    assert "--resume RUN continues a run as it was configured" in capsys.readouterr().err


def test_resume_with_an_edited_config_is_a_one_line_error(config_file, tmp_path, capsys):
    run = tmp_path / "run"
    killed = interrupt(config_file, run, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL and (run / "checkpoints" / "last.ckpt").is_file()
    edited = yaml.safe_load((run / "config.yaml").read_text())
    edited["model"]["cnn"]["hidden"] = [32]  # another shape for the checkpoint's weights
    (run / "config.yaml").write_text(yaml.safe_dump(edited))
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.yaml: edited since the run started (model.cnn.hidden: [64] -> [32])" in err[-1]
    assert not (run / "metrics.json").exists()


def flat_model(config: dict) -> dict:
    """A config as adlab recorded it before the model families: every model setting directly under
    `model` (a cnn run: the cnn's values for the keys both families have)."""
    old = dict(config)
    model = dict(config["model"])
    cnn, autoencoder = model.pop("cnn"), model.pop("autoencoder")
    old["model"] = {**model, **autoencoder, **cnn}
    return old


def test_check_config_unchanged_reads_a_config_recorded_before_the_families(tmp_path):
    from adlab import ownership
    from adlab.config import load_config
    from adlab.errors import ConfigError
    from adlab.run.resume import check_config_unchanged

    config = load_config(CONFIG, notices=False).to_dict()
    ownership.write_marker(tmp_path, "run", config=flat_model(config))
    check_config_unchanged(tmp_path, config)  # the same settings, recorded the old way: no error
    edited = load_config(config, ["model.cnn.dropout=0.5"]).to_dict()
    with pytest.raises(ConfigError, match=r"edited since the run started \(model\.cnn\.dropout: 0\.2 -> 0\.5\)"):
        check_config_unchanged(tmp_path, edited)


def test_an_interrupted_run_made_before_the_families_resumes(config_file, uninterrupted, tmp_path):
    """config.yaml, the marker and the checkpoints of an old run folder all hold the flat config."""
    import torch

    from adlab import ownership

    run = tmp_path / "run"
    killed = interrupt(config_file, run, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL and not (run / "metrics.json").exists()
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert "cnn" in config["model"]
    (run / "config.yaml").write_text(yaml.safe_dump(flat_model(config), sort_keys=False))
    record = {k: v for k, v in ownership.read_marker(run).items() if k not in ("kind", "adlab")}
    ownership.write_marker(run, "run", **{**record, "config": flat_model(record["config"])})
    for ckpt in (run / "checkpoints").glob("*.ckpt"):
        saved = torch.load(ckpt, weights_only=False)
        saved["adlab"]["config"] = flat_model(saved["adlab"]["config"])
        torch.save(saved, ckpt)
    resumed = run_cli("train", "--resume", str(run), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert "notice" not in resumed.stderr  # a folder adlab wrote: migrated silently
    assert_same_result(run, uninterrupted)


def test_a_ctrl_c_in_this_process_leaves_its_ctrl_c_handler_as_it_was(tmp_path, monkeypatch):
    """Lightning ignores SIGINT while it shuts down after a Ctrl-C and puts the handler back at teardown: after an
    interrupted adlab.train a notebook's kernel can still be interrupted (a guard against a Lightning change)."""
    from tests.conftest import fast_config

    import adlab
    from adlab.errors import Interrupted
    from adlab.tasks.lightning.callbacks import HistoryWriter

    def ctrl_c(self, trainer, pl_module):
        raise KeyboardInterrupt

    monkeypatch.setattr(HistoryWriter, "on_train_epoch_end", ctrl_c)
    # Python's own handler, as a terminal or a notebook kernel has it: a suite started as a background job of
    # a script inherits SIGINT ignored
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(Interrupted, match="interrupted after 0 of"):
            adlab.train(fast_config(train={"epochs": 3}), out=tmp_path / "run", verbose=False)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, outer)
