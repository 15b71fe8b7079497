"""Autoencoder figures: reconstructions, latent maps, samples, interpolations, the 2-D manifold."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from adlab.io import save_figure  # noqa: E402


def _show(ax, image: torch.Tensor) -> None:
    x = image.detach().float().clamp(0, 1).cpu()
    ax.imshow(x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy(), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def image_rows(rows: list[tuple[str, torch.Tensor]], path: Path, title: str) -> None:
    """Rows of images with a label at the left of each row."""
    cols = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(cols * 1.1, len(rows) * 1.2), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            if c < len(images):
                _show(ax, images[c])
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def image_grid(images: torch.Tensor, path: Path, title: str = "") -> None:
    n = len(images)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image in zip(axes.flat, images, strict=False):
        _show(ax, image)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    save_figure(fig, path)


def manifold_map(images: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor, path: Path, title: str) -> None:
    """The decoded grid as one picture (no gaps between tiles), with the code values on its axes: z1 across,
    z2 up (`images` row by row from the top, as manifold() decodes them)."""
    n_rows, n_cols = len(z2), len(z1)
    x = images.detach().float().clamp(0, 1).cpu()
    c, h, w = x.shape[1:]
    tiles = x.view(n_rows, n_cols, c, h, w).permute(0, 3, 1, 4, 2).reshape(n_rows * h, n_cols * w, c)
    fig, ax = plt.subplots(figsize=(6.4, 6.4 * n_rows * h / (n_cols * w) + 0.3), layout="constrained")
    ax.imshow(tiles[..., 0].numpy() if c == 1 else tiles.numpy(), cmap="gray", vmin=0, vmax=1)
    step = max(1, n_cols // 5)
    ax.set_xticks([(i + 0.5) * w for i in range(0, n_cols, step)], [f"{float(v):.2f}" for v in z1[::step]])
    ax.set_yticks([(i + 0.5) * h for i in range(0, n_rows, step)], [f"{float(v):.2f}" for v in z2[::step]])
    ax.set(xlabel="z1 (first code dimension)", ylabel="z2 (second code dimension)", title=title)
    ax.tick_params(labelsize=8)
    save_figure(fig, path, tight=False)


def latent_scatter(
    points: np.ndarray, labels: np.ndarray, class_names: list[str], path: Path, title: str, axis_names: tuple[str, str]
) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 6))
    cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    for k, name in enumerate(class_names):
        mask = labels == k
        if mask.any():
            ax.scatter(points[mask, 0], points[mask, 1], s=4, alpha=0.6, color=cmap(k % cmap.N), label=name)
    ax.set(xlabel=axis_names[0], ylabel=axis_names[1], title=title)
    ax.legend(markerscale=4, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    save_figure(fig, path)
