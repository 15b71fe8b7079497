"""Segmentation data (adlab.data.masks): the three layouts read into uint8 tensors, class ids kept exact
(P-mode indices, nearest resize, the KITTI and Oxford-IIIT Pet mappings), and every way a folder can be
broken refused with one DataError naming the file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adlab.data.masks import CITYSCAPES_CLASSES, IGNORE, load_masks, read_class_names, write_class_names
from adlab.errors import DataError

W, H = 6, 4  # small images: 6 wide, 4 high


def image_array(seed: int, size=(W, H), grey: bool = False) -> np.ndarray:
    w, h = size
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w) if grey else (h, w, 3), dtype=np.uint8)


def mask_array(seed: int, classes: int = 3, size=(W, H)) -> np.ndarray:
    """Class ids 0..classes-1 with one IGNORE pixel."""
    w, h = size
    m = ((np.arange(w)[None, :] + np.arange(h)[:, None] + seed) % classes).astype(np.uint8)
    m[0, 0] = IGNORE
    return m


def save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)
    return path


def make_set(root: Path, splits: dict[str, int] | None = None, names=("background", "Trouser", "Bag")) -> dict:
    """A `masks` folder: {split: n} ({"": n} for the flat layout). Returns {split: (images, masks)} as written."""
    splits = {"": 3} if splits is None else splits
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.yaml").write_text("names: [" + ", ".join(names) + "]\n")
    written = {}
    for split, n in splits.items():
        images, masks = [], []
        for i in range(n):
            seed = 10 * len(written) + i
            images.append(image_array(seed))
            masks.append(mask_array(seed, len(names)))
            save(root / "images" / split / f"{i:03d}.png", images[-1])
            save(root / "masks" / split / f"{i:03d}.png", masks[-1])
        written[split or "train"] = (np.stack(images), np.stack(masks))
    return written


def refused(root, *args, match: str | None = None, name: str = "masks") -> str:
    with pytest.raises(DataError) as info:
        load_masks(name, str(root) if root is not None else None, *args)
    message = str(info.value)
    assert "\n" not in message
    if match is not None:
        assert match in message, message
    return message


# --- reading ---------------------------------------------------------------------------------------


def test_flat_layout_reads_images_and_masks_exactly(tmp_path):
    written = make_set(tmp_path / "d")
    source = load_masks("masks", str(tmp_path / "d"), None)
    images, masks = written["train"]
    assert source.train_x.dtype == torch.uint8 and source.train_m.dtype == torch.uint8
    assert source.train_x.shape == (3, 3, H, W) and source.train_m.shape == (3, H, W)
    assert torch.equal(source.train_x, torch.from_numpy(images).permute(0, 3, 1, 2))
    assert torch.equal(source.train_m, torch.from_numpy(masks))
    assert (source.train_m == IGNORE).sum() == 3
    assert source.val_x is source.val_m is source.test_x is source.test_m is None
    assert source.class_names == ["background", "Trouser", "Bag"]
    assert str(tmp_path / "d") in source.description and "3 classes" in source.description


def test_split_layout_returns_each_split(tmp_path):
    written = make_set(tmp_path / "d", {"train": 3, "val": 2, "test": 1})
    source = load_masks("masks", str(tmp_path / "d"), None)
    for split, x, m in (
        ("train", source.train_x, source.train_m),
        ("val", source.val_x, source.val_m),
        ("test", source.test_x, source.test_m),
    ):
        assert x is not None and m is not None
        assert torch.equal(m, torch.from_numpy(written[split][1]))
        assert torch.equal(x, torch.from_numpy(written[split][0]).permute(0, 3, 1, 2))
    assert "train 3, val 2, test 1" in source.description


def test_val_only_leaves_test_to_the_caller(tmp_path):
    make_set(tmp_path / "d", {"train": 2, "val": 1})
    source = load_masks("masks", str(tmp_path / "d"), None)
    assert source.val_x is not None and len(source.val_x) == 1
    assert source.test_x is None and source.test_m is None


def test_class_names_as_a_mapping(tmp_path):
    make_set(tmp_path / "d")
    (tmp_path / "d" / "classes.yaml").write_text("names: {1: Trouser, 0: background, 2: Bag}\n")
    assert load_masks("masks", str(tmp_path / "d"), None).class_names == ["background", "Trouser", "Bag"]


def test_write_class_names_round_trips_odd_names(tmp_path):
    names = ["background", "T-shirt/top", "7", "a: b"]
    write_class_names(tmp_path, names)
    assert read_class_names(tmp_path / "classes.yaml") == names


def test_palette_masks_are_read_as_indices_not_colours(tmp_path):
    make_set(tmp_path / "d")
    ids = mask_array(5)
    mask = Image.fromarray(ids, mode="P")
    palette = [0] * 768
    palette[3:9] = [200, 10, 10, 10, 200, 10]  # index 1 red, index 2 green: grey values 66 and 121
    mask.putpalette(palette)
    mask.save(tmp_path / "d" / "masks" / "001.png")
    with Image.open(tmp_path / "d" / "masks" / "001.png") as check:
        assert check.mode == "P"
    source = load_masks("masks", str(tmp_path / "d"), None)
    assert torch.equal(source.train_m[1], torch.from_numpy(ids))


def test_one_bit_masks_are_zero_and_one(tmp_path):
    make_set(tmp_path / "d", names=("background", "thing"))
    bits = np.zeros((H, W), dtype=bool)
    bits[1:3, 2:5] = True
    Image.fromarray(bits).save(tmp_path / "d" / "masks" / "000.png")
    with Image.open(tmp_path / "d" / "masks" / "000.png") as check:
        assert check.mode == "1"
    source = load_masks("masks", str(tmp_path / "d"), None)
    assert torch.equal(source.train_m[0], torch.from_numpy(bits.astype("uint8")))


def test_resize_keeps_class_ids(tmp_path):
    written = make_set(tmp_path / "d")
    source = load_masks("masks", str(tmp_path / "d"), 12)
    assert source.train_x.shape == (3, 3, 12, 12) and source.train_m.shape == (3, 12, 12)
    # nearest, 4 -> 12 rows (x3), 6 -> 12 columns (x2): each id repeated, none blended
    expected = np.repeat(np.repeat(written["train"][1], 3, axis=1), 2, axis=2)
    assert torch.equal(source.train_m, torch.from_numpy(expected))
    # downsizing too: only ids that were there
    small = load_masks("masks", str(tmp_path / "d"), 3)
    assert set(small.train_m.unique().tolist()) <= {0, 1, 2, IGNORE}
    assert "resized to 3x3" in small.description


def test_grey_images_give_one_channel_and_a_mix_gives_three(tmp_path):
    root = tmp_path / "d"
    make_set(root)
    greys = [image_array(i, grey=True) for i in range(3)]
    for i, g in enumerate(greys):
        save(root / "images" / f"{i:03d}.png", g)
    source = load_masks("masks", str(root), None)
    assert source.train_x.shape == (3, 1, H, W)
    assert torch.equal(source.train_x[:, 0], torch.from_numpy(np.stack(greys)))
    rgb = image_array(9)
    save(root / "images" / "002.png", rgb)
    mixed = load_masks("masks", str(root), None)
    assert mixed.train_x.shape == (3, 3, H, W)
    assert torch.equal(mixed.train_x[0], torch.from_numpy(greys[0])[None].expand(3, H, W))
    assert torch.equal(mixed.train_x[2], torch.from_numpy(rgb).permute(2, 0, 1))


def test_jpeg_images_pair_with_png_masks(tmp_path):
    root = tmp_path / "d"
    make_set(root)
    (root / "images" / "001.png").unlink()
    Image.fromarray(image_array(1)).save(root / "images" / "001.jpg", quality=95)
    assert len(load_masks("masks", str(root), None).train_x) == 3


def test_sizes_differ_without_image_size(tmp_path):
    root = tmp_path / "d"
    make_set(root)
    save(root / "images" / "002.png", image_array(2, size=(8, 5)))
    save(root / "masks" / "002.png", mask_array(2, size=(8, 5)))
    message = refused(root, None, match=str(root / "images" / "002.png"))
    assert "8x5, but the first image is 6x4; set data.image_size" in message
    assert load_masks("masks", str(root), 5).train_x.shape == (3, 3, 5, 5)


# --- refusals --------------------------------------------------------------------------------------


def test_missing_root_classes_and_images(tmp_path):
    refused(None, None, match="data.root")
    refused(tmp_path / "nope", None, match=f"{tmp_path / 'nope'}: data folder not found")
    root = tmp_path / "d"
    make_set(root)
    (root / "classes.yaml").rename(root / "other.yaml")
    refused(root, None, match=f"{root / 'classes.yaml'}: classes.yaml not found")
    (root / "other.yaml").rename(root / "classes.yaml")
    (root / "images").rename(root / "pictures")
    refused(root, None, match=f"{root / 'images'}: images folder not found")
    (root / "pictures").rename(root / "images")
    (root / "masks").rename(root / "labels")
    refused(root, None, match=f"{root / 'masks'}: masks folder not found")


@pytest.mark.parametrize(
    "text, match",
    [
        ("names: background\n", "names: expected a list of class names"),
        ("other: [a, b]\n", "names: expected a list of class names"),
        ("names: {0: background, 2: a}\n", "the keys must be the pixel values 0..1"),
        ("names: [background, a, a]\n", "'a' given twice (names[1] and names[2])"),
        ("names: [background, '']\n", "names[1]: expected a class name"),
        ("names: [background, [x]]\n", "names[1]: expected a class name"),
        ("names: [background]\n", "1 class, need at least 2"),
        ("names: [" + ", ".join(f"c{i}" for i in range(256)) + "]\n", "256 classes, at most 255"),
        ("names: [a, b\n", "invalid YAML"),
    ],
)
def test_bad_classes_yaml(tmp_path, text, match):
    make_set(tmp_path / "d")
    (tmp_path / "d" / "classes.yaml").write_text(text)
    message = refused(tmp_path / "d", None, match=match)
    assert message.startswith(str(tmp_path / "d" / "classes.yaml"))


def test_image_without_mask(tmp_path):
    root = tmp_path / "d"
    make_set(root)
    (root / "masks" / "001.png").unlink()
    refused(root, None, match=f"{root / 'images' / '001.png'}: no mask {root / 'masks' / '001.png'}")


def test_mask_without_image(tmp_path):
    root = tmp_path / "d"
    make_set(root)
    save(root / "masks" / "extra.png", mask_array(0))
    refused(root, None, match=f"{root / 'masks' / 'extra.png'}: no image with stem 'extra'")


def test_masks_of_a_split_without_images(tmp_path):
    root = tmp_path / "d"
    make_set(root, {"train": 2})
    save(root / "masks" / "test" / "000.png", mask_array(0))
    refused(root, None, match=f"{root / 'masks' / 'test' / '000.png'}: no image")


def test_mask_value_that_is_no_class(tmp_path):
    root = tmp_path / "d"
    make_set(root)
    bad = mask_array(1)
    bad[2, 3] = 7
    save(root / "masks" / "001.png", bad)
    refused(root, None, match=f"{root / 'masks' / '001.png'}: pixel value 7 is not a class (0..2) nor 255 (ignore)")


def test_mask_size_differs_from_its_image(tmp_path):
    root = tmp_path / "d"
    make_set(root)
    save(root / "masks" / "001.png", mask_array(1, size=(5, 4)))
    refused(root, None, match=f"{root / 'masks' / '001.png'}: 5x4, its image is 6x4")
    refused(root, 8, match=f"{root / 'masks' / '001.png'}: 5x4, its image is 6x4")  # resizing does not hide it


def test_two_images_with_one_stem(tmp_path):
    root = tmp_path / "d"
    make_set(root)
    Image.fromarray(image_array(1)).save(root / "images" / "001.jpg")
    refused(root, None, match=f"{root / 'masks' / '001.png'}: reached by 001.jpg and 001.png (one mask per image")


def test_mask_linked_to_another_mask(tmp_path):
    root = tmp_path / "d"
    make_set(root, {"train": 2, "test": 1})
    (root / "masks" / "test" / "000.png").unlink()
    os.symlink(root / "masks" / "train" / "001.png", root / "masks" / "test" / "000.png")
    link = root / "masks" / "test" / "000.png"
    message = refused(root, None, match=f"{link}: reached by train/001.png and test/000.png")
    assert f"the same file as {root / 'masks' / 'train' / '001.png'}" in message


def test_image_linked_into_two_splits(tmp_path):
    root = tmp_path / "d"
    make_set(root, {"train": 2, "val": 1})
    (root / "images" / "val" / "000.png").unlink()
    os.symlink(root / "images" / "train" / "000.png", root / "images" / "val" / "000.png")
    refused(root, None, match=f"{root / 'images' / 'val' / '000.png'}: the same file as train/000.png")


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA"])
def test_multi_channel_mask(tmp_path, mode):
    root = tmp_path / "d"
    make_set(root)
    Image.new(mode, (W, H)).save(root / "masks" / "002.png")
    refused(root, None, match=f"{root / 'masks' / '002.png'}: {mode}, a mask is one channel of class ids")


def test_sixteen_bit_mask(tmp_path):
    root = tmp_path / "d"
    make_set(root)
    Image.fromarray(mask_array(0).astype(np.uint16)).save(root / "masks" / "002.png")
    refused(root, None, match=f"{root / 'masks' / '002.png'}: I;16, a mask is one channel")


def test_unreadable_image_and_mask(tmp_path):
    root = tmp_path / "d"
    make_set(root)
    (root / "masks" / "001.png").write_bytes(b"not a png")
    refused(root, None, match=f"{root / 'masks' / '001.png'}: cannot read image")
    make_set(root)
    (root / "images" / "002.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    refused(root, None, match=f"{root / 'images' / '002.png'}: cannot read image")


def test_broken_link_and_fifo(tmp_path):
    root = tmp_path / "d"
    make_set(root)
    os.symlink(root / "nowhere.png", root / "images" / "009.png")
    refused(root, None, match=f"{root / 'images' / '009.png'}: cannot read")
    (root / "images" / "009.png").unlink()
    os.mkfifo(root / "masks" / "009.png")
    refused(root, None, match=f"{root / 'masks' / '009.png'}: not a regular file")


def test_empty_split(tmp_path):
    root = tmp_path / "d"
    make_set(root, {"train": 2})
    (root / "images" / "val").mkdir()
    (root / "images" / "val" / "notes.txt").write_text("x")
    refused(root, None, match=f"{root / 'images' / 'val'}: no images (.png, .jpg, .jpeg)")
    empty = tmp_path / "e"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    (empty / "classes.yaml").write_text("names: [a, b]\n")
    refused(empty, None, match=f"{empty / 'images'}: no images")


def test_split_folders_need_train_and_no_loose_images(tmp_path):
    root = tmp_path / "d"
    make_set(root, {"val": 1})
    refused(root, None, match=f"{root / 'images' / 'train'}: not found")
    make_set(root, {"train": 1})
    save(root / "images" / "loose.png", image_array(0))
    refused(root, None, match=f"{root / 'images' / 'loose.png'}: an image beside the split folders")


def test_unknown_set_and_bad_image_size(tmp_path):
    refused(tmp_path, None, name="pascal", match="unknown segmentation data set 'pascal'")
    make_set(tmp_path / "d")
    refused(tmp_path / "d", 0, match="data.image_size")


# --- KITTI semantics -------------------------------------------------------------------------------


def test_kitti_semantic_maps_cityscapes_label_ids(tmp_path):
    root = tmp_path / "data_semantics"
    labels = np.array(
        [[7, 8, 11, 12, 13, 17], [19, 20, 21, 22, 23, 24], [25, 26, 27, 28, 31, 32], [33, 0, 1, 6, 30, 34]],
        dtype=np.uint8,
    )
    expected = np.array(
        [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11], [12, 13, 14, 15, 16, 17], [18, 255, 255, 255, 255, 255]],
        dtype=np.uint8,
    )
    for i, size in enumerate([(W, H), (W + 1, H)]):
        save(root / "training" / "image_2" / f"{i:06d}_10.png", image_array(i, size))
        lab = np.zeros((size[1], size[0]), dtype=np.uint8)
        lab[:, :W] = labels
        save(root / "training" / "semantic" / f"{i:06d}_10.png", lab)
    (root / "testing" / "image_2").mkdir(parents=True)  # no labels there: never read
    message = refused(root, None, name="kitti_semantic", match=str(root / "training" / "image_2" / "000001_10.png"))
    assert "7x4, but the first image is 6x4; set data.image_size" in message
    (root / "training" / "image_2" / "000001_10.png").unlink()
    (root / "training" / "semantic" / "000001_10.png").unlink()
    source = load_masks("kitti_semantic", str(root), None)
    assert source.class_names == CITYSCAPES_CLASSES and len(source.class_names) == 19
    assert torch.equal(source.train_m[0], torch.from_numpy(expected))
    assert source.val_x is None and source.test_x is None and source.test_m is None
    resized = load_masks("kitti_semantic", str(root), 8)
    assert resized.train_m.shape == (1, 8, 8)
    assert set(resized.train_m.unique().tolist()) <= set(range(19)) | {IGNORE}


def test_kitti_semantic_refusals(tmp_path):
    refused(tmp_path, None, name="kitti_semantic", match=f"{tmp_path / 'training' / 'image_2'}: not found")
    save(tmp_path / "training" / "image_2" / "000000_10.png", image_array(0))
    semantic = tmp_path / "training" / "semantic"
    refused(tmp_path, None, name="kitti_semantic", match=f"{semantic}: masks folder not found")
    save(tmp_path / "training" / "semantic" / "000000_10.png", image_array(0))  # the colour version, not ids
    refused(tmp_path, None, name="kitti_semantic", match="000000_10.png: RGB, a mask is one channel")


# --- Oxford-IIIT Pet -------------------------------------------------------------------------------


def make_pets(root: Path, trainval=("Abyssinian_1", "beagle_2"), test=("Bombay_3",)) -> dict[str, np.ndarray]:
    """torchvision's layout: root/oxford-iiit-pet/images/*.jpg, annotations/trimaps/*.png, annotations/<split>.txt."""
    base = root / "oxford-iiit-pet"
    trimaps = {}
    for i, name in enumerate((*trainval, *test)):
        size = (10 + 2 * i, 7 + i)  # sizes vary, as in the real data set
        Image.fromarray(image_array(i, size)).save(save_dir(base / "images") / f"{name}.jpg")
        trimap = (1 + (np.arange(size[0])[None, :] + np.arange(size[1])[:, None]) % 3).astype(np.uint8)
        save(base / "annotations" / "trimaps" / f"{name}.png", trimap)
        trimaps[name] = trimap
    for split, names in (("trainval", trainval), ("test", test)):
        (base / "annotations" / f"{split}.txt").write_text("".join(f"{n} {k + 1} 1 1\n" for k, n in enumerate(names)))
    return trimaps


