"""KITTI -> YOLO conversion, checked against hand-computed numbers on small hand-made label files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from adlab.detection import kitti as kitti_module
from adlab.detection.kitti import kitti_to_yolo
from adlab.detection.yolo_format import read_data_yaml, read_labels
from adlab.errors import DataError
from adlab.image_formats import YOLO_IMAGE_SUFFIXES

CLASSES = ["Car", "Pedestrian", "Cyclist"]
REST = "1.50 1.60 3.90 1.00 1.50 20.00 -1.55"  # h w l x y z ry


def kline(kind: str, x1, y1, x2, y2, score: float | None = None) -> str:
    """One KITTI devkit label line: 15 fields, 16 with a score."""
    line = f"{kind} 0.00 0 -1.57 {x1} {y1} {x2} {y2} {REST}"
    return line if score is None else f"{line} {score}"


def png(path: Path, size=(100, 50)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (30, 60, 90)).save(path)


def write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def label_lines(out: Path, split: str, stem: str) -> list[str]:
    return (out / "labels" / split / f"{stem}.txt").read_text().splitlines()


@pytest.fixture
def kitti(tmp_path):
    """a.png 100x50 with every kind of object, b.png 200x100 with an empty label file,
    c.jpg 100x50 with no label file, d.png 200x100 with one car."""
    images, labels = tmp_path / "image_2", tmp_path / "label_2"
    png(images / "a.png")
    write(
        labels / "a.txt",
        [
            kline("Car", 10, 5, 30, 25),  # inside: cx 20/100, cy 15/50, w 20/100, h 20/50
            kline("Car", -10, -5, 20, 60),  # clipped to 0 0 20 50
            kline("Pedestrian", 40, 10, 60, 40),  # -> Person
            kline("DontCare", 0, 0, 5, 5),
            kline("Van", 50, 10, 70, 30),
            kline("Car", 50, 10, 50.5, 40),  # 0.5 px wide: degenerate
            kline("Cyclist", 70, 0, 90, 50, 0.93),  # 16 fields (with score)
            kline("Car", 120, 10, 150, 20),  # entirely right of the image: degenerate after clipping
            "",
        ],
    )
    png(images / "b.png", size=(200, 100))
    write(labels / "b.txt", [])
    png(images / "c.jpg")
    png(images / "d.png", size=(200, 100))
    write(labels / "d.txt", [kline("Car", 10, 5, 30, 25)])  # normalised by 200 x 100 this time
    return images, labels


def test_exact_numbers_clipping_drops_and_rename(kitti, tmp_path):
    images, labels = kitti
    out = tmp_path / "yolo"
    summary = kitti_to_yolo(images, labels, out, CLASSES, rename={"Pedestrian": "Person"}, val_fraction=0)
    assert label_lines(out, "train", "a") == [
        "0 0.200000 0.300000 0.200000 0.400000",
        "0 0.100000 0.500000 0.200000 1.000000",
        "1 0.500000 0.500000 0.200000 0.600000",
        "2 0.800000 0.500000 0.200000 1.000000",
    ]
    assert label_lines(out, "train", "b") == []  # empty label file -> image with empty labels
    assert label_lines(out, "train", "c") == []  # no label file -> no objects
    assert label_lines(out, "train", "d") == ["0 0.100000 0.150000 0.100000 0.200000"]
    assert summary["names"] == ["Car", "Person", "Cyclist"]
    assert summary["images"] == {"train": 4}
    assert summary["objects"] == {"Car": 3, "Person": 1, "Cyclist": 1}
    assert summary["dropped"] == {"DontCare": 1, "Van": 1}
    assert summary["degenerate"] == 2
    assert summary["clipped"] == 1
    assert summary["skipped"] == 0
    assert summary["images_without_labels"] == 1
    assert summary["data_yaml"] == str((out / "data.yaml").resolve())

    ds = read_data_yaml(out / "data.yaml")
    assert ds.names == ["Car", "Person", "Cyclist"]
    assert not (out / "images" / "val").exists()  # val_fraction 0: no val folder
    assert sorted(p.name for p in ds.images("train")) == ["a.png", "b.png", "c.jpg", "d.png"]
    for image in ds.images("train"):
        assert ds.label_path(image).is_file()
        read_labels(ds.label_path(image), len(ds.names))  # raises on any bad line
    # the images are the same files (linked or copied), names kept
    assert (out / "images" / "train" / "a.png").read_bytes() == (images / "a.png").read_bytes()


def test_two_types_can_share_one_output_class(kitti, tmp_path):
    images, labels = kitti
    out = tmp_path / "yolo"
    summary = kitti_to_yolo(
        images, labels, out, ["Car", "Van", "Pedestrian"], rename={"Van": "Car", "Pedestrian": "Person"}, val_fraction=0
    )
    assert summary["names"] == ["Car", "Person"]
    assert read_data_yaml(out / "data.yaml").names == ["Car", "Person"]
    lines = label_lines(out, "train", "a")
    assert "0 0.600000 0.400000 0.200000 0.400000" in lines  # the Van (50 10 70 30), now Car
    assert "1 0.500000 0.500000 0.200000 0.600000" in lines  # Pedestrian -> Person, id 1
    assert summary["objects"] == {"Car": 4, "Person": 1}
    assert summary["dropped"] == {"Cyclist": 1, "DontCare": 1}


@pytest.mark.parametrize(
    "bad, problem",
    [
        (kline("Car", 1, 2, 3, 4).rsplit(" ", 1)[0], "expected 15 or 16 fields"),
        (kline("Car", 1, 2, 3, 4) + " 0.5 7", "found 17"),
        (kline("Car", 1, "two", 3, 4), "non-numeric"),
        (kline("Car", 30, 2, 10, 4), "x2 < x1"),
    ],
)
def test_malformed_line_names_file_and_line(kitti, tmp_path, bad, problem):
    images, labels = kitti
    write(labels / "a.txt", [kline("Car", 10, 5, 30, 25), bad])
    out = tmp_path / "yolo"
    with pytest.raises(DataError) as info:
        kitti_to_yolo(images, labels, out, CLASSES)
    assert f"{labels / 'a.txt'}:2:" in str(info.value)
    assert problem in str(info.value)
    assert not out.exists()


def test_skip_bad_counts_instead(kitti, tmp_path):
    images, labels = kitti
    write(
        labels / "a.txt",
        [kline("Car", 10, 5, 30, 25), "Car 1 2 3", kline("Car", 1, "x", 3, 4), kline("Car", 30, 2, 10, 4)],
    )
    write(labels / "orphan.txt", [kline("Car", 1, 2, 3, 4)])
    out = tmp_path / "yolo"
    summary = kitti_to_yolo(images, labels, out, CLASSES, val_fraction=0, skip_bad=True)
    assert summary["skipped"] == 4
    assert summary["skipped_reasons"] == {
        "box corners out of order": 1,
        "expected 15 or 16 fields": 1,
        "label file without image": 1,
        "non-numeric value": 1,
    }
    assert label_lines(out, "train", "a") == ["0 0.200000 0.300000 0.200000 0.400000"]
    assert not (out / "labels" / "train" / "orphan.txt").exists()


def test_label_without_image_is_an_error(kitti, tmp_path):
    images, labels = kitti
    write(labels / "orphan.txt", [kline("Car", 1, 2, 3, 4)])
    with pytest.raises(DataError, match="orphan.txt: label file without an image"):
        kitti_to_yolo(images, labels, tmp_path / "yolo", CLASSES)


def test_every_image_format_ultralytics_reads_is_converted(tmp_path):
    # KITTI images become a YOLO data set, so they follow ultralytics' list (a .bmp was skipped once)
    images, labels = tmp_path / "img", tmp_path / "lab"
    png(images / "a.bmp")
    png(images / "b.webp")
    write(labels / "a.txt", [kline("Car", 10, 5, 30, 25)])
    (images / "notes.gif").write_bytes(b"GIF89a")  # not an image format of ultralytics: ignored
    summary = kitti_to_yolo(images, labels, tmp_path / "yolo", CLASSES, val_fraction=0)
    assert summary["images"] == {"train": 2}
    assert sorted(p.name for p in read_data_yaml(tmp_path / "yolo" / "data.yaml").images("train")) == [
        "a.bmp",
        "b.webp",
    ]


def test_seeded_split_is_reproducible(tmp_path):
    images, labels = tmp_path / "img", tmp_path / "lab"
    for i in range(10):
        png(images / f"{i:06d}.png")
        write(labels / f"{i:06d}.txt", [kline("Car", 10, 5, 30, 25)])

    def val_set(seed: int, name: str) -> set[str]:
        summary = kitti_to_yolo(images, labels, tmp_path / name, CLASSES, val_fraction=0.3, seed=seed)
        assert summary["images"] == {"train": 7, "val": 3}
        ds = read_data_yaml(tmp_path / name / "data.yaml")
        assert set(ds.splits) == {"train", "val"}
        for split in ("train", "val"):
            for image in ds.images(split):
                assert len(read_labels(ds.label_path(image), len(ds.names))) == 1
        return {p.name for p in ds.images("val")}

    first = val_set(0, "a")
    assert len(first) == 3
    assert val_set(0, "b") == first
    assert any(val_set(seed, f"s{seed}") != first for seed in (1, 2, 3))


def test_refuses_foreign_folder_but_replaces_previous_output(kitti, tmp_path):
    images, labels = kitti
    foreign = tmp_path / "mine"
    write(foreign / "notes.txt", ["keep me"])
    with pytest.raises(DataError, match="not empty"):
        kitti_to_yolo(images, labels, foreign, CLASSES)
    assert (foreign / "notes.txt").read_text() == "keep me\n"

    out = tmp_path / "yolo"
    kitti_to_yolo(images, labels, out, CLASSES, val_fraction=0)
    (out / "stale.txt").write_text("from before")
    with pytest.raises(DataError, match="already exists.*--overwrite"):  # a previous output: only on request
        kitti_to_yolo(images, labels, out, ["Car"], val_fraction=0)
    assert (out / "stale.txt").read_text() == "from before"
    summary = kitti_to_yolo(images, labels, out, ["Car"], val_fraction=0, overwrite=True)  # replaced
    assert read_data_yaml(out / "data.yaml").names == ["Car"]
    assert not (out / "stale.txt").exists()
    assert summary["objects"] == {"Car": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image_2", "label_2", "mine", "yolo"]  # no temp folders


def test_error_while_writing_leaves_nothing(kitti, tmp_path, monkeypatch):
    images, labels = kitti

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(kitti_module, "write_data_yaml", broken)
    with pytest.raises(OSError, match="disk full"):
        kitti_to_yolo(images, labels, tmp_path / "yolo", CLASSES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image_2", "label_2"]


def test_bad_arguments(kitti, tmp_path):
    images, labels = kitti
    with pytest.raises(DataError, match="rename: 'Truck' is not one of the classes"):
        kitti_to_yolo(images, labels, tmp_path / "o", CLASSES, rename={"Truck": "Lorry"})
    with pytest.raises(DataError, match="val_fraction"):
        kitti_to_yolo(images, labels, tmp_path / "o", CLASSES, val_fraction=1.0)
    with pytest.raises(DataError, match="KITTI labels folder not found"):
        kitti_to_yolo(images, tmp_path / "missing", tmp_path / "o", CLASSES)
    with pytest.raises(DataError, match="overlaps the input"):
        kitti_to_yolo(images, labels, images / "yolo", CLASSES)


# --- the one-pixel rule at its boundary ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "corners, kept",
    [
        ((10, 5, 11, 25), False),  # exactly 1 px wide: dropped (<= DEGENERATE_PX)
        ((10, 5, 30, 6), False),  # exactly 1 px high
        ((10, 5, 10, 25), False),  # 0 px: in order, but degenerate
        ((10, 5, 11.01, 25), True),  # just over 1 px
        ((10, 5, 30, 6.01), True),
        ((-5, 5, 1, 25), False),  # 1 px wide once clipped at the left edge
        ((99, 5, 120, 25), False),  # 1 px wide once clipped at the right edge (image 100 px)
        ((-5, 5, 1.5, 25), True),  # 1.5 px once clipped
        ((5, 49, 20, 70), False),  # 1 px high once clipped at the bottom (image 50 px)
    ],
)
def test_one_pixel_boxes_at_the_boundary(tmp_path, corners, kept):
    images, labels = tmp_path / "image_2", tmp_path / "label_2"
    png(images / "a.png")  # 100 x 50
    write(labels / "a.txt", [kline("Car", *corners)])
    summary = kitti_to_yolo(images, labels, tmp_path / "yolo", CLASSES, val_fraction=0)
    assert summary["degenerate"] == (0 if kept else 1)
    assert summary["objects"]["Car"] == (1 if kept else 0)
    assert len(label_lines(tmp_path / "yolo", "train", "a")) == (1 if kept else 0)
    assert kitti_module.DEGENERATE_PX == 1.0


def test_a_box_on_the_image_edges_is_not_clipped(tmp_path):
    images, labels = tmp_path / "image_2", tmp_path / "label_2"
    png(images / "a.png")
    write(labels / "a.txt", [kline("Car", 0, 0, 100, 50), kline("Car", 0, 0, 100.5, 50)])
    summary = kitti_to_yolo(images, labels, tmp_path / "yolo", CLASSES, val_fraction=0)
    assert summary["clipped"] == 1 and summary["degenerate"] == 0
    assert label_lines(tmp_path / "yolo", "train", "a") == ["0 0.500000 0.500000 1.000000 1.000000"] * 2


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_values_are_refused(tmp_path, value):
    images, labels = tmp_path / "image_2", tmp_path / "label_2"
    png(images / "a.png")
    write(labels / "a.txt", [kline("Car", 10, 5, value, 25)])
    with pytest.raises(DataError, match=r"a.txt:1: non-finite value"):
        kitti_to_yolo(images, labels, tmp_path / "yolo", CLASSES, val_fraction=0)


def test_corners_equal_are_in_order_and_y_out_of_order_is_refused(tmp_path):
    from adlab.detection.kitti import parse_kitti_line

    problem, parsed = parse_kitti_line(kline("Car", 10, 5, 10, 5))
    assert problem is None and parsed[0] == "Car" and parsed[1].tolist() == [10, 5, 10, 5]
    problem, parsed = parse_kitti_line(kline("Car", 10, 25, 30, 5))
    assert parsed is None and problem.startswith(
        "box corners out of order (x2 < x1 or y2 < y1: x1 y1 x2 y2 = 10 25 30 5)"
    )
    problem, parsed = parse_kitti_line(kline("Car", 1, 2, 3, 4, 0.5))
    assert problem is None and parsed[1].tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "count, fraction, n_val",
    [
        (10, 0.2, 2),
        (10, 0.0, 0),
        (1, 0.5, 0),
        (2, 0.1, 1),  # a fraction > 0 gives at least one val image ...
        (3, 0.1, 1),
        (3, 0.5, 2),
        (3, 0.99, 2),
        (4, 1.0, 3),  # ... and never an empty train split
        (5, 0.3, 2),
        (0, 0.5, 0),
    ],
)
def test_split_sizes(count, fraction, n_val):
    mask = kitti_module._split(count, fraction, seed=0)
    assert mask.dtype == bool and mask.shape == (count,) and int(mask.sum()) == n_val


def test_split_is_seeded():
    a, b = kitti_module._split(50, 0.3, 1), kitti_module._split(50, 0.3, 1)
    assert (a == b).all() and not (a == kitti_module._split(50, 0.3, 2)).all()


def test_class_map_names_ids_and_spelling():
    names, type_to_id, spelled = kitti_module._class_map(
        [" Car ", "Van", "Pedestrian"], {"van": " Car", "PEDESTRIAN": "Person"}
    )
    assert names == ["Car", "Person"]
    assert type_to_id == {"car": 0, "van": 0, "pedestrian": 1}
    assert spelled == {"car": "Car", "van": "Van", "pedestrian": "Pedestrian"}


@pytest.mark.parametrize(
    "classes, rename, message",
    [
        ([], None, "classes: name at least one KITTI type to keep (e.g. Car,Pedestrian,Cyclist)"),
        (["Car", " "], None, "classes: name at least one KITTI type to keep (e.g. Car,Pedestrian,Cyclist)"),
        (["Car", "car"], None, "classes: Car, car named more than once"),
        (["Car", "Van", "CAR", "van", "Cyclist"], None, "classes: CAR, Car, Van, van named more than once"),
        (["Car", "Van"], {"Truck": "Car"}, "rename: 'Truck' is not one of the classes (Car, Van)"),
        (["Car", "Van"], {"Van": "  "}, "rename: empty new name for 'Van'"),
    ],
)
def test_class_map_refusals(classes, rename, message):
    with pytest.raises(DataError) as info:
        kitti_module._class_map(classes, rename)
    assert str(info.value) == message


@pytest.mark.parametrize("missing", ["images", "labels"])
def test_a_missing_folder_is_named_with_its_role(tmp_path, missing):
    images, labels = tmp_path / "image_2", tmp_path / "label_2"
    png(images / "a.png")
    write(labels / "a.txt", [])
    gone = images if missing == "images" else labels
    shutil.rmtree(gone)
    with pytest.raises(DataError) as info:
        kitti_to_yolo(images, labels, tmp_path / "yolo", CLASSES)
    assert str(info.value) == f"{gone}: KITTI {missing} folder not found"


def test_two_images_with_one_stem_are_refused(tmp_path):
    images, labels = tmp_path / "image_2", tmp_path / "label_2"
    png(images / "a.jpg")
    png(images / "a.png")
    write(labels / "a.txt", [])
    with pytest.raises(DataError) as info:
        kitti_to_yolo(images, labels, tmp_path / "yolo", CLASSES)
    assert str(info.value) == f"{images / 'a.png'}: same name as {images / 'a.jpg'} (one label file cannot serve both)"


def test_only_txt_files_in_the_label_folder_are_labels(tmp_path):
    images, labels = tmp_path / "image_2", tmp_path / "label_2"
    png(images / "a.png")
    write(labels / "a.txt", [kline("Car", 10, 5, 30, 25)])
    write(labels / "README.md", ["notes"])
    (labels / "extra.txt").mkdir()
    summary = kitti_to_yolo(images, labels, tmp_path / "yolo", CLASSES, val_fraction=0)
    assert summary["images"] == {"train": 1} and summary["skipped"] == 0


def test_unreadable_images_are_counted_with_skip_bad_and_the_rest_converted(tmp_path):
    images, labels = tmp_path / "image_2", tmp_path / "label_2"
    (images).mkdir(parents=True)
    (images / "a.png").write_bytes(b"not a png")  # first in name order
    png(images / "b.png")
    png(images / "c.png")
    write(labels / "b.txt", [kline("Car", 10, 5, 30, 25)])
    summary = kitti_to_yolo(images, labels, tmp_path / "yolo", CLASSES, val_fraction=0, skip_bad=True)
    assert (
        summary["images"] == {"train": 2}
        and summary["skipped"] == 1
        and summary["objects"] == {"Car": 1, "Pedestrian": 0, "Cyclist": 0}
    )


def test_undecodable_bytes_in_a_label_file_are_replaced_not_fatal(tmp_path):
    images, labels = tmp_path / "image_2", tmp_path / "label_2"
    png(images / "a.png")
    labels.mkdir()
    (labels / "a.txt").write_bytes(
        kline("Car", 10, 5, 30, 25).encode() + b"\n" + kline("Tr\xffck", 10, 5, 30, 25).encode("latin-1") + b"\n"
    )
    summary = kitti_to_yolo(images, labels, tmp_path / "yolo", CLASSES, val_fraction=0)
    assert summary["objects"]["Car"] == 1 and summary["dropped"] == {"Tr\ufffdck": 1}


def test_the_default_split_is_seed_0(tmp_path):
    images, labels = tmp_path / "image_2", tmp_path / "label_2"
    for i in range(10):
        png(images / f"{i}.png")
    labels.mkdir()
    kitti_to_yolo(images, labels, tmp_path / "default", CLASSES)
    expected = kitti_module._split(10, 0.2, 0)
    val = sorted(p.name for p in (tmp_path / "default" / "images" / "val").iterdir())
    assert val == [f"{i}.png" for i in range(10) if expected[i]]
    assert not (expected == kitti_module._split(10, 0.2, 1)).all()


def test_counts_add_up_over_several_objects_and_bad_lines(tmp_path):
    images, labels = tmp_path / "image_2", tmp_path / "label_2"
    png(images / "a.png")
    write(
        labels / "a.txt",
        [
            "Car 1 2 3",
            kline("Van", 1, 2, 30, 40),
            kline("Van", 1, 2, 30, 40),
            kline("Car", -5, 5, 30, 25),
            kline("Car", 10, 5, 30, 60),
            kline("Car", 10, 5, 30, 25),
        ],
    )
    out = tmp_path / "yolo"
    summary = kitti_to_yolo(images, labels, out, CLASSES, val_fraction=0, skip_bad=True)
    assert summary["skipped"] == 1 and summary["dropped"] == {"Van": 2}  # a bad line first: the rest still read
    assert summary["clipped"] == 2 and summary["objects"]["Car"] == 3
    assert summary["out"] == str(out.resolve())
    marker = json.loads((out / ".adlab.json").read_text())
    assert (marker["kind"], marker["tool"]) == ("data", "kitti-to-yolo")


def test_no_images_to_convert(tmp_path):
    images, labels = tmp_path / "image_2", tmp_path / "label_2"
    images.mkdir()
    (images / "notes.txt").write_text("x")
    labels.mkdir()
    with pytest.raises(DataError) as info:
        kitti_to_yolo(images, labels, tmp_path / "yolo", CLASSES)
    assert str(info.value) == f"{images}: no images ({', '.join(YOLO_IMAGE_SUFFIXES)}) to convert"


def test_blank_lines_inside_a_label_file_are_passed_over(tmp_path):
    images, labels = tmp_path / "image_2", tmp_path / "label_2"
    png(images / "a.png")
    write(labels / "a.txt", [kline("Car", 10, 5, 30, 25), "", "   ", kline("Car", 40, 10, 60, 40)])
    summary = kitti_to_yolo(images, labels, tmp_path / "yolo", CLASSES, val_fraction=0)
    assert summary["objects"]["Car"] == 2
