"""Writing (and reading back) a classification result: predictions.csv, metrics.json, figures."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adlab import io
from adlab.errors import AdlabError
from adlab.formatting import figure_text, format_number
from adlab.models.layout import channels_last_pays
from adlab.tasks.classify import figures
from adlab.tasks.classify.metrics import classification_metrics
from adlab.tasks.curves import loss_curves

# Lightning precisions that autocast, and the dtype they compute in
AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "bf16": torch.bfloat16, "16-mixed": torch.float16, "16": torch.float16}

CLASSIFICATION_SCORES = [("val_accuracy", "accuracy"), ("val_mean_class_accuracy", "mean class accuracy")]


@torch.inference_mode()
def predict_probs(
    net: nn.Module,
    transform: nn.Module,
    images: torch.Tensor,
    batch_size: int = 1024,
    flip: bool = False,
    shift: int = 0,
    precision: str = "32-true",
    channels_last: bool = False,
) -> torch.Tensor:
    """Softmax probabilities for raw images, a batch at a time, in eval mode.

    Test-time augmentation: with `flip`, the mean over each image and its mirror image; with
    `shift`, half the weight goes to two copies moved `shift` pixels diagonally either way
    (reflect padding, as in training's random translation), as airbench does.
    `precision` and `channels_last` are the training settings: a mixed-precision run predicts
    under the same autocast as its validation steps (twice as fast on CPUs with bf16 units)."""
    was_training = net.training
    net.eval()
    layout = torch.channels_last if channels_last_pays(net, channels_last, precision) else torch.contiguous_format
    net.to(memory_format=layout)
    device = next(net.parameters()).device
    dtype = AUTOCAST_DTYPES.get(str(precision))
    transform = transform.to(device)

    def views(x: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(net(x).float(), dim=1)
        return (probs + torch.softmax(net(x.flip(-1)).float(), dim=1)) / 2 if flip else probs

    out = []
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        for i in range(0, len(images), batch_size):
            x = transform(images[i : i + batch_size].to(device)).contiguous(memory_format=layout)
            probs = views(x)
            if shift:
                h, w = x.shape[-2:]
                padded = F.pad(x, (shift,) * 4, mode="reflect")
                moved = (
                    views(padded[..., :h, :w].contiguous(memory_format=layout))
                    + views(padded[..., 2 * shift :, 2 * shift :].contiguous(memory_format=layout))
                ) / 2
                probs = (probs + moved) / 2
            out.append(probs.cpu())
    net.train(was_training)
    return torch.cat(out)


def tta_settings(train) -> dict:
    """predict_probs's keyword arguments that come from a run's `train` settings."""
    return {
        "flip": train.tta_flip,
        "shift": train.tta_shift,
        "precision": train.precision,
        "channels_last": train.channels_last,
    }


def write_predictions(path: Path, probs: torch.Tensor, target: torch.Tensor) -> None:
    k = probs.shape[1]
    preds = probs.argmax(dim=1)
    header = ["index", "y_true", "y_pred"] + [f"p_{i}" for i in range(k)]
    p = probs.numpy()
    rows = (
        [i, int(t), int(q)] + [f"{v:.6g}" for v in p[i]]
        for i, (t, q) in enumerate(zip(target.tolist(), preds.tolist(), strict=True))
    )
    io.write_csv(path, header, rows)


def read_predictions(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities [N, K], y_true [N]) from a predictions.csv, read as untrusted input: bounded in
    size (io.MAX_PREDICTIONS_BYTES), text, numbers, class ids in range."""
    if not os.path.lexists(path):  # one that is there but no file is refused as read
        raise AdlabError(f"{path}: predictions.csv not found (is this a finished classification run?)")
    text = io.bounded_text(path, io.MAX_PREDICTIONS_BYTES, "predictions file", AdlabError)
    lines = text.splitlines()
    header = lines[0].strip().split(",") if lines else []
    if header[:3] != ["index", "y_true", "y_pred"] or len(lines) < 2:
        raise AdlabError(f"{path}: not an adlab predictions file")
    if len(header) > io.MAX_CSV_COLUMNS:
        raise AdlabError(f"{path}: malformed predictions ({len(header):,} columns)")
    try:
        data = np.loadtxt(lines[1:], delimiter=",", ndmin=2, dtype=np.float64)
    except (ValueError, IndexError):
        raise AdlabError(f"{path}: malformed predictions (non-numeric values or rows of different lengths)") from None
    k = data.shape[1] - 3
    if data.shape[1] != len(header) or k < 2 or not np.isfinite(data).all():
        raise AdlabError(f"{path}: malformed predictions (no class probabilities, or non-finite values)")
    y_true = data[:, 1]
    if not (np.all(y_true == np.round(y_true)) and y_true.min() >= 0 and y_true.max() < k):
        raise AdlabError(f"{path}: malformed predictions (y_true must be class ids 0..{k - 1})")
    return torch.from_numpy(data[:, 3:]).float(), torch.from_numpy(y_true).long()


def check_metrics(path: Path, metrics: dict, classes: int) -> list[str]:
    """A classification metrics.json as adlab writes it, for a run with `classes` probability
    columns: accuracy a number in [0, 1] (NaN never: adlab writes a missing value as null),
    class_names one text name per class, the confusion matrix classes x classes counts. Returns the
    class names; else one AdlabError naming the file and the key."""

    def bad(key: str, problem: str):
        return AdlabError(f"{path}: {key}: {problem} (damaged or edited?)")

    accuracy = metrics.get("accuracy")
    if not isinstance(accuracy, (int, float)) or isinstance(accuracy, bool) or not 0 <= accuracy <= 1:
        raise bad("accuracy", f"expected a number from 0 to 1, got {accuracy!r}"[:120])
    names = metrics.get("class_names")
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise bad("class_names", "expected a list of class names (text)")
    if len(names) != classes:
        raise AdlabError(f"{path}: class_names do not match the {classes} probability columns of predictions.csv")
    matrix = metrics.get("confusion_matrix")
    if matrix is not None and not (
        isinstance(matrix, list)
        and len(matrix) == classes
        and all(
            isinstance(row, list)
            and len(row) == classes
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in row)
            for row in matrix
        )
    ):
        raise bad("confusion_matrix", f"expected {classes} x {classes} counts, one row and column per class")
    return names


