"""Classification metrics from predicted probabilities, with torchmetrics (definitions: guide section 4)."""

from __future__ import annotations

import math

import torch
import torchmetrics.functional.classification as tmf


def classification_metrics(probs: torch.Tensor, target: torch.Tensor, class_names: list[str]) -> dict:
    """accuracy, mean class accuracy (= balanced accuracy), macro F1/precision/recall, per class, confusion."""
    k = len(class_names)
    preds = probs.argmax(dim=1)
    per_class = tmf.multiclass_recall(preds, target, k, average="none")
    support = torch.bincount(target, minlength=k)
    present = support > 0
    confusion = tmf.multiclass_confusion_matrix(preds, target, k)
    nll = torch.nn.functional.nll_loss(torch.log(probs.clamp_min(1e-12)), target).item()
    result = {
        "accuracy": tmf.multiclass_accuracy(preds, target, k, average="micro").item(),
        "mean_class_accuracy": per_class[present].mean().item(),
        "macro_f1": tmf.multiclass_f1_score(preds, target, k, average="macro", zero_division=0).item(),
        "macro_precision": tmf.multiclass_precision(preds, target, k, average="macro", zero_division=0).item(),
        "macro_recall": tmf.multiclass_recall(preds, target, k, average="macro", zero_division=0).item(),
        "test_loss": nll,
        "per_class_accuracy": {
            name: (per_class[i].item() if present[i] else None) for i, name in enumerate(class_names)
        },
        "confusion_matrix": confusion.tolist(),
        "class_names": list(class_names),
        "num_test": int(len(target)),
    }
    if k > 5:
        result["top5_accuracy"] = tmf.multiclass_accuracy(probs, target, k, average="micro", top_k=5).item()
    return {key: _finite(value) for key, value in result.items()}


def _finite(value):
    return None if isinstance(value, float) and math.isnan(value) else value
