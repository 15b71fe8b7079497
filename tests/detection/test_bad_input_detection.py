"""The bad-input contract of the detection data tools and detection training, through the real CLI:
a refused command is one `adlab: error:` line naming the file or key, exit 2, and nothing written.

Output folders: every data tool builds its output in a temporary sibling and swaps it in, marked
`.adlab.json` (kind "data"); it replaces only an earlier data-tool output, and only with --overwrite.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest
import yaml
from PIL import Image

needs_ultralytics = pytest.mark.requires("detect")

BOX = "0.500000 0.500000 0.400000 0.400000"  # 40 x 20 px in a 100 x 50 image
KITTI_REST = "1.50 1.60 3.90 1.00 1.50 20.00 -1.55"


# --- inputs, built under the working folder ------------------------------------------------------


def png(path: Path, size=(100, 50)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (30, 60, 90)).save(path)
    return path


def bomb_png(path: Path, width: int = 20000, height: int = 10000) -> Path:
    """A valid 1-bit PNG of zeros, width x height (200 million pixels, beyond twice Pillow's
    decompression-bomb limit), a few kilobytes on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte, then the packed bits
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
        + chunk(b"IDAT", data)
        + chunk(b"IEND", b"")
    )
    return path


def yolo_set(root: Path, names=("car", "person"), files=None, yaml_text: str | None = None) -> Path:
    """A YOLO data set: files maps 'split/stem' to label lines (100 x 50 images)."""
    files = files if files is not None else {"train/a": [f"0 {BOX}"], "val/b": [f"1 {BOX}"]}
    for key, lines in files.items():
        split, stem = key.split("/")
        png(root / "images" / split / f"{stem}.png")
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))
    if yaml_text is None:
        yaml_text = yaml.safe_dump(
            {"path": ".", "train": "images/train", "val": "images/val", "names": dict(enumerate(names))}
        )
    (root / "data.yaml").write_text(yaml_text)
    return root / "data.yaml"


def kitti_set(root: Path) -> tuple[Path, Path]:
    for stem in ("000000", "000001", "000002"):
        png(root / "image_2" / f"{stem}.png")
        (root / "label_2").mkdir(parents=True, exist_ok=True)
        (root / "label_2" / f"{stem}.txt").write_text(f"Car 0.00 0 -1.57 10 5 30 25 {KITTI_REST}\n")
    return root / "image_2", root / "label_2"


def tool_args(tool: str, root: Path) -> list[str]:
    """The arguments of one data tool on a fresh small input under `root` (without --out)."""
    if tool == "kitti-to-yolo":
        images, labels = kitti_set(root / "kitti")
        return ["data", tool, "--images", str(images), "--labels", str(labels), "--classes", "Car"]
    data = yolo_set(root / "src")
    if tool == "filter":
        return ["data", tool, "--data", str(data), "--keep", "car"]
    if tool == "crops":
        return ["data", tool, "--data", str(data), "--size", "8"]
    return ["data", tool, "--images", "3", "--source", "digits", "--size", "64x32"]


TOOLS = ["kitti-to-yolo", "filter", "crops", "synth-scenes"]


# --- 1. output folders -----------------------------------------------------------------------------


@pytest.mark.parametrize("tool", TOOLS)
def test_output_is_marked_and_replaced_only_with_overwrite(cli, tool):
    args = tool_args(tool, cli.root)
    cli.succeeds(*args, "--out", "out", outputs=("out",))
    marker = json.loads((cli.root / "out" / ".adlab.json").read_text())
    assert marker["kind"] == "data" and marker["tool"] == tool
    (cli.root / "out" / "mine.txt").write_text("added since")  # still an earlier data-tool output
    cli.refused(*args, "--out", "out", names=("out", "already exists", "--overwrite"))
    cli.succeeds(*args, "--out", "out", "--overwrite", outputs=("out",))
    assert not (cli.root / "out" / "mine.txt").exists()
    assert json.loads((cli.root / "out" / ".adlab.json").read_text())["tool"] == tool
    assert sorted(p.name for p in cli.root.iterdir() if p.name.startswith(".")) == []  # no temporary folders


@pytest.mark.parametrize("tool", TOOLS)
def test_a_folder_adlab_did_not_make_is_never_written_into(cli, tool):
    args = tool_args(tool, cli.root)
    user = cli.root / "u"
    png(user / "images" / "mine.png")  # the user's own images and labels, as in a YOLO layout
    (user / "labels").mkdir()
    (user / "labels" / "mine.txt").write_text(f"0 {BOX}\n")
    for extra in ((), ("--overwrite",)):
        cli.refused(*args, "--out", "u", *extra, names=("u: ", "not made by adlab"))
    # another adlab kind (a run folder) is not a data-tool output either
    (cli.root / "run").mkdir()
    (cli.root / "run" / ".adlab.json").write_text('{"kind": "run"}')
    cli.refused(*args, "--out", "run", "--overwrite", names=("run: ", "a run, not a data-tool output"))


