"""filter_classes and make_crops on small hand-made YOLO data sets with hand-computed answers."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adlab.detection.tools import crop_box, filter_classes, make_crops
from adlab.detection.yolo_format import read_data_yaml, read_labels, write_data_yaml
from adlab.errors import DataError

RED, BLACK = (255, 0, 0), (0, 0, 0)


def write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def image(path: Path, size=(100, 50), rects=()) -> None:
    """A black RGB image with coloured rectangles given as ((x1, y1, x2, y2) pixel edges, colour)."""
    arr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    for (x1, y1, x2, y2), colour in rects:
        arr[y1:y2, x1:x2] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def dataset(root: Path, names: list[str], files: dict[str, list[str]], splits=("train", "val")) -> Path:
    """files: 'split/stem' -> YOLO label lines (100x50 black images)."""
    for key, lines in files.items():
        split, stem = key.split("/")
        image(root / "images" / split / f"{stem}.png")
        write(root / "labels" / split / f"{stem}.txt", lines)
    return write_data_yaml(root, names, list(splits))


# --- filter --------------------------------------------------------------------------------------

PERSON, CAR, BIKE = (
    "0.100000 0.200000 0.100000 0.200000",
    "0.500000 0.500000 0.200000 0.400000",
    "0.800000 0.300000 0.100000 0.100000",
)


@pytest.fixture
def three_classes(tmp_path):
    return dataset(
        tmp_path / "src",
        ["person", "car", "bike"],
        {
            "train/x": [f"0 {PERSON}", f"1 {CAR}", f"2 {BIKE}"],
            "train/y": [f"0 {PERSON}"],
            "val/z": [f"1 {CAR}", f"1 {BIKE}"],
        },
    )


def labels_of(out: Path, split: str, stem: str) -> list[str]:
    return (out / "labels" / split / f"{stem}.txt").read_text().splitlines()


def test_filter_keeps_and_relabels(three_classes, tmp_path):
    out = tmp_path / "cars"
    summary = filter_classes(three_classes, ["CAR"], out)  # case-insensitive
    assert read_data_yaml(out / "data.yaml").names == ["car"]
    assert labels_of(out, "train", "x") == [f"0 {CAR}"]
    assert labels_of(out, "train", "y") == []
    assert labels_of(out, "val", "z") == [f"0 {CAR}", f"0 {BIKE}"]
    assert summary["images"] == {"train": 2, "val": 1}
    assert summary["objects"] == {"car": 3}
    assert summary["removed_objects"] == 3
    assert summary["dropped_images"] == 0
    assert (out / "images" / "train" / "y.png").is_file()


def test_filter_order_of_keep_gives_ids(three_classes, tmp_path):
    out = tmp_path / "two"
    filter_classes(three_classes, ["bike", "person"], out)
    assert read_data_yaml(out / "data.yaml").names == ["bike", "person"]
    assert labels_of(out, "train", "x") == [f"1 {PERSON}", f"0 {BIKE}"]


def test_filter_drop_empty(three_classes, tmp_path):
    out = tmp_path / "bikes"
    summary = filter_classes(three_classes, ["bike"], out, drop_empty=True)
    assert summary["dropped_images"] == 2  # y (a person only) and z (cars only)
    assert summary["images"] == {"train": 1, "val": 0}
    ds = read_data_yaml(out / "data.yaml")  # the emptied val split is not named in data.yaml
    assert [p.name for p in ds.images("train")] == ["x.png"]
    assert ds.splits["val"] == ds.splits["train"]
    assert labels_of(out, "train", "x") == [f"0 {BIKE}"]
    assert not (out / "images" / "train" / "y.png").exists()
    assert not (out / "labels" / "train" / "y.txt").exists()
    assert (out / "images" / "train" / "x.png").is_file()


def test_filter_nothing_left_for_training(three_classes, tmp_path):
    data = dataset(tmp_path / "src2", ["a", "b"], {"train/x": ["0 " + CAR], "val/y": ["1 " + CAR]})
    with pytest.raises(DataError, match="no training images left"):
        filter_classes(data, ["b"], tmp_path / "out", drop_empty=True)
    assert not (tmp_path / "out").exists()


def test_filter_unknown_name_lists_valid_ones(three_classes, tmp_path):
    with pytest.raises(DataError, match=r"data\.yaml: keep: unknown class 'truck' \(valid: person, car, bike\)"):
        filter_classes(three_classes, ["car", "truck"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_filter_keeps_by_id_too(three_classes, tmp_path):
    out = tmp_path / "ids"
    filter_classes(three_classes, ["2", "person"], out)  # the one rule of data.classes: names or ids
    assert read_data_yaml(out / "data.yaml").names == ["bike", "person"]


def test_filter_train_only_data_set_is_not_doubled(tmp_path):
    data = dataset(tmp_path / "src", ["a", "b"], {"train/x": ["1 " + CAR]}, splits=("train",))
    assert read_data_yaml(data).splits["val"] == read_data_yaml(data).splits["train"]  # val: images/train
    summary = filter_classes(data, ["b"], tmp_path / "out")
    assert summary["images"] == {"train": 1}
    assert summary["objects"] == {"b": 1}
    assert not (tmp_path / "out" / "images" / "val").exists()


def test_filter_refuses_to_overwrite_its_input(three_classes):
    with pytest.raises(DataError, match="overlaps the input"):
        filter_classes(three_classes, ["car"], three_classes.parent)
    assert labels_of(three_classes.parent, "train", "x")[2] == f"2 {BIKE}"


# --- crops ---------------------------------------------------------------------------------------


def read_manifest(out: Path) -> list[dict]:
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def crop_data(tmp_path):
    """a.png (100x50): a red box at pixels 20..40 x 10..30 (class car) and a green box at
    80..100 x 0..10 (class person, touching the top-right corner); b.png (100x50): a car with
    fractional edges 10.25..30.5 x 5.5..20.2 and a 5x5 person."""
    root = tmp_path / "src"
    image(root / "images" / "train" / "a.png", rects=[((20, 10, 40, 30), RED), ((80, 0, 100, 10), (0, 255, 0))])
    write(
        root / "labels" / "train" / "a.txt",
        [
            "1 0.300000 0.400000 0.200000 0.400000",  # (20+40)/2/100, (10+30)/2/50, 20/100, 20/50
            "0 0.900000 0.100000 0.200000 0.200000",  # (80+100)/2/100, (0+10)/2/50, 20/100, 10/50
        ],
    )
    image(root / "images" / "val" / "b.png")
    write(
        root / "labels" / "val" / "b.txt",
        [
            "1 0.203750 0.257000 0.202500 0.294000",  # x (10.25+30.5)/2/100, w 20.25/100; y (5.5+20.2)/2/50, h 14.7/50
            "0 0.525000 0.550000 0.050000 0.100000",  # 50..55 x 25..30: 5 x 5 px
        ],
    )
    return write_data_yaml(root, ["person", "car"], ["train", "val"])


def test_crop_is_exactly_the_box(crop_data, tmp_path):
    out = tmp_path / "crops"
    summary = make_crops(crop_data, out, size=16, pad=0.0, min_size=8)
    rows = read_manifest(out)
    by_crop = {r["crop"]: r for r in rows}
    car = by_crop["train/car/a_0.png"]
    assert [int(car[k]) for k in ("x1", "y1", "x2", "y2")] == [20, 10, 40, 30]
    assert car["split"] == "train" and car["class"] == "car"
    assert (out / car["source_image"]).resolve() == (crop_data.parent / "images" / "train" / "a.png").resolve()
    pixels = np.asarray(Image.open(out / "train" / "car" / "a_0.png"))
    assert pixels.shape == (16, 16, 3)
    assert (pixels == RED).all()  # nothing of the black background
    green = np.asarray(Image.open(out / "train" / "person" / "a_1.png"))
    assert (green == (0, 255, 0)).all()
    # fractional edges round outwards: floor 10.25 -> 10, floor 5.5 -> 5, ceil 30.5 -> 31, ceil 20.2 -> 21
    frac = by_crop["val/car/b_0.png"]
    assert [int(frac[k]) for k in ("x1", "y1", "x2", "y2")] == [10, 5, 31, 21]
    # the 5x5 person in b.png is under min_size 8
    assert summary["skipped_small"] == 1
    assert summary["crops"] == {"train": {"car": 1, "person": 1}, "val": {"car": 1}}
    assert summary["total"] == len(rows) == 3
    assert len(list(out.rglob("*.png"))) == 3
    assert list(rows[0]) == ["crop", "source_image", "split", "class", "x1", "y1", "x2", "y2"]


def test_pad_enlarges_and_clips(crop_data, tmp_path):
    out = tmp_path / "crops"
    make_crops(crop_data, out, size=16, pad=0.5, min_size=0)
    by_crop = {r["crop"]: [int(r[k]) for k in ("x1", "y1", "x2", "y2")] for r in read_manifest(out)}
    # red 20..40 x 10..30, 20 px each way, half of it added on each side: 10..50 x 0..40
    assert by_crop["train/car/a_0.png"] == [10, 0, 50, 40]
    # green 80..100 x 0..10: x 70..110 -> clipped 70..100; y -5..15 -> 0..15
    assert by_crop["train/person/a_1.png"] == [70, 0, 100, 15]
    # the 5x5 person 50..55 x 25..30 with min_size 0: 47.5..57.5 x 22.5..32.5 -> 47..58 x 22..33
    assert by_crop["val/person/b_1.png"] == [47, 22, 58, 33]
    pixels = np.asarray(Image.open(out / "train" / "car" / "a_0.png").resize((40, 40), Image.NEAREST))
    assert (pixels == RED).all(axis=-1).any() and (pixels == BLACK).all(axis=-1).any()


def test_crops_are_image_folders(crop_data, tmp_path):
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import find_classes

    out = tmp_path / "crops"
    make_crops(crop_data, out, size=8, min_size=8)
    classes, class_to_idx = find_classes(str(out / "train"))
    assert classes == ["car", "person"]
    assert class_to_idx == {"car": 0, "person": 1}
    folder = ImageFolder(str(out / "train"))
    assert len(folder) == 2
    x, y = folder[0]
    assert x.size == (8, 8) and y == 0
    assert find_classes(str(out / "val"))[0] == ["car"]


def test_crops_malformed_label_names_file_and_line(crop_data, tmp_path):
    label = crop_data.parent / "labels" / "val" / "b.txt"
    write(label, ["1 0.203750 0.257000 0.202500 0.294000", "0 0.5 0.5 0.1"])
    out = tmp_path / "crops"
    with pytest.raises(DataError, match=f"{label}:2: expected 5 fields"):
        make_crops(crop_data, out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]  # no temporary folder left behind
    summary = make_crops(crop_data, out, min_size=8, skip_bad=True)
    assert summary["skipped_bad"] == 1
    assert summary["total"] == 3  # two in a.png, the good car in b.png


def test_crops_refuse_class_names_that_escape(tmp_path):
    root = tmp_path / "src"
    image(root / "images" / "train" / "a.png", rects=[((20, 10, 40, 30), RED)])
    write(root / "labels" / "train" / "a.txt", ["0 0.300000 0.400000 0.200000 0.400000"])
    for bad in ("../x", "a\\b", "..", "a/b", ".hidden", " ", "x" * 300):
        data = write_data_yaml(root, [bad], ["train"])
        with pytest.raises(DataError, match=r"data.yaml: class name: "):
            make_crops(data, tmp_path / "crops")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_crops_every_label_read_with_read_labels(crop_data, tmp_path):
    # the inputs themselves are valid YOLO (guards the hand-written numbers above)
    ds = read_data_yaml(crop_data)
    total = sum(len(read_labels(ds.label_path(p), 2)) for s in ("train", "val") for p in ds.images(s))
    assert total == 4


# --- crop_box: the crop geometry, by hand -------------------------------------------------------------------


def _yolo(x1, y1, x2, y2, width=100, height=50):
    return np.array([(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height])


@pytest.mark.parametrize(
    "corners, pad, region, own",
    [
        ((10, 5, 30, 25), 0.0, (10, 5, 30, 25), (20, 20)),  # on pixel edges: exactly the box
        ((10.4, 5.6, 20.6, 24.2), 0.0, (10, 5, 21, 25), (10.2, 18.6)),  # rounded outwards
        ((-5, -10, 15, 20), 0.0, (0, 0, 15, 20), (15, 20)),  # clipped: own size is the part inside
        ((90, 40, 110, 60), 0.0, (90, 40, 100, 50), (10, 10)),
        ((10, 5, 30, 25), 0.5, (0, 0, 40, 35), (20, 20)),  # pad: half the box each side, clipped
        ((40, 20, 60, 30), 0.25, (35, 17, 65, 33), (20, 10)),  # y 17.5 and 32.5 rounded outwards
        ((40, 20, 60, 30), 1.0, (20, 10, 80, 40), (20, 10)),
        ((0, 0, 100, 50), 0.0, (0, 0, 100, 50), (100, 50)),
    ],
)
def test_crop_box_by_hand(corners, pad, region, own):
    got, own_w, own_h = crop_box(_yolo(*corners), 100, 50, pad)
    assert got == region and all(type(v) is int for v in got)
    assert (own_w, own_h) == pytest.approx(own, abs=1e-9)


def test_crop_box_absorbs_label_rounding_but_not_more():
    # 1e-6 of the larger side (100 px: 1e-4 px) is rounding of the 6-decimal label text, not a pixel
    assert crop_box(_yolo(10 - 7e-5, 5 - 7e-5, 30 + 7e-5, 25 + 7e-5), 100, 50, 0.0)[0] == (10, 5, 30, 25)
    assert crop_box(_yolo(10 - 3e-4, 5 - 3e-4, 30 + 3e-4, 25 + 3e-4), 100, 50, 0.0)[0] == (9, 4, 31, 26)
    # the larger side sets the tolerance: 7e-5 is inside 1e-6 * 100 but outside 1e-6 * 50
    assert crop_box(_yolo(10, 5, 30, 25 + 7e-5, 50, 100), 50, 100, 0.0)[0] == (10, 5, 30, 25)
    assert crop_box(_yolo(10, 5, 30 + 7e-5, 25, 100, 50), 100, 50, 0.0)[0] == (10, 5, 30, 25)


def test_crop_box_computes_in_float64():
    box = np.array([0.123457, 0.456789, 0.234567, 0.345678], dtype=np.float32)
    exact = box.astype(np.float64)
    x1, x2 = (exact[0] - exact[2] / 2) * 1000, (exact[0] + exact[2] / 2) * 1000
    _, own_w, _ = crop_box(box, 1000, 500, 0.0)
    assert own_w == pytest.approx(x2 - x1, rel=0, abs=1e-9)
