"""adlab table: per-class accuracy as flat columns, unknown metric names refused."""

import json

import pytest

from adlab.errors import AdlabError
from adlab.run.table import metrics_table
from adlab.rundir import flat_metrics

METRICS = {
    "accuracy": 0.9,
    "per_class_accuracy": {"Car": 0.96, "Person": 0.82, "Cyclist": None},
    "confusion_matrix": [[1, 0], [0, 1]],
    "class_names": ["Car", "Person", "Cyclist"],
    "task": "classify",
    "early_stopped": False,
}


def test_flat_metrics_spreads_per_class_mappings_and_drops_lists_and_names():
    assert flat_metrics(METRICS) == {
        "accuracy": 0.9,
        "per_class_accuracy.Car": 0.96,
        "per_class_accuracy.Person": 0.82,
        "per_class_accuracy.Cyclist": None,
    }


@pytest.fixture
def run(tmp_path):
    path = tmp_path / "resnet18-finetune"
    path.mkdir()
    (path / "metrics.json").write_text(json.dumps(METRICS))
    return path


def test_per_class_accuracy_becomes_one_column_per_class(run):
    lines = metrics_table([run], ["accuracy", "per_class_accuracy"]).splitlines()
    assert (
        lines[0]
        == "| run | accuracy | per_class_accuracy.Car | per_class_accuracy.Person | per_class_accuracy.Cyclist |"
    )
    assert lines[2] == "| resnet18-finetune | 0.9000 | 0.9600 | 0.8200 | - |"
    assert metrics_table([run], ["per_class_accuracy.Person"]).splitlines()[2] == "| resnet18-finetune | 0.8200 |"


def test_an_unknown_metric_is_an_error_listing_the_known_ones(run):
    with pytest.raises(
        AdlabError, match=r"unknown metric 'acuracy' \(these runs have: accuracy, per_class_accuracy.Car"
    ):
        metrics_table([run], ["acuracy"])


def _run(folder, task, metrics):
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if task is not None:
        (folder / "config.yaml").write_text(f"task: {task}\n")
    return folder


def test_the_default_columns_are_those_of_each_runs_task(tmp_path):
    segment = _run(
        tmp_path / "unet",
        "segment",
        {"mean_iou": 0.5, "pixel_accuracy": 0.9, "mean_dice": 0.6, "train_seconds": 3.0, "scored_epoch": 2},
    )
    assert metrics_table([segment]).splitlines()[0] == (
        "| run | mean_iou | pixel_accuracy | mean_dice | train_seconds | scored_epoch |"
    )
    ae = _run(tmp_path / "ae", "autoencode", {"test_mse": 0.02, "train_seconds": 1.0})
    assert metrics_table([ae]).splitlines()[0] == "| run | test_mse | train_seconds |"  # what an AE measured
    # a run folder without config.yaml (written by hand) is read as the default task's, classify
    classify = _run(tmp_path / "cnn", None, {"accuracy": 0.9, "mean_class_accuracy": 0.9, "macro_f1": 0.9})
    assert metrics_table([classify]).splitlines()[0].startswith("| run | accuracy | mean_class_accuracy |")
    with pytest.raises(AdlabError, match="task 'painting' is not one of adlab's"):
        metrics_table([_run(tmp_path / "odd", "painting", {"accuracy": 1.0})])
