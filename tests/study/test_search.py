"""Optuna searches: samplers, k-fold CV, pruning, resuming from the SQLite storage, the final test."""

import csv

import pytest
import yaml

from adlab.errors import ConfigError
from adlab.study.search import load_search, run_search

BASE = {
    "data": {"name": "digits"},
    "model": {"name": "cnn", "conv_channels": [8, 16], "convs_per_block": 1, "hidden": [32]},
    "train": {"epochs": 2, "batch_size": 64},
}


def write(tmp_path, **spec):
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump({"config": BASE, **spec}))
    return path


@pytest.mark.slow
def test_cross_validated_search_resumes_and_retrains_the_best(tmp_path):
    space = {"train.lr": {"low": 0.001, "high": 0.01, "log": True}}
    path = write(tmp_path, sampler="random", trials=2, cv_folds=3, space=space, name="cv")
    out = tmp_path / "out"
    result = run_search(path, out=out, verbose=False)
    assert result["trials_complete"] == 2 and len(result["fold_scores"]) == 3
    assert result["best_value"] == pytest.approx(sum(result["fold_scores"]) / 3)
    assert 0.001 <= result["best_params"]["train.lr"] <= 0.01
    assert (out / "trials" / "0000" / "fold2" / "metrics.json").is_file()
    final = yaml.safe_load((out / "final" / "config.yaml").read_text())
    assert final["data"]["val_fraction"] == 0.0 and final["train"]["lr"] == result["best_params"]["train.lr"]
    assert result["final_test"]["num_test"] == 360
    # resume from the SQLite storage: two more trials, not four
    path = write(tmp_path, sampler="random", trials=4, cv_folds=3, space=space, name="cv")
    result = run_search(path, out=out, verbose=False)
    with open(out / "trials.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    assert result["trials_complete"] == 4


def test_grid_search_with_pruning(tmp_path):
    space = {"train.optimizer": {"choices": ["adam", "sgd"]}, "train.lr": {"choices": [0.003, 0.0001]}}
    path = write(tmp_path, sampler="grid", trials=4, space=space, pruning=True)
    result = run_search(path, out=tmp_path / "grid", verbose=False)
    assert result["trials_complete"] + result["trials_pruned"] == 4
    assert result["best_params"]["train.lr"] == 0.003  # 1e-4 learns almost nothing in two epochs


def test_bad_search_files(tmp_path):
    with pytest.raises(ConfigError, match="grid sampler needs choices"):
        load_search(write(tmp_path, sampler="grid", space={"train.lr": {"low": 0.1, "high": 0.2}}))
    with pytest.raises(ConfigError, match="space.train.lrr: unknown key"):
        load_search(write(tmp_path, space={"train.lrr": {"low": 0.1, "high": 0.2}}))
    with pytest.raises(ConfigError, match="space.train.lr: low"):
        load_search(write(tmp_path, space={"train.lr": {"low": 0.2, "high": 0.1}}))
    with pytest.raises(ConfigError, match="space.train.optimizer"):
        load_search(write(tmp_path, space={"train.optimizer": {"choices": ["adam", "rmsprop"]}}))


@pytest.mark.slow
def test_a_killed_search_resumes_and_redoes_the_interrupted_trial(tmp_path, capsys):
    import signal
    import subprocess
    import sys
    import time

    import optuna

    space = {"train.lr": {"low": 0.001, "high": 0.01, "log": True}}
    path = write(tmp_path, sampler="random", trials=3, space=space, name="killed", seed=1)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from adlab.cli import main; sys.exit(main())",
            "search",
            str(path),
            "--out",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not (out / "trials" / "0001" / "history.csv").is_file() and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # part-way through trial 1
    process.wait()
    assert not (out / "best.yaml").exists()

    result = run_search(path, out=out, verbose=True)
    assert "trial 1 was interrupted; its settings are tried again" in capsys.readouterr().out
    assert result["trials_complete"] == 3
    study = optuna.load_study(study_name="killed", storage=f"sqlite:///{out / 'search.db'}")
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert [t.number for t in failed] == [1]
    retried = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.number > 1]
    assert failed[0].params in [t.params for t in retried]
