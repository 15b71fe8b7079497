"""Classification figures: confusion matrix, misclassified examples (fastai's top losses)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from adlab.io import save_figure  # noqa: E402


def confusion_matrix(matrix: list[list[int]], class_names: list[str], path: Path, title: str = "") -> None:
    counts = np.asarray(matrix)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts, dtype=float), where=rows > 0)
    k = len(class_names)
    size = max(4.0, 0.55 * k + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set(xlabel="predicted class", ylabel="true class", title=title or "Confusion matrix (test)")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    str(counts[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black",
                )
    save_figure(fig, path)


def misclassified(
    images: torch.Tensor, target: torch.Tensor, probs: torch.Tensor, class_names: list[str], path: Path, limit: int = 24
) -> None:
    """The test images the model got most confidently wrong, with true and predicted class."""
    preds = probs.argmax(dim=1)
    wrong = torch.nonzero(preds != target).flatten()
    fig_cols = 8
    if len(wrong) == 0:
        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no misclassified test images", ha="center", va="center")
        save_figure(fig, path)
        return
    true_prob = probs[wrong, target[wrong]]
    order = wrong[torch.argsort(true_prob)][:limit]
    rows = math.ceil(len(order) / fig_cols)
    fig, axes = plt.subplots(rows, fig_cols, figsize=(fig_cols * 1.6, rows * 1.9), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, order.tolist(), strict=False):
        ax.imshow(to_display(images[i]), cmap="gray" if images.shape[1] == 1 else None, vmin=0, vmax=1)
        ax.set_title(
            f"true {class_names[target[i]]}\npred {class_names[preds[i]]} {probs[i, preds[i]]:.2f}", fontsize=7
        )
    fig.suptitle("Most confident mistakes (test)", fontsize=10, y=1.0 + 0.12 / rows)
    save_figure(fig, path)


def to_display(image: torch.Tensor) -> np.ndarray:
    x = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
    x = x.clamp(0, 1)
    return x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()
