"""train.test_checkpoint (best | last), and what a finished run keeps of its checkpoints."""

import pytest
import torch
from tests.conftest import fast_config

import adlab
from adlab.models.checkpoints import resolve_checkpoint


def _keys(path):
    return set(torch.load(path, map_location="cpu", weights_only=True))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("scored")
    made = {}
    for name, train in {
        "best": {},
        "last-dropped": {"test_checkpoint": "last", "keep_last": False},
        "best-dropped": {"keep_last": False},
    }.items():
        made[name] = adlab.train(fast_config(train={"epochs": 2, "lr": 0.05, **train}), out=root / name, verbose=False)
    return made


def test_metrics_say_which_weights_and_which_epoch_were_scored(runs):
    best, last = runs["best"].metrics, runs["last-dropped"].metrics
    assert best["scored_checkpoint"] == "best" and best["scored_epoch"] == best["best_epoch"]
    assert last["scored_checkpoint"] == "last" and last["scored_epoch"] == last["epochs_trained"] == 2
    assert resolve_checkpoint(runs["last-dropped"].path).name == "last.ckpt"
    assert resolve_checkpoint(runs["best"].path).name == "best.ckpt"


def test_evaluate_scores_the_same_weights_the_run_was_scored_with(runs, tmp_path):
    for name in ("best", "last-dropped"):
        again = adlab.evaluate(runs[name].path, out=tmp_path / name, verbose=False)
        assert again["accuracy"] == pytest.approx(runs[name].metrics["accuracy"], abs=1e-9), name


def test_best_keeps_weights_without_optimizer_state_and_last_stays_whole(runs):
    folder = runs["best"].path / "checkpoints"
    assert "optimizer_states" not in _keys(folder / "best.ckpt") and "state_dict" in _keys(folder / "best.ckpt")
    assert "optimizer_states" in _keys(folder / "last.ckpt")  # to continue training
    assert (folder / "best.ckpt").stat().st_size < 0.6 * (folder / "last.ckpt").stat().st_size  # Adam: 2 moments


def test_keep_last_false_deletes_last_or_keeps_only_the_scored_weights(runs):
    assert not (runs["best-dropped"].path / "checkpoints" / "last.ckpt").exists()
    last = runs["last-dropped"].path / "checkpoints" / "last.ckpt"
    assert last.is_file() and "optimizer_states" not in _keys(last)


def test_detection_refuses_last_weights():
    from adlab.config import load_config
    from adlab.errors import ConfigError

    with pytest.raises(
        ConfigError,
        match=r"train.test_checkpoint: task detect takes only 'best' \(it is scored with ultralytics' best.pt\)",
    ):
        load_config(
            {
                "task": "detect",
                "data": {"name": "yolo", "root": "x.yaml"},
                "model": {"name": "yolov8n"},
                "train": {"test_checkpoint": "last"},
            }
        )
