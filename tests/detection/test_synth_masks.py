"""synth-scenes --masks: the same folder is a YOLO data set and a `masks` segmentation data set, the
masks agree pixel for pixel with what is drawn, and the images and labels are unchanged by them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adlab.data.masks import load_masks
from adlab.detection.synth import class_mask, load_pool, make_background, render_scene, synth_scenes
from adlab.detection.yolo_format import read_labels, yolo_to_pixels

W, H = 96, 48
N = 6  # 5 train, 1 val


@pytest.fixture(scope="module")
def with_masks(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "s"
    summary = synth_scenes(out, N, size=(W, H), source="digits", seed=2, objects=(2, 5), masks=True)
    return out, summary


def files(folder: Path, *parts: str) -> dict[Path, bytes]:
    return {
        p.relative_to(folder): p.read_bytes()
        for part in parts
        for p in sorted((folder / part).rglob("*"))
        if p.is_file()
    }


def test_masks_read_back_as_a_masks_data_set(with_masks):
    out, summary = with_masks
    assert summary["masks"] == str(out / "masks")
    assert (out / "data.yaml").is_file() and (out / "classes.yaml").is_file()
    source = load_masks("masks", str(out), None)
    assert source.class_names == ["background", "0", "1", "7"]
    assert source.train_x.shape == (5, 3, H, W) and source.train_m.shape == (5, H, W)
    assert source.val_m is not None and source.val_m.shape == (1, H, W) and source.test_m is None
    counts = np.bincount(source.train_m.flatten().numpy(), minlength=4)
    assert len(counts) == 4  # ids 0..3 only: no 255, nothing past the last class
    assert all(counts[k] > 0 for k in range(4))  # background and each of the three classes drawn somewhere


def test_every_mask_pixel_lies_in_a_box_of_its_class(with_masks):
    out, _ = with_masks
    objects = 0
    for label_file in sorted((out / "labels").rglob("*.txt")):
        split = label_file.parent.name
        with Image.open(out / "masks" / split / f"{label_file.stem}.png") as im:
            assert im.mode == "L"
            ids = np.asarray(im)
        rows = read_labels(label_file, 3)
        boxes = np.rint(yolo_to_pixels(rows[:, 1:], W, H)).astype(int)
        inside = np.zeros((4, H, W), dtype=bool)
        for cls, (x1, y1, x2, y2) in zip(rows[:, 0].astype(int), boxes, strict=True):
            inside[cls + 1, y1:y2, x1:x2] = True
            objects += 1
        for k in range(1, 4):
            assert not ((ids == k) & ~inside[k]).any(), (label_file, k)
        assert (ids > 0).any() == (len(rows) > 0)
    assert objects >= N  # 2-5 objects tried per image


def test_masks_agree_exactly_with_the_drawing(with_masks):
    """The same random stream as synth_scenes, drawn again: each mask is the class of the object on top,
    and outside every object the image is exactly the background."""
    out, _ = with_masks
    pool = load_pool("digits")
    rng = np.random.default_rng(2)
    for index in range(N):
        split = "val" if index == N - 1 else "train"
        objects = pool.sample(rng, int(rng.integers(2, 6)))
        background = make_background(rng, (W, H))  # what render_scene draws first when given none
        image, boxes, masks = render_scene(rng, objects, (W, H), background=background)
        with Image.open(out / "images" / split / f"{index:06d}.png") as im:
            assert np.array_equal(np.asarray(im), image)
        with Image.open(out / "masks" / split / f"{index:06d}.png") as im:
            ids = np.asarray(im)
        assert np.array_equal(ids, class_mask(boxes, masks, (W, H)))
        drawn = np.logical_or.reduce(masks) if masks else np.zeros((H, W), dtype=bool)
        assert np.array_equal(ids > 0, drawn)
        assert np.array_equal(image[ids == 0], background[ids == 0])
        if len(masks) > 1:  # where objects overlap the later one wins
            last = masks[-1]
            assert (ids[last] == int(boxes[-1, 0]) + 1).all()


def test_class_mask_later_objects_win():
    a = np.zeros((4, 6), dtype=bool)
    a[0:3, 0:4] = True
    b = np.zeros((4, 6), dtype=bool)
    b[1:4, 2:6] = True
    ids = class_mask(np.array([[2, 0, 0, 4, 3], [0, 2, 1, 6, 4]], dtype=float), [a, b], (6, 4))
    expected = np.array([[3, 3, 3, 3, 0, 0], [3, 3, 1, 1, 1, 1], [3, 3, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])
    assert np.array_equal(ids, expected) and ids.dtype == np.uint8


def test_images_and_labels_are_the_same_bytes_without_masks(with_masks, tmp_path):
    out, _ = with_masks
    summary = synth_scenes(tmp_path / "plain", N, size=(W, H), source="digits", seed=2, objects=(2, 5))
    assert summary["masks"] is None
    assert not (tmp_path / "plain" / "masks").exists() and not (tmp_path / "plain" / "classes.yaml").exists()
    plain = files(tmp_path / "plain", "images", "labels")
    assert len(plain) == 2 * N
    assert plain == files(out, "images", "labels")
    assert (tmp_path / "plain" / "data.yaml").read_bytes() == (out / "data.yaml").read_bytes()


def test_same_seed_same_mask_bytes(with_masks, tmp_path):
    out, _ = with_masks
    synth_scenes(tmp_path / "again", N, size=(W, H), source="digits", seed=2, objects=(2, 5), masks=True)
    again = files(tmp_path / "again", "masks")
    assert len(again) == N
    assert again == files(out, "masks")
    assert (tmp_path / "again" / "classes.yaml").read_bytes() == (out / "classes.yaml").read_bytes()


def test_cli_flag_writes_masks(cli):
    line = cli.succeeds(
        "data",
        "synth-scenes",
        "--out",
        "s",
        "--images",
        "3",
        "--size",
        "64x32",
        "--source",
        "digits",
        "--masks",
        outputs=("s",),
    )
    assert "masks: s/masks" in line.splitlines()
    assert len(list((cli.root / "s" / "masks" / "train").glob("*.png"))) == 2
    assert load_masks("masks", str(cli.root / "s"), None).class_names == ["background", "0", "1", "7"]