@pytest.mark.parametrize("tool", TOOLS)
def test_an_earlier_adlabs_data_output_is_replaced_with_overwrite(cli, tool):
    args = tool_args(tool, cli.root)
    old = cli.root / "old"
    old.mkdir()
    (old / ".adlab-output.json").write_text('{"tool": "filter"}\n')
    (old / "data.yaml").write_text("names: [x]\n")
    cli.refused(*args, "--out", "old", names=("old", "--overwrite"))
    cli.succeeds(*args, "--out", "old", "--overwrite", outputs=("old",))
    assert not (old / ".adlab-output.json").exists() and (old / ".adlab.json").is_file()


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("out", [".", "..", "sub/.."])
def test_the_working_folder_and_its_parents_are_never_outputs(cli, tool, out):
    args = tool_args(tool, cli.root)
    (cli.root / "sub").mkdir()
    cli.refused(*args, "--out", out, "--overwrite", names=(out,))


def test_synth_scenes_checks_classes_before_touching_anything(cli):
    # the reproduced loss: --overwrite deleted u/images and u/labels, then --classes failed
    png(cli.root / "u" / "images" / "mine.png")
    (cli.root / "u" / "labels").mkdir()
    base = ["data", "synth-scenes", "--images", "4", "--source", "digits"]
    cli.refused(*base, "--out", "u", "--overwrite", names=("u: ", "not made by adlab"))
    cli.refused(*base, "--out", "u", "--overwrite", "--classes", "Nope")
    cli.refused(*base, "--out", "fresh", "--classes", "Nope", names=("Nope",))  # no skeleton left behind
    cli.refused(*base, "--out", "deep/er/fresh", "--classes", "Nope", names=("Nope",))
    cli.refused(*base, "--out", "fresh", "--size", "4x4", names=("size",))
    cli.refused(*base, "--out", "fresh", "--images", "10000000000000", names=("images",))


def test_synth_scenes_into_a_fresh_folder_as_the_demo_does(tmp_path):
    from adlab.detection.synth import synth_scenes

    out = tmp_path / "demo" / "scenes" / "target"
    summary = synth_scenes(source="auto", out=out, images=3, size=(64, 32), seed=0)
    assert Path(summary["data_yaml"]) == out / "data.yaml" and (out / "data.yaml").is_file()
    assert json.loads((out / ".adlab.json").read_text())["tool"] == "synth-scenes"
    assert sorted(p.name for p in out.parent.iterdir()) == ["target"]


def test_a_failure_while_building_leaves_no_folder_behind(cli):
    data = yolo_set(cli.root / "src", files={"train/a": [f"0 {BOX}"], "val/b": ["1 0.5 0.5 0.1"]})
    cli.refused("data", "crops", "--data", data, "--out", "new/deeper/crops", names=("b.txt:1",))


# --- 2. seeds --------------------------------------------------------------------------------------


@pytest.mark.parametrize("tool", ["kitti-to-yolo", "synth-scenes"])
@pytest.mark.parametrize("seed", ["-1", str(2**32), str(10**40)])
def test_seed_out_of_range(cli, tool, seed):
    line = cli.refused(*tool_args(tool, cli.root), "--out", "out", "--seed", seed, names=("seed",))
    assert "4294967295" in line and len(line) < 300


def test_the_largest_seed_is_accepted(cli):
    cli.succeeds(*tool_args("synth-scenes", cli.root), "--out", "out", "--seed", str(2**32 - 1), outputs=("out",))


# --- 3. class ids nan and inf ------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ["nan", "inf", "-inf", "NaN", "1e999"])
def test_crops_non_finite_class_id(cli, cls):
    data = yolo_set(cli.root / "src", files={"train/a": [f"0 {BOX}", f"{cls} {BOX}"], "val/b": [f"1 {BOX}"]})
    label = cli.root / "src" / "labels" / "train" / "a.txt"
    cli.refused("data", "crops", "--data", data, "--out", "c", names=(f"{label}:2", "class id"))
    out = cli.succeeds("data", "crops", "--data", data, "--out", "c", "--skip-bad", outputs=("c",))
    assert "skipped_bad: 1" in out and "class id out of range: 1" in out
    assert "total: 2" in out


