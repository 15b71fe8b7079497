"""Seeded, stratified splits and class selection on label tensors (indices only, no copies)."""

from __future__ import annotations

import numpy as np
import torch

from adlab.errors import DataError


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (kept, carved) with `fraction` of each class carved out, reproducibly."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    if fraction <= 0:
        return torch.from_numpy(index), torch.empty(0, dtype=torch.long)
    y = labels.numpy()
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 and round(fraction * len(y)) >= (counts > 0).sum() else None
    try:
        kept, carved = train_test_split(index, test_size=fraction, random_state=seed, stratify=stratify)
    except ValueError as exc:
        raise DataError(f"cannot carve a fraction {fraction:g} of {len(y)} images: {exc}") from None
    return torch.from_numpy(np.sort(kept)), torch.from_numpy(np.sort(carved))


def kfold_split(labels: torch.Tensor, folds: int, fold: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (rest, fold `fold` of `folds`) of a seeded stratified k-fold partition."""
    from sklearn.model_selection import StratifiedKFold

    y = labels.numpy()
    try:
        splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    except ValueError as exc:
        raise DataError(f"data.cv_folds: cannot make {folds} folds of {len(y)} images: {exc}") from None
    rest, val = splits[fold]
    return torch.from_numpy(np.sort(rest)), torch.from_numpy(np.sort(val))


def cap_per_class(labels: torch.Tensor, cap: int, seed: int) -> torch.Tensor:
    """Indices keeping at most `cap` random images of each class."""
    rng = np.random.default_rng(seed)
    y = labels.numpy()
    keep = [rng.permutation(np.flatnonzero(y == c))[:cap] for c in np.unique(y)]
    return torch.from_numpy(np.sort(np.concatenate(keep)))


def relabel(labels: torch.Tensor, class_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask of kept samples, new labels 0..k-1 following the order of class_ids)."""
    lookup = torch.full((int(labels.max()) + 1 if len(labels) else 1,), -1, dtype=torch.long)
    for new, old in enumerate(class_ids):
        if old < len(lookup):
            lookup[old] = new
    mapped = lookup[labels]
    mask = mapped >= 0
    return mask, mapped[mask]
