"""Segmentation figures: prediction beside truth over the image, and the IoU of each class."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from adlab.io import save_figure  # noqa: E402
from adlab.tasks.segment.metrics import IGNORE  # noqa: E402


def palette(num_classes: int) -> np.ndarray:
    """[K + 1, 3] floats: class 0 (usually background) grey, the others tab20, the last row IGNORE (black)."""
    cmap = plt.get_cmap("tab20")
    colours = [(0.5, 0.5, 0.5)] + [cmap(i % 20)[:3] for i in range(num_classes - 1)]
    return np.asarray([*colours, (0.0, 0.0, 0.0)])


def _overlay(image: np.ndarray, mask: np.ndarray, colours: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """The image (H x W x 3 in [0, 1]) with each pixel's class colour blended in; ignored pixels stay dark."""
    index = np.where(mask == IGNORE, len(colours) - 1, mask)
    return (1 - alpha) * image + alpha * colours[index]


def _rgb(image: torch.Tensor) -> np.ndarray:
    x = image.float() / 255.0 if image.dtype == torch.uint8 else image.float().clamp(0, 1)
    x = x.expand(3, -1, -1) if x.shape[0] == 1 else x
    return x.permute(1, 2, 0).numpy()


def overlays(
    images: torch.Tensor,
    truth: torch.Tensor,
    pred: torch.Tensor,
    ious: list[float],
    labels: list[str],
    class_names: list[str],
    path: Path,
    title: str,
) -> None:
    """One row per image: the image, the truth over it and the prediction over it (its IoU in the title)."""
    colours = palette(len(class_names))
    n = len(images)
    h, w = images.shape[-2:]
    width = 3 * max(2.4, min(5.0, 2.4 * w / h))
    fig, axes = plt.subplots(n, 3, figsize=(width, 0.4 + n * width / 3 * h / w), squeeze=False)
    for row in range(n):
        image = _rgb(images[row])
        panels = (
            (image, labels[row]),
            (_overlay(image, truth[row].numpy(), colours), "truth"),
            (_overlay(image, pred[row].numpy(), colours), f"prediction (IoU {ious[row]:.3f})"),
        )
        for ax, (shown, caption) in zip(axes[row], panels, strict=True):
            ax.imshow(shown, interpolation="nearest")
            ax.set_title(caption, fontsize=8)
            ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[i]) for i in range(len(class_names))]
    fig.legend(handles, class_names, loc="lower center", ncol=min(6, len(class_names)), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    save_figure(fig, path, tight=False)


def per_class_iou(values: dict[str, float | None], path: Path, title: str) -> None:
    """Horizontal bars: each class's test IoU (a class in neither truth nor prediction: no bar, 'n/a')."""
    names = list(values)
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.32 * len(names)))
    scores = [value if (value := values[name]) is not None else 0.0 for name in names]
    ax.barh(range(len(names)), scores, color=palette(len(names))[: len(names)])
    for i, name in enumerate(names):
        value = values[name]
        ax.text(min((value or 0.0) + 0.01, 0.9), i, "n/a" if value is None else f"{value:.3f}", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="IoU (test pixels)", title=title)
    save_figure(fig, path)
