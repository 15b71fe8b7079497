"""Synthetic wide scenes: layout, exact labels, determinism, overlap/border cases, argument errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adlab.detection.synth import load_pool, make_background, parse_size, render_scene, synth_scenes
from adlab.detection.yolo_format import read_data_yaml, read_labels, yolo_to_pixels
from adlab.errors import DataError

W, H = 384, 128


@pytest.fixture(scope="module")
def digits_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "digits"
    summary = synth_scenes(out, 30, source="digits", seed=0)
    return out, summary


@pytest.fixture(scope="module")
def digits_pool():
    return load_pool("digits")


def pixel_boxes(label_file: Path, num_classes: int, width: int = W, height: int = H) -> np.ndarray:
    rows = read_labels(label_file, num_classes)
    return np.concatenate([rows[:, :1], yolo_to_pixels(rows[:, 1:], width, height)], 1)


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_layout_and_data_yaml_are_consistent(digits_set):
    out, summary = digits_set
    dataset = read_data_yaml(summary["data_yaml"])
    assert Path(summary["data_yaml"]) == out / "data.yaml"
    assert dataset.names == ["0", "1", "7"]
    assert summary["source"] == "digits"
    assert set(dataset.splits) == {"train", "val"}
    assert summary["images"] == {"train": 24, "val": 6}
    for split, n in summary["images"].items():
        images = dataset.images(split)
        assert len(images) == n
        labels = sorted((out / "labels" / split).glob("*.txt"))
        assert [p.stem for p in images] == [p.stem for p in labels]
        assert all(dataset.label_path(p).is_file() for p in images)
        with Image.open(images[0]) as im:
            assert im.size == (W, H) and im.mode == "RGB"
    assert not set(p.stem for p in dataset.images("train")) & set(p.stem for p in dataset.images("val"))


def test_labels_are_valid_and_counted(digits_set):
    out, summary = digits_set
    counts = np.zeros(3, dtype=int)
    for label_file in sorted((out / "labels").rglob("*.txt")):
        boxes = pixel_boxes(label_file, 3)  # raises DataError on any invalid line
        for cls, x1, y1, x2, y2 in boxes:
            counts[int(cls)] += 1
            # boxes are whole pixels (tight mask boxes), at least 4 px, inside the image
            assert np.allclose([x1, y1, x2, y2], np.round([x1, y1, x2, y2]), atol=2e-3)
            assert x2 - x1 >= 4 - 2e-3 and y2 - y1 >= 4 - 2e-3
            assert -1e-3 <= x1 and x2 <= W + 1e-3 and -1e-3 <= y1 and y2 <= H + 1e-3
    assert counts.sum() > 30  # 1-6 objects tried per image
    assert summary["objects"] == {"0": counts[0], "1": counts[1], "7": counts[2]}


def test_render_scene_boxes_are_tight_and_only_objects_change_pixels(digits_pool):
    rng = np.random.default_rng(5)
    drawn = 0
    for _ in range(20):
        background = make_background(rng, (W, H))
        objects = digits_pool.sample(rng, 5)
        image, boxes, masks = render_scene(rng, objects, (W, H), background=background)
        assert image.shape == (H, W, 3) and image.dtype == np.uint8
        assert len(boxes) == len(masks) <= 5
        assert set(boxes[:, 0].astype(int)) <= {cls for cls, _ in objects}
        union = np.zeros((H, W), dtype=bool)
        for box, mask in zip(boxes, masks, strict=True):
            assert mask.shape == (H, W) and mask.any()
            assert tuple(box[1:]) == tight_box(mask)
            # the object is really painted inside its mask
            assert (image[mask] != background[mask]).any(-1).mean() > 0.5
            union |= mask
        assert np.array_equal(image[~union], background[~union])
        drawn += len(boxes)
    assert drawn > 40


def test_dropped_objects_rules_with_solid_squares():
    """A solid 40 x 40 square has a known full area: every kept one shows >= 30% of it and >= 4 px."""
    rng = np.random.default_rng(0)
    square = np.ones((28, 28), dtype=np.float32)
    clipped = kept = 0
    for _ in range(40):
        _, boxes, masks = render_scene(rng, [(0, square)] * 6, (W, H), heights=(40, 40))
        for box, mask in zip(boxes, masks, strict=True):
            kept += 1
            assert mask.sum() >= 0.3 * 40 * 40
            assert box[3] - box[1] >= 4 and box[4] - box[2] >= 4
            assert mask.sum() <= 40 * 40
            clipped += mask.sum() < 40 * 40
    assert kept > 80
    assert clipped > 0  # the border case is exercised, not avoided


def test_same_seed_same_bytes_different_seed_different(tmp_path):
    def files(folder):
        return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    a = files(Path(synth_scenes(tmp_path / "a", 12, source="digits", seed=3)["data_yaml"]).parent)
    b = files(Path(synth_scenes(tmp_path / "b", 12, source="digits", seed=3)["data_yaml"]).parent)
    c = files(Path(synth_scenes(tmp_path / "c", 12, source="digits", seed=4)["data_yaml"]).parent)
    assert a == b
    assert a.keys() == c.keys()
    images = [k for k in a if k.suffix == ".png"]
    assert sum(a[k] != c[k] for k in images) == len(images)


def test_objects_overlap_and_touch_the_border(tmp_path):
    summary = synth_scenes(tmp_path / "s", 100, source="digits", seed=1, val_fraction=0.0)
    border = overlaps = total = 0
    for label_file in (tmp_path / "s" / "labels" / "train").glob("*.txt"):
        boxes = pixel_boxes(label_file, 3)[:, 1:]
        total += len(boxes)
        at_edge = (boxes[:, 0] < 0.5) | (boxes[:, 1] < 0.5) | (boxes[:, 2] > W - 0.5) | (boxes[:, 3] > H - 0.5)
        border += int(at_edge.sum())
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                iw = min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0])
                ih = min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1])
                overlaps += iw > 1 and ih > 1
    assert total == sum(summary["objects"].values())
    assert border >= 0.05 * total
    assert overlaps >= 10


def test_val_fraction_zero_writes_train_only(tmp_path):
    summary = synth_scenes(tmp_path / "t", 12, source="digits", val_fraction=0)
    assert summary["images"] == {"train": 12, "val": 0}
    assert not (tmp_path / "t" / "images" / "val").exists()
    assert not (tmp_path / "t" / "labels" / "val").exists()
    dataset = read_data_yaml(tmp_path / "t" / "data.yaml")
    assert dataset.splits["val"] == dataset.splits["train"]  # ultralytics needs a val entry
    assert len(dataset.images("train")) == 12


def test_classes_choose_and_order_label_ids(tmp_path, digits_pool):
    pool = load_pool("digits", ["7", "0"])
    assert pool.classes == ["7", "0"]
    from sklearn.datasets import load_digits

    digits = load_digits()
    sevens = digits.images[digits.target == 7].astype(np.float32) / 16
    assert np.allclose(pool.images[pool.labels == 0], sevens)  # id 0 is the first class given
    assert len(pool.images) == int(np.isin(digits.target, [7, 0]).sum())

    summary = synth_scenes(tmp_path / "c", 12, classes=["7", "0"], source="digits", size=(256, 96))
    dataset = read_data_yaml(summary["data_yaml"])
    assert dataset.names == ["7", "0"] and set(summary["objects"]) == {"7", "0"}
    ids = np.concatenate([read_labels(p, 2)[:, 0] for p in (tmp_path / "c" / "labels").rglob("*.txt")])
    assert set(ids.astype(int)) == {0, 1}
    with Image.open(dataset.images("train")[0]) as im:
        assert im.size == (256, 96)


def test_no_objects_gives_empty_label_files(tmp_path):
    summary = synth_scenes(tmp_path / "e", 3, source="digits", objects=(0, 0), val_fraction=0)
    labels = sorted((tmp_path / "e" / "labels" / "train").glob("*.txt"))
    assert len(labels) == 3 and all(p.read_text() == "" for p in labels)
    assert sum(summary["objects"].values()) == 0


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    synth_scenes(tmp_path / "o", 12, source="digits")
    with pytest.raises(DataError, match="already exists"):
        synth_scenes(tmp_path / "o", 12, source="digits")
    summary = synth_scenes(tmp_path / "o", 4, source="digits", overwrite=True)
    assert summary["images"] == {"train": 3, "val": 1}
    assert len(list((tmp_path / "o" / "images").rglob("*.png"))) == 4  # the old 12 are gone
    assert len(list((tmp_path / "o" / "labels").rglob("*.txt"))) == 4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"images": 0}, "images"),
        ({"images": 2.5}, "images"),
        ({"size": (10, 10)}, "size"),
        ({"size": (384,)}, "size"),
        ({"size": "wide"}, "size"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_fraction": -0.1}, "val_fraction"),
        ({"objects": (3, 1)}, "objects"),
        ({"source": "cifar10"}, "unknown object source"),
        ({"classes": ["cat"]}, "valid: 0, 1, 2"),
        ({"classes": []}, "at least one"),
        ({"classes": ["1", "1"]}, "twice"),
    ],
)
def test_bad_arguments_raise_data_error(tmp_path, kwargs, message):
    args = {"images": 5, "source": "digits", **kwargs}
    with pytest.raises(DataError, match=message):
        synth_scenes(tmp_path / "bad", **args)
    assert not (tmp_path / "bad" / "data.yaml").exists()


def test_parse_size():
    assert parse_size("384x128") == (384, 128)
    assert parse_size("640X192") == (640, 192)
    with pytest.raises(DataError):
        parse_size("384")


@pytest.mark.requires("fashion-mnist")
def test_fashion_mnist_is_the_default_source(tmp_path):
    summary = synth_scenes(tmp_path / "f", 12, seed=0)
    assert summary["source"] == "fashion_mnist"
    dataset = read_data_yaml(summary["data_yaml"])
    assert dataset.names == ["Trouser", "Bag", "Sneaker"]
    assert sum(summary["objects"].values()) > 0
    for label_file in (tmp_path / "f" / "labels").rglob("*.txt"):
        read_labels(label_file, 3)
    pool = load_pool("fashion_mnist", ["bag", "Ankle boot"])  # case-insensitive names, train split only
    assert pool.classes == ["Bag", "Ankle boot"]
    assert pool.images.shape == (12000, 28, 28)
    assert np.bincount(pool.labels).tolist() == [6000, 6000]
