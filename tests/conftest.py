"""Shared fixtures: small, fast digits runs trained once per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

FAST = {
    "data": {"name": "digits"},
    "model": {"name": "cnn", "conv_channels": [16, 32], "convs_per_block": 1, "hidden": [64]},
    "train": {"epochs": 3, "batch_size": 64, "lr": 0.003, "progress_bar": False},
}


def assert_matches_scikit_learn(m: dict, y, p) -> None:
    """The headline classification metrics equal scikit-learn's on the same labels and predictions."""
    from sklearn import metrics as skm

    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, p), abs=1e-6)
    assert m["mean_class_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, p), abs=1e-6)
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, p, average="macro"), abs=1e-6)
    assert m["macro_precision"] == pytest.approx(skm.precision_score(y, p, average="macro", zero_division=0), abs=1e-6)
    assert m["macro_recall"] == pytest.approx(skm.recall_score(y, p, average="macro"), abs=1e-6)
    assert m["confusion_matrix"] == skm.confusion_matrix(y, p).tolist()


def fast_config(**sections) -> dict:
    """FAST with some sections' keys replaced, e.g. fast_config(model={"freeze": True})."""
    import copy

    config = copy.deepcopy(FAST)
    for section, values in sections.items():
        if isinstance(values, dict):
            config.setdefault(section, {}).update(values)
        else:
            config[section] = values
    return config


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A finished classification run on digits (shared, read-only)."""
    import adlab

    return adlab.train(fast_config(), out=tmp_path_factory.mktemp("runs") / "digits", verbose=False)


@pytest.fixture(scope="session")
def digits_run_b(tmp_path_factory):
    """A second, different run on the same test set (for fusion)."""
    import adlab

    config = fast_config(train={"seed": 1, "epochs": 2})
    return adlab.train(config, out=tmp_path_factory.mktemp("runs") / "digits_b", verbose=False)
