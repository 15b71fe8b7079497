"""Seeded stratified splits, per-class caps and relabelling (class selection: tests/test_classes.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adlab.data.splits import cap_per_class, relabel, stratified_split
from adlab.errors import DataError

# 3 classes of 40, 100 and 60 samples, interleaved so that order says nothing about class
COUNTS = [40, 100, 60]
LABELS = torch.from_numpy(np.random.default_rng(1).permutation(np.repeat(np.arange(3), COUNTS)))


def test_stratified_split_is_reproducible():
    a = stratified_split(LABELS, 0.25, seed=7)
    b = stratified_split(LABELS, 0.25, seed=7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_stratified_split_depends_on_seed():
    _, carved_a = stratified_split(LABELS, 0.25, seed=7)
    _, carved_b = stratified_split(LABELS, 0.25, seed=8)
    assert not torch.equal(carved_a, carved_b)


def test_stratified_split_is_a_partition():
    kept, carved = stratified_split(LABELS, 0.3, seed=0)
    assert kept.dtype == torch.long and carved.dtype == torch.long
    k, c = set(kept.tolist()), set(carved.tolist())
    assert not k & c
    assert k | c == set(range(len(LABELS)))
    assert len(kept) + len(carved) == len(LABELS)
    # sorted indices (cheap, cache-friendly gathers)
    assert kept.tolist() == sorted(kept.tolist()) and carved.tolist() == sorted(carved.tolist())


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_stratified_split_carves_the_fraction_of_each_class(fraction):
    _, carved = stratified_split(LABELS, fraction, seed=3)
    assert abs(len(carved) - fraction * len(LABELS)) <= 1
    per_class = torch.bincount(LABELS[carved], minlength=3).tolist()
    for got, n in zip(per_class, COUNTS, strict=True):
        assert abs(got - fraction * n) <= 1, (per_class, fraction)


def test_stratified_split_zero_fraction_carves_nothing():
    kept, carved = stratified_split(LABELS, 0.0, seed=0)
    assert len(carved) == 0 and carved.dtype == torch.long
    assert kept.tolist() == list(range(len(LABELS)))


def test_stratified_split_with_a_singleton_class_still_partitions():
    labels = torch.tensor([0] * 10 + [1] * 10 + [2])  # class 2 cannot be stratified
    kept, carved = stratified_split(labels, 0.3, seed=0)
    assert set(kept.tolist()) | set(carved.tolist()) == set(range(21))
    assert not set(kept.tolist()) & set(carved.tolist())


def test_stratified_split_too_small_is_a_data_error():
    with pytest.raises(DataError, match="cannot carve"):
        stratified_split(torch.tensor([0]), 0.5, seed=0)


def test_cap_per_class_caps_exactly():
    keep = cap_per_class(LABELS, 50, seed=0)
    assert torch.bincount(LABELS[keep], minlength=3).tolist() == [40, 50, 50]
    assert len(set(keep.tolist())) == len(keep)  # no duplicates
    assert keep.tolist() == sorted(keep.tolist())


def test_cap_per_class_is_seeded():
    a = cap_per_class(LABELS, 10, seed=5)
    assert torch.equal(a, cap_per_class(LABELS, 10, seed=5))
    assert not torch.equal(a, cap_per_class(LABELS, 10, seed=6))
    assert torch.bincount(LABELS[a]).tolist() == [10, 10, 10]


def test_cap_per_class_above_every_count_keeps_everything():
    keep = cap_per_class(LABELS, 1000, seed=0)
    assert keep.tolist() == list(range(len(LABELS)))


def test_relabel_maps_in_the_given_order():
    labels = torch.tensor([0, 1, 2, 3, 2, 1, 0])
    mask, new = relabel(labels, [2, 0])
    assert mask.tolist() == [True, False, True, False, True, False, True]
    assert new.tolist() == [1, 0, 0, 1]
    assert new.dtype == torch.long


def test_relabel_class_absent_from_labels():
    labels = torch.tensor([0, 1, 1])
    mask, new = relabel(labels, [1, 5])  # class 5 has no samples here (e.g. a test split)
    assert mask.tolist() == [False, True, True]
    assert new.tolist() == [0, 0]


def test_relabel_empty_labels():
    mask, new = relabel(torch.empty(0, dtype=torch.long), [0])
    assert len(mask) == 0 and len(new) == 0
