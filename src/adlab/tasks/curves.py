"""Loss curves of any task's history.csv: train and validation loss, and its validation scores."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from adlab.io import save_figure  # noqa: E402


def loss_curves(
    history: list[dict],
    path: Path,
    title: str,
    scores: list[tuple[str, str]],
    score_label: str = "validation score",
    loss_label: str = "cross-entropy loss",
) -> None:
    """history.csv rows as two panels: the losses, and each (column, label) of `scores`."""
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        values = [row.get(key) for row in history]
        if any(v is not None for v in values):
            ax_loss.plot(epochs, [np.nan if v is None else v for v in values], marker="o", ms=3, label=label)
    ax_loss.set(xlabel="epoch", ylabel=loss_label, title="Loss")
    ax_loss.legend()
    for key, label in scores:
        values = [row.get(key) for row in history]
        if any(v is not None for v in values):
            ax_acc.plot(epochs, [np.nan if v is None else v for v in values], marker="o", ms=3, label=label)
    ax_acc.set(xlabel="epoch", ylabel=score_label, title="Validation")
    if ax_acc.lines:
        ax_acc.legend()
    else:
        ax_acc.text(0.5, 0.5, "no validation split", ha="center", va="center", transform=ax_acc.transAxes)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    save_figure(fig, path)