def save_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_oxford_pet_trimaps_become_background_pet_and_ignore(tmp_path):
    trimaps = make_pets(tmp_path)
    source = load_masks("oxford_pet", str(tmp_path), None, download=False)
    assert source.class_names == ["background", "pet"]
    assert source.train_x.shape == (2, 3, 128, 128) and source.train_m.shape == (2, 128, 128)
    assert source.test_x is not None and source.test_m is not None and source.test_x.shape == (1, 3, 128, 128)
    assert source.val_x is None and source.val_m is None
    assert "128x128 (data.image_size unset)" in source.description
    # at the file's own size, the mapping 1 -> 1 (pet), 2 -> 0 (background), 3 -> 255 (border) is exact
    small = trimaps["Bombay_3"]
    lut = np.array([0, 1, 0, 255], dtype=np.uint8)
    ids = Image.fromarray(lut[small]).resize((16, 16), Image.Resampling.NEAREST)
    sized = load_masks("oxford_pet", str(tmp_path), 16, download=False)
    assert sized.test_m is not None and torch.equal(sized.test_m[0], torch.from_numpy(np.array(ids)))
    assert set(sized.train_m.unique().tolist()) == {0, 1, IGNORE}


def test_oxford_pet_missing_without_download(tmp_path):
    message = refused(tmp_path, None, False, name="oxford_pet", match=str(tmp_path / "oxford-iiit-pet"))
    assert "Oxford-IIIT Pet not found" in message and "data.download: true" in message


def test_oxford_pet_bad_trimap(tmp_path):
    make_pets(tmp_path)
    bad = tmp_path / "oxford-iiit-pet" / "annotations" / "trimaps" / "beagle_2.png"
    save(bad, np.zeros((8, 12), dtype=np.uint8))
    refused(tmp_path, None, False, name="oxford_pet", match=f"{bad}: pixel value 0 is not a trimap value")
