"""A study folder made by hand (no training), for the report's tests: a 2 x 2 grid (lr x scheduler)
with two seeds where lr=0.1 collapses, lr=0.01 with step is best by far, and one run never finished."""

import json

import numpy as np

from adlab.study.report import write_report
from adlab.study.spec import load_study

CLASSES = ["cat", "dog", "car"]


def _run(folder, accuracy_by_class: list[float], n_per_class=60, seed=0, epochs=3, collapse=False):
    """A finished classification run: metrics.json, history.csv, predictions.csv, config.yaml."""
    rng = np.random.default_rng(seed + int(accuracy_by_class[0] * 1000))
    y_true = np.repeat(np.arange(3), n_per_class)
    y_pred = np.zeros_like(y_true) if collapse else y_true.copy()
    if not collapse:
        for c, accuracy in enumerate(accuracy_by_class):
            idx = np.flatnonzero(y_true == c)
            wrong = rng.choice(idx, int(round((1 - accuracy) * len(idx))), replace=False)
            y_pred[wrong] = (c + 1) % 3
    matrix = np.zeros((3, 3), dtype=int)
    np.add.at(matrix, (y_true, y_pred), 1)
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("task: classify\n")
    metrics = {
        "accuracy": float((y_true == y_pred).mean()),
        "mean_class_accuracy": float((y_true == y_pred).mean()),
        "per_class_accuracy": {name: float(matrix[i, i] / matrix[i].sum()) for i, name in enumerate(CLASSES)},
        "confusion_matrix": matrix.tolist(),
        "class_names": CLASSES,
        "train_seconds": 1.0,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    rows = ["epoch,train_loss,val_loss,val_accuracy"]
    rows += [f"{e},{1.0 / e},{1.2 / e},{0.5 + 0.1 * e}" for e in range(1, epochs + 1)]
    (folder / "history.csv").write_text("\n".join(rows) + "\n")
    lines = ["index,y_true,y_pred"] + [f"{i},{t},{p}" for i, (t, p) in enumerate(zip(y_true, y_pred, strict=True))]
    (folder / "predictions.csv").write_text("\n".join(lines) + "\n")


def make_study_folder(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(
        "name: grid & 50%\n"
        "config: {data: {name: digits}, train: {epochs: 3}}\n"
        "grid: {train.lr: [0.1, 0.01], train.scheduler: [null, step]}\n"
        "seeds: [0, 1]\n"
    )
    study = load_study(path)
    out = tmp_path / "out"
    quality = {
        "lr=0.1-scheduler=none": None,
        "lr=0.1-scheduler=step": [0.70, 0.72, 0.71],
        "lr=0.01-scheduler=none": [0.80, 0.78, 0.79],
        "lr=0.01-scheduler=step": [0.98, 0.97, 0.99],
    }
    for run in study.runs:
        if run.name == "lr=0.1-scheduler=step-seed=1":
            continue  # not finished
        accuracy = quality[run.group]
        _run(out / "runs" / run.name, accuracy or [0.3, 0.3, 0.3], seed=run.seed, collapse=accuracy is None)
    write_report(out, study)
    return out
