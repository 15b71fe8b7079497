"""The image-file lists follow the programs that decode the files (adlab/image_formats.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adlab.data.folder import index_folder
from adlab.detection.yolo_format import read_data_yaml, write_data_yaml
from adlab.image_formats import CLASS_FOLDER_SUFFIXES, YOLO_IMAGE_SUFFIXES


@pytest.mark.requires("detect")
def test_yolo_list_is_ultralytics_list():
    # in a child process: importing ultralytics replaces PIL.Image.open for the whole process
    code = "import json; from ultralytics.data.utils import IMG_FORMATS; print(json.dumps(sorted(IMG_FORMATS)))"
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    ultralytics_formats = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(s.removeprefix(".") for s in YOLO_IMAGE_SUFFIXES) == ultralytics_formats


def test_class_folder_list_is_torchvision_list_plus_gif():
    folder = pytest.importorskip("torchvision.datasets.folder")
    assert set(CLASS_FOLDER_SUFFIXES) == set(folder.IMG_EXTENSIONS) | {".gif"}


def test_every_class_folder_suffix_is_decoded_by_pillow(tmp_path):
    for suffix in CLASS_FOLDER_SUFFIXES:
        path = tmp_path / f"a{suffix}"
        Image.fromarray(np.full((4, 5), 128, dtype=np.uint8)).save(path)
        with Image.open(path) as image:
            assert image.size == (5, 4), suffix


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_each_reader_lists_its_own_formats(tmp_path):
    for name in ("a.png", "b.JPG", "c.gif", "d.ppm", "e.heic", "f.txt"):
        touch(tmp_path / "tree" / "cls" / name)
        touch(tmp_path / "yolo" / "images" / "train" / name)
    _, samples = index_folder(tmp_path / "tree")
    assert sorted(Path(p).name for p, _ in samples) == ["a.png", "b.JPG", "c.gif", "d.ppm"]
    ds = read_data_yaml(write_data_yaml(tmp_path / "yolo", ["x"], ["train"]))
    assert [p.name for p in ds.images("train")] == ["a.png", "b.JPG", "e.heic"]
