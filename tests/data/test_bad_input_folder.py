"""Image folders that are broken or hostile: link loops, one file in two classes or splits,
decompression bombs, class folder names that cannot be names, classes only in the test tree.

Each case goes through the real CLI (the `cli` fixture): refused with exit 2, one line naming the
file or folder and nothing written, or (a loop link) trained on with each image counted once.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from adlab.data.folder import decode_images, index_folder, load_folder
from adlab.data.stream import DiskImages
from adlab.errors import DataError
from checks import grey_png, image_tree

TRAIN = [
    "train",
    "cfg.yaml",
    "--out",
    "run",
    "--set",
    "train.epochs=1",
    "--set",
    "train.progress_bar=false",
    "--set",
    "model.cnn.conv_channels=[8]",
    "--set",
    "model.cnn.convs_per_block=1",
    "--set",
    "model.cnn.hidden=[16]",
    "--set",
    "data.name=folder",
    "--set",
    "data.root=images",
]
BOMB_PIXELS = 20000 * 10000
IMAGES = Path("images")  # data.root, relative to the working folder: errors name paths as given


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.fixture(scope="module")
def bomb_bytes() -> bytes:
    """A valid 1-bit PNG of 20000 x 10000 black pixels: some 25 KB on disk, 200 megapixels decoded
    (PIL refuses more than 2 x Image.MAX_IMAGE_PIXELS, about 179 million). Written row by row, so
    making it never holds the image in memory."""
    width, height = 20000, 10000
    row = b"\x00" + bytes((width + 7) // 8)  # filter byte, then the packed bits of one row
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    png = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
        + png_chunk(b"IDAT", data)
        + png_chunk(b"IEND", b"")
    )
    assert len(png) < 64 * 1024
    return png


@pytest.fixture
def cfg(cli):
    (cli.root / "cfg.yaml").write_text("data:\n  name: folder\n")
    return cli.root / "cfg.yaml"


def metrics(cli) -> dict:
    return json.loads((cli.root / "run" / "metrics.json").read_text())


# --- links: loops, and one file in two classes or two splits -----------------------------------------


def test_a_link_to_the_data_folder_in_a_class_counts_each_image_once(cli, cfg):
    root = cli.root / "images"
    image_tree(root, digits=2)
    os.symlink("..", root / "a" / "up")  # torchvision's os.walk(followlinks=True) counted each image 41 times
    names, samples = index_folder(root)
    assert len(samples) == 24 and len({p for p, _ in samples}) == 24
    cli.succeeds(*TRAIN, outputs=("run",))
    m = metrics(cli)
    assert m["num_train"] + m["num_val"] + m["num_test"] == 24  # nothing counted twice, nothing leaked


@pytest.mark.timeout(60)
def test_the_same_loop_link_in_two_classes_does_not_hang(cli, cfg):
    root = cli.root / "images"
    image_tree(root, digits=2)
    os.symlink("..", root / "a" / "up")
    os.symlink("..", root / "b" / "up")
    os.symlink(os.path.abspath(root), root / "b" / "absolute")  # the same loop, written absolute
    names, samples = index_folder(root)
    assert names == ["a", "b"] and len(samples) == 24
    cli.succeeds(*TRAIN, outputs=("run",))
    m = metrics(cli)
    assert m["num_train"] + m["num_val"] + m["num_test"] == 24


def test_links_inside_a_class_count_each_real_file_once_by_its_own_path(tmp_path):
    root = tmp_path / "data"
    image_tree(root, digits=2)
    grey_png(root / "a" / "sub" / "s.png")
    os.symlink("sub", root / "a" / "0again")  # the same folder twice
    os.symlink("00.png", root / "a" / "0copy.png")  # the same file twice
    os.symlink("0copy.png", root / "a" / "0chain.png")  # ...and through a chain of links
    grey_png(tmp_path / "outside" / "o.png")
    os.symlink("../../outside", root / "b" / "more")  # a folder outside the tree is followed
    _, samples = index_folder(root)
    shown = [os.path.relpath(p, root) for p, _ in samples]
    assert shown == [f"a/{i:02d}.png" for i in range(12)] + ["a/sub/s.png"] + [f"b/{i:02d}.png" for i in range(12)] + [
        "b/more/o.png"
    ]
    assert [c for _, c in samples] == [0] * 13 + [1] * 13


def test_a_link_from_one_class_into_another_is_refused(cli, cfg):
    root = cli.root / "images"
    image_tree(root, digits=2)
    os.symlink("../b", root / "a" / "from_b")
    cli.refused(*TRAIN, names=(IMAGES / "a" / "from_b" / "00.png", IMAGES / "b" / "00.png", "'a'", "'b'"))


def test_a_class_folder_linked_to_another_class_is_refused(cli, cfg):
    root = cli.root / "images"
    image_tree(root, digits=2)
    os.symlink("a", root / "c")
    cli.refused(*TRAIN, names=(IMAGES / "a" / "00.png", IMAGES / "c" / "00.png"))


def test_a_test_tree_linked_into_the_train_tree_is_refused(cli, cfg):
    root = cli.root / "images"
    image_tree(root / "train", digits=2)
    image_tree(root / "test", per_class=2, digits=2)
    os.symlink("../../train/a/05.png", root / "test" / "a" / "leak.png")  # a test image also trained on
    line = cli.refused(*TRAIN, names=(IMAGES / "train" / "a" / "05.png", IMAGES / "test" / "a" / "leak.png"))
    assert "both trained on and tested" in line


def test_a_fifo_named_like_an_image_is_refused_not_read(tmp_path):
    image_tree(tmp_path, digits=2)
    os.mkfifo(tmp_path / "a" / "pipe.png")  # opening it would wait forever
    with pytest.raises(DataError, match="pipe.png: not a regular file"):
        index_folder(tmp_path)


# --- decompression bombs ------------------------------------------------------------------------------


def test_a_decompression_bomb_in_training_is_one_line(cli, cfg, bomb_bytes):
    root = cli.root / "images"
    image_tree(root, digits=2)
    (root / "b" / "bomb.png").write_bytes(bomb_bytes)
    line = cli.refused(*TRAIN, names=(IMAGES / "b" / "bomb.png", f"{BOMB_PIXELS:,} pixels", "data.on_corrupt"))
    assert "too large" in line


def test_a_decompression_bomb_is_skipped_and_counted_with_on_corrupt_skip(cli, cfg, bomb_bytes):
    root = cli.root / "images"
    image_tree(root, digits=2)
    (root / "b" / "bomb.png").write_bytes(bomb_bytes)
    out = cli.succeeds(*TRAIN, "--set", "data.on_corrupt=skip", outputs=("run",))
    assert "1 unreadable image skipped" in out and "bomb.png" in out
    m = metrics(cli)
    assert m["num_train"] + m["num_val"] + m["num_test"] == 24


def test_decode_images_skips_a_bomb_and_names_it(tmp_path, bomb_bytes):
    image_tree(tmp_path, digits=2)
    (tmp_path / "a" / "bomb.png").write_bytes(bomb_bytes)
    images, labels, _, skipped = load_folder(tmp_path, None, on_corrupt="skip")
    assert skipped == [str(tmp_path / "a" / "bomb.png")] and len(images) == len(labels) == 24
    with pytest.raises(DataError, match="bomb.png: image too large"):
        decode_images([str(tmp_path / "a" / "bomb.png")], 8)


def test_a_decompression_bomb_first_in_a_streamed_folder_is_one_line(cli, cfg, bomb_bytes):
    root = cli.root / "images"
    image_tree(root, digits=2)
    (root / "a" / "0.png").write_bytes(bomb_bytes)  # the first file: opened when the data is indexed
    line = cli.refused(*TRAIN, "--set", "data.storage=disk", names=(IMAGES / "a" / "0.png", f"{BOMB_PIXELS:,} pixels"))
    assert "--resume" not in line  # there is no run to resume


def test_a_decompression_bomb_met_while_streaming_is_named(tmp_path, bomb_bytes):
    image_tree(tmp_path, digits=2)
    bomb = tmp_path / "b" / "bomb.png"
    bomb.write_bytes(bomb_bytes)
    _, samples = index_folder(tmp_path)
    images = DiskImages.open([p for p, _ in samples], None)
    assert images[0].shape == (1, 8, 8)
    with pytest.raises(DataError) as info:
        images[np.arange(len(images))]
    message = str(info.value)
    assert str(bomb) in message and f"{BOMB_PIXELS:,} pixels" in message and "--resume" in message


def test_a_decompression_bomb_met_by_a_loader_worker_is_one_line(cli, cfg, bomb_bytes):
    root = cli.root / "images"
    image_tree(root, digits=2)
    (root / "b" / "bomb.png").write_bytes(bomb_bytes)
    # without normalisation nothing is decoded before training: the bomb is met by a DataLoader worker
    code, out, err = cli.run(*TRAIN, "--set", "data.storage=disk", "--set", "data.normalize=false")
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("adlab: error: "), err[-3000:]
    assert str(IMAGES / "b" / "bomb.png") in lines[0] and f"{BOMB_PIXELS:,} pixels" in lines[0]
    assert "adlab train --resume" in lines[0] and (cli.root / "run").is_dir()  # met in training, as said


def test_predict_on_a_decompression_bomb_is_one_line(cli, digits_run, bomb_bytes):
    (cli.root / "bomb.png").write_bytes(bomb_bytes)
    line = cli.refused("predict", str(digits_run.path), "bomb.png", names=("bomb.png", f"{BOMB_PIXELS:,} pixels"))
    assert "too large" in line


def test_predict_on_a_file_that_is_not_an_image_is_one_line(cli, digits_run):
    (cli.root / "notes.png").write_text("not an image\n")
    cli.refused("predict", str(digits_run.path), "notes.png", names=("notes.png", "cannot read image"))


def test_predict_on_a_folder_is_one_line(cli, digits_run):
    (cli.root / "pictures").mkdir()
    cli.refused("predict", str(digits_run.path), "pictures", names=("pictures", "cannot read image"))


# --- class folder names ------------------------------------------------------------------------------


def test_a_class_folder_name_that_is_not_utf8_is_refused_before_anything_is_written(cli, cfg):
    root = cli.root / "images"
    image_tree(root, digits=2)
    bad = os.fsencode(root) + b"/\xff\xfe"
    os.mkdir(bad)
    for i in range(3):
        grey_png(Path(os.fsdecode(bad + b"/%d.png" % i)), i)
    line = cli.refused(*TRAIN, names=(IMAGES, "b'\\xff\\xfe'", "UTF-8", "rename"))
    assert "\udcff" not in line


@pytest.mark.parametrize(
    "name, shown",
    [
        (".ipynb_checkpoints", "'.ipynb_checkpoints'"),
        ("a:b", "'a:b'"),
        ("two\nlines", "'two\\nlines'"),
        ("x" * 130, "too long"),
    ],
)
def test_a_class_folder_name_that_cannot_be_a_name_is_refused(cli, cfg, name, shown):
    root = cli.root / "images"
    image_tree(root, digits=2)
    grey_png(root / name / "0.png")
    cli.refused(*TRAIN, names=(IMAGES, shown, "rename"))


# --- separate train/ and test/ (or val/) trees ---------------------------------------------------------


@pytest.mark.parametrize("held_out", ["test", "val"])
def test_a_class_only_in_the_held_out_tree_is_refused(cli, cfg, held_out):
    root = cli.root / "images"
    image_tree(root / "train", digits=2)
    image_tree(root / held_out, classes=("a", "b", "c", "d"), per_class=2, digits=2)
    cli.refused(*TRAIN, names=(IMAGES / held_out, "'c', 'd'", IMAGES / "train"))


def test_a_class_missing_from_the_test_tree_is_fine(cli, cfg):
    root = cli.root / "images"
    image_tree(root / "train", classes=("a", "b", "c"), digits=2)
    image_tree(root / "test", classes=("a", "c"), per_class=3, digits=2)
    cli.succeeds(*TRAIN, outputs=("run",))
    m = metrics(cli)
    assert m["num_test"] == 6 and m["num_train"] + m["num_val"] == 36
