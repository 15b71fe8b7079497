"""ImageFolder trees decoded into uint8 tensors: channels, sizes, and the ways a tree can be broken."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from adlab.data.folder import decode_images, index_folder, load_folder
from adlab.data.sources import load_source
from adlab.errors import DataError


def grey_array(value: int, size=(8, 8)) -> np.ndarray:
    """Pixels value + column + 2 * row (so orientation is checkable)."""
    w, h = size
    return ((np.arange(w)[None, :] + 2 * np.arange(h)[:, None] + value) % 256).astype(np.uint8)


def grey_png(path, value: int, size=(8, 8)) -> np.ndarray:
    arr = grey_array(value, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode="L").save(path)
    return arr


def rgb_png(path, rgb=(200, 10, 90), size=(8, 8)) -> np.ndarray:
    w, h = size
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[...] = rgb
    arr[0, 0] = (1, 2, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode="RGB").save(path)
    return arr


def make_tree(root, classes: dict[str, int], kind="grey", size=(8, 8)):
    """`classes`: name -> number of images."""
    for c, (name, n) in enumerate(classes.items()):
        for i in range(n):
            path = root / name / f"img{i}.png"
            if kind == "grey":
                grey_png(path, 10 * c + i, size)
            else:
                rgb_png(path, (20 * c + i, 100, 200), size)


def test_grey_tree_is_one_channel_uint8(tmp_path):
    make_tree(tmp_path, {"cat": 3, "dog": 2})
    images, labels, names, _ = load_folder(tmp_path, None)
    assert names == ["cat", "dog"]
    assert images.dtype == torch.uint8
    assert tuple(images.shape) == (5, 1, 8, 8)
    assert labels.dtype == torch.long
    assert labels.tolist() == [0, 0, 0, 1, 1]
    # pixel values survive decoding unchanged, in row/column order
    assert torch.equal(images[4, 0], torch.from_numpy(grey_array(10 * 1 + 1)))  # dog/img1.png


def test_rgb_tree_is_three_channels(tmp_path):
    make_tree(tmp_path, {"a": 2, "b": 2}, kind="rgb")
    images, labels, names, _ = load_folder(tmp_path, None)
    assert tuple(images.shape) == (4, 3, 8, 8)
    assert images.dtype == torch.uint8
    # channel-first layout: channel 0 is red, and so on
    assert images[2, :, 3, 3].tolist() == [20, 100, 200]  # b/img0.png
    assert images[2, :, 0, 0].tolist() == [1, 2, 3]


def test_mixed_grey_and_rgb_becomes_three_channels(tmp_path):
    grey = grey_png(tmp_path / "a" / "g.png", 50)
    rgb_png(tmp_path / "b" / "c.png", (9, 8, 7))
    images, labels, _, _ = load_folder(tmp_path, None)
    assert tuple(images.shape) == (2, 3, 8, 8)
    # the grey image is replicated into R, G and B
    for ch in range(3):
        assert torch.equal(images[0, ch], torch.from_numpy(grey))
    assert images[1, :, 5, 5].tolist() == [9, 8, 7]
    assert labels.tolist() == [0, 1]


def test_grey_palette_image_counts_as_grey(tmp_path):
    make_tree(tmp_path, {"a": 2})
    img = Image.fromarray(np.full((8, 8), 77, dtype=np.uint8), mode="L").convert("P")
    assert img.mode == "P"
    img.save(tmp_path / "a" / "pal.png")
    images, _, _, _ = load_folder(tmp_path, None)
    assert images.shape[1] == 1


def test_different_sizes_without_image_size_names_the_odd_file(tmp_path):
    make_tree(tmp_path, {"a": 3}, size=(8, 8))
    odd = tmp_path / "b" / "big.png"
    grey_png(odd, 0, size=(12, 10))  # 12 wide, 10 high
    with pytest.raises(DataError) as info:
        load_folder(tmp_path, None)
    message = str(info.value)
    assert str(odd) in message
    assert "data.image_size" in message
    assert "12x10" in message and "8x8" in message


def test_different_sizes_with_image_size_are_resized(tmp_path):
    make_tree(tmp_path, {"a": 2}, size=(8, 8))
    grey_png(tmp_path / "b" / "big.png", 0, size=(12, 10))
    rgb_png(tmp_path / "b" / "wide.png", size=(20, 5))
    images, labels, _, _ = load_folder(tmp_path, 6)
    assert tuple(images.shape) == (4, 3, 6, 6)
    assert images.dtype == torch.uint8
    assert labels.tolist() == [0, 0, 1, 1]


def test_image_size_resizes_even_when_all_agree(tmp_path):
    make_tree(tmp_path, {"a": 2, "b": 1}, size=(8, 8))
    images, _, _, _ = load_folder(tmp_path, 16)
    assert tuple(images.shape) == (3, 1, 16, 16)


def test_empty_class_folder_is_named(tmp_path):
    make_tree(tmp_path, {"cat": 2})
    (tmp_path / "zebra").mkdir()
    (tmp_path / "zebra" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError) as info:
        load_folder(tmp_path, None)
    message = str(info.value)
    assert "'zebra'" in message
    assert str(tmp_path) in message
    assert "no images" in message


def test_corrupt_png_names_the_file(tmp_path):
    make_tree(tmp_path, {"a": 2, "b": 2})
    bad = tmp_path / "b" / "broken.png"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    with pytest.raises(DataError) as info:
        load_folder(tmp_path, None)
    message = str(info.value)
    assert str(bad) in message
    assert "cannot read image" in message


def test_truncated_png_names_the_file(tmp_path):
    make_tree(tmp_path, {"a": 2})
    bad = tmp_path / "a" / "cut.png"
    grey_png(bad, 3, size=(64, 64))
    bad.write_bytes(bad.read_bytes()[:60])
    with pytest.raises(DataError) as info:
        load_folder(tmp_path, None)
    assert str(bad) in str(info.value)


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="not found") as info:
        load_folder(tmp_path / "nowhere", None)
    assert str(tmp_path / "nowhere") in str(info.value)


def test_non_image_files_are_ignored(tmp_path):
    make_tree(tmp_path, {"a": 2, "b": 1})
    (tmp_path / "a" / "README.txt").write_text("hello")
    names, samples = index_folder(tmp_path)
    assert names == ["a", "b"]
    assert len(samples) == 3


def test_decode_images_needs_paths():
    with pytest.raises(DataError):
        decode_images([], None)


def test_folder_source_with_train_and_test_uses_both_splits(tmp_path):
    make_tree(tmp_path / "train", {"a": 3, "b": 4})
    make_tree(tmp_path / "test", {"a": 2, "b": 1})
    src = load_source("folder", str(tmp_path))
    assert src.class_names == ["a", "b"]
    assert tuple(src.train_x.shape) == (7, 1, 8, 8)
    assert src.test_x is not None and tuple(src.test_x.shape) == (3, 1, 8, 8)
    assert src.train_y.tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert src.test_y.tolist() == [0, 0, 1]


def test_folder_source_test_split_may_lack_a_class_and_keeps_train_ids(tmp_path):
    make_tree(tmp_path / "train", {"a": 2, "b": 2, "c": 2})
    make_tree(tmp_path / "test", {"c": 2})
    src = load_source("folder", str(tmp_path))
    assert src.class_names == ["a", "b", "c"]
    assert src.test_y.tolist() == [2, 2]  # 'c' keeps its training id


def test_folder_source_promotes_both_splits_to_rgb(tmp_path):
    make_tree(tmp_path / "train", {"a": 2, "b": 2}, kind="grey")
    make_tree(tmp_path / "test", {"a": 1, "b": 1}, kind="rgb")
    src = load_source("folder", str(tmp_path))
    assert src.train_x.shape[1] == 3 and src.test_x.shape[1] == 3
    assert torch.equal(src.train_x[:, 0], src.train_x[:, 2])


def test_folder_source_split_sizes_must_agree(tmp_path):
    make_tree(tmp_path / "train", {"a": 2, "b": 2}, size=(8, 8))
    make_tree(tmp_path / "test", {"a": 1, "b": 1}, size=(10, 10))
    with pytest.raises(DataError, match="data.image_size"):
        load_source("folder", str(tmp_path))
    src = load_source("folder", str(tmp_path), image_size=9)
    assert src.train_x.shape[2:] == src.test_x.shape[2:] == (9, 9)


def test_folder_source_without_splits_has_no_test_set(tmp_path):
    make_tree(tmp_path, {"a": 2, "b": 2})
    src = load_source("folder", str(tmp_path))
    assert src.test_x is None and src.test_y is None
    assert len(src.train_x) == 4


def test_folder_source_needs_root():
    with pytest.raises(DataError, match="data.root"):
        load_source("folder", None)


def test_on_corrupt_skip_leaves_unreadable_files_out_and_counts_them(tmp_path):
    make_tree(tmp_path, {"a": 3, "b": 2})
    cut = tmp_path / "a" / "cut.png"
    grey_png(cut, 3, size=(64, 64))
    cut.write_bytes(cut.read_bytes()[:60])
    (tmp_path / "b" / "fake.png").write_text("not a png")
    images, labels, names, skipped = load_folder(tmp_path, 8, on_corrupt="skip")
    assert sorted(skipped) == sorted([str(cut), str(tmp_path / "b" / "fake.png")])
    assert len(images) == len(labels) == 5
    assert labels.tolist() == [0, 0, 0, 1, 1]  # labels still line up with the images kept


def test_on_corrupt_skip_is_said_in_the_run(tmp_path):
    from adlab.config import load_config
    from adlab.data.datamodule import ImageDataModule

    make_tree(tmp_path, {"a": 6, "b": 6})
    (tmp_path / "b" / "fake.png").write_text("not a png")
    cfg = load_config(
        {
            "data": {
                "name": "folder",
                "root": str(tmp_path),
                "on_corrupt": "skip",
                "val_fraction": 0.0,
                "test_fraction": 0.5,
            }
        }
    )
    info = ImageDataModule(cfg.data, 4).prepare()
    assert "1 unreadable image skipped" in info.description and "fake.png" in info.description
    assert sum(info.counts.values()) == 12


def test_on_corrupt_skip_with_nothing_readable(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_text("no")
    with pytest.raises(DataError, match="none of the 1 images could be read"):
        load_folder(tmp_path, None, on_corrupt="skip")
