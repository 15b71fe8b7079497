"""ImageDataModule on scikit-learn's digits: counts, class selection, caps, splits and batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adlab.config import DataConfig
from adlab.data.datamodule import ImageDataModule, tensor_loader
from adlab.errors import DataError

N_DIGITS = 1797


def digits_module(batch_size: int = 64, **data) -> ImageDataModule:
    dm = ImageDataModule(DataConfig(name="digits", **data), batch_size)
    dm.prepare()
    return dm


@pytest.fixture(scope="module")
def digits_by_image():
    """Original digit label of every (distinct) 8x8 digits image, keyed by its bytes."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    table = {}
    for img, label in zip(images, digits.target, strict=True):
        table.setdefault(img.tobytes(), []).append(int(label))
    return table


def original_labels(x: torch.Tensor, table) -> list[list[int]]:
    return [table[img[0].numpy().tobytes()] for img in x]


def test_counts_add_up_to_all_digits():
    dm = digits_module()
    info = dm.info
    counts = info.counts
    assert counts["train"] + counts["val"] + counts["test"] == N_DIGITS
    assert (len(dm.train_y), len(dm.val_y), len(dm.test_y)) == (counts["train"], counts["val"], counts["test"])
    assert abs(counts["test"] - 0.2 * N_DIGITS) <= 1
    assert abs(counts["val"] - 0.1 * (N_DIGITS - counts["test"])) <= 1
    assert info.class_names == [str(i) for i in range(10)]
    assert info.native_channels == 1 and info.native_size == [8, 8]
    assert info.input_shape == (1, 8, 8)
    assert dm.num_classes == 10


def test_splits_are_disjoint(digits_by_image):
    dm = digits_module()
    keys = [{img[0].numpy().tobytes() for img in x} for x in (dm.train_x, dm.val_x, dm.test_x)]
    # splits are by index: only images that occur twice in digits can be in two splits
    duplicates = {k for k, labels in digits_by_image.items() if len(labels) > 1}
    assert not (keys[0] & keys[1]) - duplicates
    assert not (keys[0] & keys[2]) - duplicates
    assert not (keys[1] & keys[2]) - duplicates


def test_test_split_is_stratified():
    dm = digits_module()
    per_class = torch.bincount(dm.test_y, minlength=10)
    assert int(per_class.min()) >= 34 and int(per_class.max()) <= 38  # about 20% of ~180 each


def test_class_filter_relabels_in_order(digits_by_image):
    dm = digits_module(classes=[3, 5])
    info = dm.info
    assert info.class_names == ["3", "5"]
    assert dm.num_classes == 2
    total = sum(info.counts.values())
    assert total == 183 + 182  # every 3 and every 5 of digits
    for x, y in ((dm.train_x, dm.train_y), (dm.val_x, dm.val_y), (dm.test_x, dm.test_y)):
        assert set(y.unique().tolist()) == {0, 1}
        for labels, new in zip(original_labels(x, digits_by_image), y.tolist(), strict=True):
            assert [3, 5][new] in labels


def test_class_filter_order_given_by_the_user(digits_by_image):
    dm = digits_module(classes=["5", 3])
    assert dm.info.class_names == ["5", "3"]
    for labels, new in zip(original_labels(dm.test_x, digits_by_image), dm.test_y.tolist(), strict=True):
        assert [5, 3][new] in labels


def test_unknown_class_is_a_data_error():
    with pytest.raises(DataError, match="unknown class 'seven'"):
        digits_module(classes=["seven"])


def test_train_per_class_caps_training_only():
    dm = digits_module(train_per_class=10)
    assert torch.bincount(dm.train_y, minlength=10).tolist() == [10] * 10
    assert dm.info.counts["train"] == 100
    full = digits_module()
    assert torch.equal(dm.test_y, full.test_y) and torch.equal(dm.val_y, full.val_y)


def test_val_fraction_zero_gives_no_validation():
    dm = digits_module(val_fraction=0.0)
    assert dm.info.counts["val"] == 0
    assert len(dm.val_x) == 0
    assert dm.val_dataloader() == []
    assert dm.info.counts["train"] + dm.info.counts["test"] == N_DIGITS


def test_same_split_seed_gives_identical_splits():
    a, b = digits_module(split_seed=4), digits_module(split_seed=4)
    for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_other_split_seed_gives_other_splits():
    a, b = digits_module(split_seed=0), digits_module(split_seed=1)
    assert not torch.equal(a.test_x, b.test_x)
    assert len(a.test_x) == len(b.test_x)


def test_normalisation_from_training_data():
    dm = digits_module()
    x = dm.transform(dm.train_x)
    assert abs(float(x.mean())) < 1e-3
    assert abs(float(x.std()) - 1) < 1e-2
    assert dm.info.mean == pytest.approx([float(dm.train_x.mean())], rel=1e-4)


def test_normalize_false_keeps_unit_range():
    dm = digits_module(normalize=False)
    assert dm.info.mean == [0.0] and dm.info.std == [1.0]
    x = dm.transform(dm.test_x)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_forced_channels_and_normalisation():
    dm = ImageDataModule(DataConfig(name="digits"), 32, channels=3, normalization=([0.5, 0.5, 0.5], [0.25, 0.25, 0.25]))
    info = dm.prepare()
    assert info.channels == 3 and info.native_channels == 1
    assert info.mean == [0.5] * 3 and info.std == [0.25] * 3
    assert info.input_shape == (3, 8, 8)


def test_loader_batch_after_transfer_has_network_shape():
    dm = digits_module(batch_size=32, image_size=16, channels=3)
    assert dm.info.input_shape == (3, 16, 16)
    x, y = next(iter(dm.train_dataloader()))
    assert tuple(x.shape) == (32, 1, 8, 8)  # stored at native size
    assert y.shape == (32,) and y.dtype == torch.long
    tx, ty = dm.on_after_batch_transfer((x, y), 0)
    assert tuple(tx.shape) == (32, 3, 16, 16)
    assert tx.dtype == torch.float32
    assert torch.equal(ty, y)


def test_eval_loader_is_sequential_and_complete():
    dm = digits_module(batch_size=100)
    batches = list(dm.test_dataloader())
    xs = torch.cat([x for x, _ in batches])
    ys = torch.cat([y for _, y in batches])
    assert torch.equal(xs, dm.test_x) and torch.equal(ys, dm.test_y)


def test_train_loader_covers_every_image_once_per_epoch():
    dm = digits_module(batch_size=64)
    ys = torch.cat([y for _, y in dm.train_dataloader()])
    assert len(ys) == len(dm.train_y)
    assert torch.equal(torch.bincount(ys, minlength=10), torch.bincount(dm.train_y, minlength=10))


def test_tensor_loader_drops_a_last_batch_of_one_only_when_shuffling():
    x, y = torch.zeros(65, 1, 2, 2), torch.zeros(65, dtype=torch.long)
    assert [len(b[1]) for b in tensor_loader(x, y, 32, shuffle=True)] == [32, 32]
    assert [len(b[1]) for b in tensor_loader(x, y, 32, shuffle=False)] == [32, 32, 1]