def write_classification_result(
    path: Path,
    probs: torch.Tensor,
    target: torch.Tensor,
    images: torch.Tensor | None,
    class_names: list[str],
    extra: dict | None = None,
    history: list[dict] | None = None,
    title: str = "",
) -> dict:
    """All result files of a classification run; metrics.json last, as the mark of a finished run."""
    path = Path(path)
    metrics = classification_metrics(probs, target, class_names)
    metrics.update(extra or {})
    write_predictions(path / "predictions.csv", probs, target)
    fig_dir = path / "figures"
    drawn = [figure_text(name) for name in class_names]  # names and titles as written, never mathtext
    if history:
        loss_curves(history, fig_dir / "loss_curves.png", figure_text(title), CLASSIFICATION_SCORES)
    figures.confusion_matrix(
        metrics["confusion_matrix"],
        drawn,
        fig_dir / "confusion_matrix.png",
        figure_text(f"Confusion matrix (test){' - ' + title if title else ''}"),
    )
    if images is not None:
        figures.misclassified(images, target, probs, drawn, fig_dir / "misclassified.png")
    io.write_json(path / "metrics.json", metrics)
    return metrics


def summary_line(metrics: dict) -> str:
    keys = ("accuracy", "mean_class_accuracy", "macro_f1", "macro_precision", "macro_recall")
    return "  ".join(f"{k}={format_number(metrics[k], k)}" for k in keys if metrics.get(k) is not None)
