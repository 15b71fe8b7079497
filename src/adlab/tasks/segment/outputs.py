"""A segmentation run's results: test masks predicted once, metrics.json, predictions.csv (each image's IoU and
pixel accuracy, for the report's paired test) and the figures."""

from __future__ import annotations

import zlib
from pathlib import Path

import torch
from torch import nn

from adlab import io
from adlab.formatting import figure_text
from adlab.tasks.classify.figures import confusion_matrix
from adlab.tasks.segment import figures
from adlab.tasks.segment.metrics import IGNORE, per_image_iou, pixel_confusion, scores

SHOWN = 4  # test images in each overlay figure: the first ones (the same for every run) and the worst ones


@torch.no_grad()
def predict_masks(net: nn.Module, transform, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Class ids [N, H, W] (uint8) of each test pixel, from the network in eval mode."""
    net.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = transform(images[start : start + batch_size], train=False)
        out.append(net(x).argmax(1).to(torch.uint8))
    return torch.cat(out)


def write_segmentation_result(
    run_dir: Path,
    pred: torch.Tensor,
    truth: torch.Tensor,
    images: torch.Tensor,
    class_names: list[str],
    extra: dict,
    title: str,
) -> dict:
    """Every result file of a segmentation run; metrics.json last, as the mark of a finished run."""
    k = len(class_names)
    confusion = pixel_confusion(pred, truth, k)
    metrics = scores(confusion, class_names)
    ious = per_image_iou(pred, truth, k)
    valid = truth != IGNORE
    accuracy = ((pred == truth) & valid).flatten(1).sum(1).double() / valid.flatten(1).sum(1).clamp_min(1)
    metrics.update(
        {
            "class_names": list(class_names),
            "confusion_matrix": confusion.tolist(),
            "confusion_unit": "pixels",  # what the matrix counts (the report's wording)
            "test_images": len(truth),
            "ignored_pixels": int((~valid).sum()),
        }
    )
    metrics.update(extra)
    # y_true / y_pred: a checksum of each image's true / predicted mask, so that the report pairs only runs
    # scored on the same test masks, in the same order (the columns every task's predictions.csv starts with)
    io.write_csv(
        run_dir / "predictions.csv",
        ["index", "y_true", "y_pred", "iou", "pixel_accuracy"],
        [
            (i, _checksum(truth[i]), _checksum(pred[i]), f"{float(ious[i]):.6f}", f"{float(accuracy[i]):.6f}")
            for i in range(len(truth))
        ],
    )
    fig_dir = run_dir / "figures"
    names = [figure_text(name) for name in class_names]
    shown = min(SHOWN, len(truth))
    first = list(range(shown))
    worst = ious.argsort()[:shown].tolist()
    for picked, name, caption in ((first, "overlays.png", "test images"), (worst, "worst.png", "lowest IoU")):
        figures.overlays(
            images[picked],
            truth[picked],
            pred[picked],
            [float(ious[i]) for i in picked],
            [f"test image {i}" for i in picked],
            names,
            fig_dir / name,
            figure_text(f"{title}: {caption}" if title else caption),
        )
    figures.per_class_iou(
        dict(zip(names, metrics["per_class_iou"].values(), strict=True)),
        fig_dir / "per_class_iou.png",
        figure_text(f"Per-class IoU{' - ' + title if title else ''}"),
    )
    confusion_matrix(
        metrics["confusion_matrix"], names, fig_dir / "confusion_matrix.png", figure_text("Confusion over test pixels")
    )
    io.write_json(run_dir / "metrics.json", metrics)
    return metrics


def _checksum(mask: torch.Tensor) -> int:
    return zlib.crc32(mask.contiguous().numpy().tobytes())


def summary_line(metrics: dict) -> str:
    keys = ("mean_iou", "pixel_accuracy", "mean_dice")
    return "  ".join(f"{key}={metrics[key]:.4f}" for key in keys if metrics.get(key) is not None)