@pytest.mark.parametrize("cls", ["nan", "inf"])
def test_detection_training_checks_class_ids_before_writing(cli, cls):
    data = yolo_set(cli.root / "src", files={"train/a": [f"0 {BOX}"], "val/b": [f"{cls} {BOX}"]})
    config = cli.root / "det.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "task": "detect",
                "data": {"name": "yolo", "root": str(data)},
                "model": {"name": "yolov8n"},
                "train": {"epochs": 1},
            }
        )
    )
    label = cli.root / "src" / "labels" / "val" / "b.txt"
    cli.refused("train", config, "--out", "run", names=(f"{label}:1", "class id"))


def test_filter_and_kitti_non_finite_values(cli):
    data = yolo_set(cli.root / "src", files={"train/a": [f"nan {BOX}"], "val/b": [f"1 {BOX}"]})
    cli.refused("data", "filter", "--data", data, "--keep", "car", "--out", "f", names=("a.txt:1",))
    images, labels = kitti_set(cli.root / "kitti")
    (labels / "000001.txt").write_text(f"Car 0.00 0 -1.57 nan 5 30 25 {KITTI_REST}\n")
    cli.refused(
        "data",
        "kitti-to-yolo",
        "--images",
        images,
        "--labels",
        labels,
        "--classes",
        "Car",
        "--out",
        "k",
        names=("000001.txt:1", "non-finite"),
    )


# --- 4. data.yaml --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, key",
    [
        ("train: images/train\nnames: 5\n", "names"),
        ("train: images/train\nnames:\n", "names"),
        ("train: images/train\nnames: []\n", "names"),
        ("train: images/train\nnames: {}\n", "names"),
        ("train: images/train\nnames: {0: a, x: b}\n", "names"),
        ("train: images/train\nnames: {0: a, 2: b}\n", "names"),
        ("train: images/train\nnames: {1: a, 2: b}\n", "names"),
        ("train: images/train\nnames: {0: a, true: b}\n", "names"),
        ("train: images/train\nnames: [a, 1.5]\n", "names[1]"),
        ("train: images/train\nnames: [a, [b]]\n", "names[1]"),
        ("train: images/train\nnames: [a, null]\n", "names[1]"),
        ("train: images/train\nnames: {0: a, 1: {x: 1}}\n", "names[1]"),
        ("train: [images/train]\nnames: [a, b]\n", "train"),
        ("train: images/train\nval: 5\nnames: [a, b]\n", "val"),
        ("path: 5\ntrain: images/train\nnames: [a, b]\n", "path"),
        ("path: [.]\ntrain: images/train\nnames: [a, b]\n", "path"),
        ('train: "images/\\0train"\nnames: [a, b]\n', "train"),
        ('path: "a\\0b"\ntrain: images/train\nnames: [a, b]\n', "path"),
    ],
)
@pytest.mark.parametrize("tool", ["crops", "filter"])
def test_bad_data_yaml_names_the_file_and_key(cli, text, key, tool):
    data = yolo_set(cli.root / "src", yaml_text=text)
    extra = ["--keep", "a"] if tool == "filter" else []
    line = cli.refused("data", tool, "--data", data, *extra, "--out", "o", names=(str(data), f": {key}"))
    assert len(line) < 400


def test_data_yaml_with_numbers_for_names_still_reads(tmp_path):
    from adlab.detection.yolo_format import read_data_yaml

    data = yolo_set(tmp_path / "src", yaml_text="path: .\ntrain: images/train\nnames: [0, 1]\n")
    assert read_data_yaml(data).names == ["0", "1"]
    data.write_text("train: images/train\nnames: {1: b, 0: a}\n")
    assert read_data_yaml(data).names == ["a", "b"]


@pytest.mark.parametrize("name", ["x" * 300, "../up", "a/b", "a\\\\b", ".hidden", "..", "", " pad", "a:b", "nul\\0"])
def test_crops_refuse_class_names_that_cannot_be_folders(cli, name):
    data = yolo_set(cli.root / "src", yaml_text=f'path: .\ntrain: images/train\nnames: ["car", "{name}"]\n')
    cli.refused("data", "crops", "--data", data, "--out", "c", names=(str(data), "class name"))


def test_crops_refuse_repeated_class_names(cli):
    data = yolo_set(cli.root / "src", yaml_text="path: .\ntrain: images/train\nnames: [car, car]\n")
    cli.refused("data", "crops", "--data", data, "--out", "c", names=(str(data), "more than once"))


# --- 6. decompression bombs ---------------------------------------------------------------------


