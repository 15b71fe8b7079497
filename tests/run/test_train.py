"""End-to-end classification runs on digits: the run directory contract and its numbers."""

import csv
import json

import numpy as np
import pytest
import torch
from tests.conftest import assert_matches_scikit_learn, fast_config

import adlab
from adlab.models.checkpoints import read_checkpoint

RUN_FILES = [
    "config.yaml",
    "env.json",
    "history.csv",
    "metrics.json",
    "predictions.csv",
    "checkpoints/best.ckpt",
    "checkpoints/last.ckpt",
    "figures/loss_curves.png",
    "figures/confusion_matrix.png",
    "figures/misclassified.png",
]


def test_run_directory_contract(digits_run):
    for name in RUN_FILES:
        assert (digits_run.path / name).is_file(), name
    assert not list(digits_run.path.rglob("*.tmp"))
    metrics = json.loads((digits_run.path / "metrics.json").read_text())
    for key in (
        "accuracy",
        "mean_class_accuracy",
        "macro_f1",
        "macro_precision",
        "macro_recall",
        "per_class_accuracy",
        "confusion_matrix",
        "class_names",
        "num_test",
        "train_seconds",
    ):
        assert key in metrics, key
    assert metrics["num_test"] == 360 and len(metrics["class_names"]) == 10
    env = json.loads((digits_run.path / "env.json").read_text())
    assert env["seed"] == 0 and env["torch"] == torch.__version__
    assert 0 < env["prepare_seconds"] < 600  # the data read and the model built, before "started"


def test_history_has_one_row_per_epoch(digits_run):
    with open(digits_run.path / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for row in rows:
        assert float(row["train_loss"]) > 0 and float(row["val_loss"]) > 0
        assert 0 <= float(row["val_accuracy"]) <= 1 and float(row["lr"]) == pytest.approx(0.003)
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])


def test_metrics_agree_with_scikit_learn_on_predictions_csv(digits_run):
    data = np.loadtxt(digits_run.path / "predictions.csv", delimiter=",", skiprows=1)
    y, p, probs = data[:, 1].astype(int), data[:, 2].astype(int), data[:, 3:]
    assert (probs.argmax(1) == p).all()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    m = digits_run.metrics
    assert_matches_scikit_learn(m, y, p)
    assert m["accuracy"] > 0.8  # three quick epochs already learn digits


def test_same_seed_same_metrics(digits_run, tmp_path):
    again = adlab.train(fast_config(), out=tmp_path / "again", verbose=False)
    for key in ("accuracy", "macro_f1", "test_loss", "confusion_matrix"):
        assert again.metrics[key] == digits_run.metrics[key], key


def test_checkpoint_is_self_describing_and_weights_only(digits_run):
    state, meta = read_checkpoint(digits_run.path / "checkpoints" / "best.ckpt")
    assert meta["task"] == "classify" and meta["data"]["class_names"] == [str(i) for i in range(10)]
    assert meta["config"]["model"]["name"] == "cnn"
    assert "features.0.weight" in state


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A digits run on classes 0-4 to transfer from."""
    config = fast_config(data={"name": "digits", "classes": [0, 1, 2, 3, 4]})
    return adlab.train(config, out=tmp_path_factory.mktemp("pre") / "pre", verbose=False)


def _conv_weights(state):
    return {k: v for k, v in state.items() if k.startswith("features") and v.dim() == 4}


def test_frozen_run_keeps_every_loaded_conv_weight_bit_identical(pretrained, tmp_path):
    config = fast_config(
        data={"name": "digits", "classes": [5, 6, 7, 8, 9], "train_per_class": 20},
        model={"weights": str(pretrained.path), "freeze": True},
    )
    run = adlab.train(config, out=tmp_path / "frozen", verbose=False)
    before, _ = read_checkpoint(pretrained.path)
    after, _ = read_checkpoint(run.path / "checkpoints" / "last.ckpt")
    convs = _conv_weights(before)
    assert convs
    for name, tensor in convs.items():
        assert torch.equal(after[name], tensor), name
    # batch-norm statistics of the frozen extractor stay too
    bn_means = [k for k in before if k.endswith("running_mean") and k.startswith("features")]
    assert bn_means and all(torch.equal(after[k], before[k]) for k in bn_means)
    head = [k for k in before if k.startswith("classifier") and k.endswith("weight")]
    assert head and all(not torch.equal(after[k], before[k]) for k in head)
    conv_params = sum(
        t.numel()
        for k, t in before.items()
        if k.startswith("features") and "running" not in k and "num_batches" not in k
    )
    assert run.metrics["trainable_parameters"] == run.metrics["parameters"] - conv_params


def test_finetune_run_changes_conv_weights(pretrained, tmp_path):
    config = fast_config(
        data={"name": "digits", "classes": [5, 6, 7, 8, 9], "train_per_class": 20},
        model={"weights": str(pretrained.path)},
    )
    run = adlab.train(config, out=tmp_path / "finetune", verbose=False)
    before, _ = read_checkpoint(pretrained.path)
    after, _ = read_checkpoint(run.path / "checkpoints" / "last.ckpt")
    changed = [name for name, t in _conv_weights(before).items() if not torch.equal(after[name], t)]
    assert len(changed) == len(_conv_weights(before))
    assert run.metrics["trainable_parameters"] == run.metrics["parameters"]


def test_schedulers_and_optimizers_run(tmp_path):
    for i, (opt, sched) in enumerate([("sgd", {"name": "step", "step_size": 1, "gamma": 0.5}), ("adamw", "onecycle")]):
        config = fast_config(
            train={"optimizer": opt, "scheduler": sched, "epochs": 2, "progress_bar": False, "weight_decay": 1e-4}
        )
        run = adlab.train(config, out=tmp_path / str(i), verbose=False)
        with open(run.path / "history.csv") as f:
            lrs = [float(r["lr"]) for r in csv.DictReader(f)]
        if opt == "sgd":
            assert lrs == pytest.approx([0.003, 0.0015])  # StepLR halves every epoch
        assert run.metrics["accuracy"] > 0.3


def test_early_stopping_stops(tmp_path):
    config = fast_config(train={"epochs": 50, "early_stopping_patience": 1, "lr": 0.05, "progress_bar": False})
    run = adlab.train(config, out=tmp_path / "es", verbose=False)
    assert run.metrics["epochs_trained"] < 50


def test_torchvision_net_with_augmentation_and_no_validation(tmp_path):
    config = fast_config(
        data={"name": "digits", "image_size": 32, "val_fraction": 0.0, "augment": {"crop_padding": 2}},
        model={"name": "resnet18"},
        train={"epochs": 1, "progress_bar": False},
    )
    run = adlab.train(config, out=tmp_path / "rn", verbose=False)
    assert (run.path / "checkpoints" / "best.ckpt").is_file()
    assert run.metrics["num_val"] == 0


def test_existing_run_folder_is_not_mixed(digits_run, tmp_path):
    from adlab.errors import AdlabError

    with pytest.raises(AdlabError, match="already exists"):
        adlab.train(fast_config(), out=digits_run.path, verbose=False)


@pytest.mark.slow
def test_shipped_digits_recipe_reaches_97_percent(tmp_path):
    run = adlab.train(
        "configs/digits_cnn.yaml", out=tmp_path / "recipe", verbose=False, overrides=["train.progress_bar=false"]
    )
    assert run.metrics["accuracy"] >= 0.97
