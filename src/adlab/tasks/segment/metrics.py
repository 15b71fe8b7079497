"""Segmentation scores from one confusion matrix over pixels (torchmetrics counts it, ignore index honoured):
mean IoU, per-class IoU, pixel accuracy, mean Dice; and each test image's own IoU (the report's paired test)."""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import multiclass_confusion_matrix

IGNORE = 255  # a mask pixel that is neither trained on nor scored


def pixel_confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[K, K] pixel counts, rows the true class, columns the predicted one; IGNORE pixels left out."""
    return multiclass_confusion_matrix(
        pred.flatten(), target.flatten().long(), num_classes, ignore_index=IGNORE, validate_args=False
    ).long()


def scores(confusion: torch.Tensor, class_names: list[str]) -> dict:
    """mean_iou and mean_dice average the classes that occur in the truth or the predictions (a class
    absent from both has no IoU: null in per_class_iou, as torchmetrics leaves it out)."""
    confusion = confusion.double()
    hits = confusion.diag()
    truth, predicted = confusion.sum(1), confusion.sum(0)
    union = truth + predicted - hits
    present = union > 0
    iou = torch.where(present, hits / union.clamp_min(1), torch.nan)
    dice = torch.where(present, 2 * hits / (truth + predicted).clamp_min(1), torch.nan)
    total = confusion.sum()
    return {
        "mean_iou": float(iou[present].mean()) if present.any() else 0.0,
        "mean_dice": float(dice[present].mean()) if present.any() else 0.0,
        "pixel_accuracy": float(hits.sum() / total) if total > 0 else 0.0,
        "per_class_iou": {
            name: (None if torch.isnan(v) else round(float(v), 6)) for name, v in zip(class_names, iou, strict=True)
        },
    }


def per_image_iou(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Each image's mean IoU over the classes in its truth or its prediction: [N] (one batched bincount)."""
    n = len(pred)
    valid = target != IGNORE
    pairs = (target.long().clamp_max(num_classes - 1) * num_classes + pred.long()).masked_fill(~valid, 0)
    offset = torch.arange(n, device=pred.device).view(-1, *([1] * (pred.dim() - 1))) * num_classes**2
    counts = torch.bincount((pairs + offset)[valid], minlength=n * num_classes**2).view(n, num_classes, num_classes)
    hits = counts.diagonal(dim1=1, dim2=2).double()
    union = counts.sum(2) + counts.sum(1) - hits
    present = union > 0
    iou = torch.where(present, hits / union.clamp_min(1), 0.0)
    return iou.sum(1) / present.sum(1).clamp_min(1)