@pytest.fixture
def bomb_set(cli):
    """A YOLO set whose train image a.png is a decompression bomb, next to a good image."""
    data = yolo_set(cli.root / "src", files={"train/a": [f"0 {BOX}"], "train/c": [f"0 {BOX}"], "val/b": [f"1 {BOX}"]})
    bomb_png(cli.root / "src" / "images" / "train" / "a.png")
    return data


def test_crops_refuse_or_skip_a_decompression_bomb(cli, bomb_set):
    bomb = cli.root / "src" / "images" / "train" / "a.png"
    cli.refused("data", "crops", "--data", bomb_set, "--out", "c", names=(str(bomb), "decompression bomb"))
    out = cli.succeeds("data", "crops", "--data", bomb_set, "--out", "c", "--skip-bad", outputs=("c",))
    assert "image too large to decode safely: 1" in out and "total: 2" in out


def test_filter_refuses_a_decompression_bomb(cli, bomb_set):
    bomb = cli.root / "src" / "images" / "train" / "a.png"
    cli.refused(
        "data", "filter", "--data", bomb_set, "--keep", "car", "--out", "f", names=(str(bomb), "decompression bomb")
    )


def test_kitti_refuses_or_skips_a_decompression_bomb(cli):
    images, labels = kitti_set(cli.root / "kitti")
    bomb = bomb_png(images / "000001.png")
    args = ["data", "kitti-to-yolo", "--images", images, "--labels", labels, "--classes", "Car", "--out", "k"]
    cli.refused(*args, names=(str(bomb), "decompression bomb"))
    out = cli.succeeds(*args, "--skip-bad", outputs=("k",))
    assert "image too large to decode safely: 1" in out


def test_unreadable_image_is_one_line(cli):
    data = yolo_set(cli.root / "src")
    broken = cli.root / "src" / "images" / "train" / "a.png"
    broken.write_bytes(broken.read_bytes()[:40])  # header kept, pixels cut off
    cli.refused("data", "crops", "--data", data, "--out", "c", names=(str(broken), "cannot read image"))


# --- 5. detection --resume never unpickles a checkpoint the run did not save ------------------------


class MarkerOnLoad:
    """Unpickling this would create `path`: the code a resume must never run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@needs_ultralytics
def test_resume_refuses_a_crafted_last_pt_without_loading_it(cli, rectangles):
    import torch

    import adlab
    from adlab import io, ownership

    config = adlab.load_config(
        {
            "task": "detect",
            "data": {"name": "yolo", "root": str(rectangles), "image_size": 96},
            "model": {"name": "yolov8n"},
            "train": {"epochs": 3},
        }
    )
    run = cli.root / "det"  # an interrupted run: marker, config, no metrics.json
    ownership.write_marker(run, "run", config=config.to_dict())
    io.write_yaml(run / "config.yaml", config.to_dict())
    weights = run / "ultralytics" / "weights"
    weights.mkdir(parents=True)
    marker = cli.root.parent / "marker-created-on-unpickle"
    torch.save(
        {"epoch": 0, "optimizer": {"state": {}}, "train_args": {"epochs": 3}, "payload": MarkerOnLoad(marker)},
        weights / "last.pt",
    )
    try:
        cli.refused(
            "train",
            "--resume",
            "det",
            names=(
                str(Path("det") / "ultralytics" / "weights" / "last.pt"),
                "not the checkpoint this run saved",
                "remove it",
            ),
        )
        # a record of another file's hash does not make it this run's checkpoint
        (weights / "last.pt.sha256").write_text(json.dumps({"sha256": "0" * 64, "epoch": 0, "final": False}))
        cli.refused("train", "--resume", "det", names=("last.pt", "refusing to load it"))
    finally:
        assert not marker.exists(), "resuming ran code pickled in last.pt"


def test_an_output_folder_that_cannot_be_made_is_one_line(cli):
    data = yolo_set(cli.root / "src")
    (cli.root / "afile").write_text("a file, not a folder")
    cli.refused("data", "crops", "--data", data, "--out", "afile/crops", names=("afile/crops",))
    cli.refused("data", "crops", "--data", data, "--out", "x" * 250, names=("x" * 250,))
    cli.refused("data", "crops", "--data", data, "--out", "afile", "--overwrite", names=("afile", "not a folder"))


def test_detection_training_refuses_a_decompression_bomb_before_writing(cli, bomb_set):
    config = cli.root / "det.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "task": "detect",
                "data": {"name": "yolo", "root": str(bomb_set)},
                "model": {"name": "yolov8n"},
                "train": {"epochs": 1},
            }
        )
    )
    bomb = cli.root / "src" / "images" / "train" / "a.png"
    cli.refused("train", config, "--out", "run", names=(str(bomb), "decompression bomb"))
