"""Same seed, same numbers across versions: a few 1-epoch digits runs pinned to their metrics.

The determinism tests compare two runs of one checkout; these compare today's code with the numbers
it gave when the pins were taken, so a commit that changes results without meaning to (another order
of random draws, another split, a loss summed in another order) fails here instead of going unnoticed.

Every run trains on one thread (train.num_threads: 1), so the pins hold whatever the machine's core
count. The tolerance, RELATIVE below, is far above floating-point noise: one run on one thread against
two threads differs by about 1e-7 relatively (another order of the sums), while the change issue 28
asked about moved the DAE's test_mse by 3e-4. Counts of right answers (accuracy, the latent probes)
must match exactly.

Updating the pins, deliberately: when a change is meant to alter results (a fix, a new default, a
faster kernel that rounds differently), run
    python tests/test_pinned_metrics.py
which retrains these runs and prints the PINS dictionary; paste it below, and say in the commit
message that results change, by how much and why (docs/guarantees.md, "What may change results
between versions", lists such commits). Never loosen RELATIVE to make a failure go away.
"""

from __future__ import annotations

import json
import os

import pytest

torch = pytest.importorskip("torch")

PINNED_WITH_TORCH = "2.14"  # the pins are torch's numbers; a torch upgrade may change float rounding
RELATIVE = 1e-6

CLASSIFIER = {
    "data": {"name": "digits"},
    "model": {"name": "cnn", "cnn": {"conv_channels": [16, 32], "convs_per_block": 1, "hidden": [64]}},
    "train": {"epochs": 1, "batch_size": 64, "lr": 0.003, "num_threads": 1, "progress_bar": False},
}
DAE = {
    "task": "autoencode",
    "data": {"name": "digits"},
    "model": {
        "name": "dae",
        "autoencoder": {
            "latent_dim": 8,
            "conv_channels": [16, 32],
            "noise": "salt_pepper",
            "noise_strength": 0.2,
            "tsne_points": 100,
        },
    },
    "train": {"epochs": 1, "batch_size": 64, "lr": 0.003, "num_threads": 1, "progress_bar": False},
}
VAE = {
    "task": "autoencode",
    "data": {"name": "digits"},
    "model": {
        "name": "vae",
        "autoencoder": {
            "latent_dim": 8,
            "conv_channels": [16, 32],
            "beta": 1.0,
            "kl_warmup_epochs": 1,
            "tsne_points": 100,
        },
    },
    "train": {"epochs": 1, "batch_size": 64, "lr": 0.003, "num_threads": 1, "progress_bar": False},
}
RUNS = {
    "classifier-seed0": (CLASSIFIER, 0),
    "classifier-seed1": (CLASSIFIER, 1),
    "dae-seed0": (DAE, 0),
    "vae-seed2": (VAE, 2),
}
METRICS = {
    "classify": ("test_loss", "accuracy", "macro_f1"),
    "autoencode": (
        "test_mse",
        "test_bce",
        "test_mse_corrupted",
        "test_kl",
        "latent_knn_accuracy",
        "latent_linear_accuracy",
    ),
}
COUNTS = ("accuracy", "latent_knn_accuracy", "latent_linear_accuracy")  # fractions of the 360 test images

# Taken at 68b6f2d with torch 2.14.1 (python tests/test_pinned_metrics.py).
PINS = {
    "classifier-seed0": {
        "test_loss": 1.1919721364974976,
        "accuracy": 0.7472222447395325,
        "macro_f1": 0.7197014093399048,
        "num_test": 360,
    },
    "classifier-seed1": {
        "test_loss": 1.1704974174499512,
        "accuracy": 0.7916666865348816,
        "macro_f1": 0.7798669934272766,
        "num_test": 360,
    },
    "dae-seed0": {
        "test_mse": 0.09183482064141167,
        "test_bce": 0.5024090237087674,
        "test_mse_corrupted": 0.09461737738715278,
        "latent_knn_accuracy": 0.8861111111111111,
        "latent_linear_accuracy": 0.8361111111111111,
        "num_test": 360,
    },
    "vae-seed2": {
        "test_mse": 0.10155127843221029,
        "test_bce": 0.5256576114230685,
        "test_kl": 0.10690204832288953,
        "latent_knn_accuracy": 0.7777777777777778,
        "latent_linear_accuracy": 0.7333333333333333,
        "num_test": 360,
    },
}


def train(name: str, out) -> dict:
    import copy

    import adlab

    config, seed = RUNS[name]
    config = copy.deepcopy(config)
    config["train"]["seed"] = seed
    run = adlab.train(config, out=out, verbose=False)
    metrics = json.loads((run.path / "metrics.json").read_text())
    task = config.get("task", "classify")
    return {key: metrics[key] for key in METRICS[task] if key in metrics} | {"num_test": metrics.get("num_test", 360)}


@pytest.mark.parametrize("name", list(RUNS))
def test_a_seed_gives_the_pinned_numbers(name, tmp_path):
    if ".".join(torch.__version__.split(".")[:2]) != PINNED_WITH_TORCH:
        pytest.skip(f"pins taken with torch {PINNED_WITH_TORCH}, this is {torch.__version__}")
    got = train(name, tmp_path / name)
    pinned = PINS[name]
    assert set(got) == set(pinned), "metrics.json's keys changed: re-pin deliberately (see the module docstring)"
    for key, value in pinned.items():
        if key in COUNTS:  # one image more or less is a real change
            assert round(got[key] * got["num_test"]) == round(value * pinned["num_test"]), (name, key, got[key], value)
        else:
            assert got[key] == pytest.approx(value, rel=RELATIVE), (
                f"{name}: {key} {got[key]!r} != pinned {value!r}. If this change of results is meant, "
                "re-pin (see the module docstring) and say so in the commit message"
            )


if __name__ == "__main__":  # print fresh pins, to paste above when a change of results is deliberate
    import tempfile

    os.environ.setdefault("MPLBACKEND", "Agg")
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {name: train(name, os.path.join(tmp, name)) for name in RUNS}
    print(f"# torch {torch.__version__}")
    print("PINS = {")
    for name, values in fresh.items():
        print(f"    {name!r}: {{{', '.join(f'{k!r}: {v!r}' for k, v in values.items())}}},")
    print("}")
