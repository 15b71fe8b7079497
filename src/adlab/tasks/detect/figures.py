"""Detection figures: predicted boxes drawn over the ground truth."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.patches as patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from adlab.formatting import figure_text  # noqa: E402
from adlab.io import save_figure  # noqa: E402


def predictions_over_truth(samples: list, names: list[str], path: Path) -> None:
    """Ground truth dashed green, predictions solid red with class and confidence."""
    cols = 2
    rows = max(1, math.ceil(len(samples) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 6, rows * 2.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image, prediction, target) in zip(axes.flat, samples, strict=False):  # the grid may have a spare axis
        with Image.open(image) as img:
            ax.imshow(img.convert("RGB"))
        for x1, y1, x2, y2 in target["boxes"].tolist():
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="lime", lw=1.5, ls="--"))
        for (x1, y1, x2, y2), score, label in zip(
            prediction["boxes"].tolist(), prediction["scores"].tolist(), prediction["labels"].tolist(), strict=True
        ):
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="red", lw=1.2))
            ax.text(
                x1,
                y1 - 1,
                f"{figure_text(names[label])} {score:.2f}",
                color="white",
                fontsize=6,
                bbox={"facecolor": "red", "alpha": 0.7, "pad": 0.5, "lw": 0},
            )
        ax.set_title(figure_text(Path(image).name), fontsize=8)
    fig.suptitle("Validation: predictions (red, conf >= 0.25) over ground truth (dashed green)", fontsize=10)
    save_figure(fig, path)
