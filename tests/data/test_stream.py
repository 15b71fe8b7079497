"""Folder data sets streamed from disk: the same batches, splits and results as in memory."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from adlab.config import load_config
from adlab.data.datamodule import ImageDataModule
from adlab.data.stream import DiskImages
from adlab.errors import DataError


def make_tree(root, per_class: int = 30, size: int = 12):
    rng = np.random.default_rng(0)
    for c in range(3):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            a = np.full((size, size), 60 * c + 20, np.uint8)
            a[rng.integers(0, size)] = 255
            Image.fromarray(a).save(root / f"class{c}" / f"{i:03d}.png")


def data_config(root, storage: str, **extra):
    return load_config(
        {
            "data": {"name": "folder", "root": str(root), "storage": storage, **extra},
            "model": {"conv_channels": [8], "convs_per_block": 1, "hidden": [8]},
            "train": {"epochs": 2, "batch_size": 16, "progress_bar": False},
        }
    )


def test_disk_images_behave_like_the_decoded_tensor(tmp_path):
    make_tree(tmp_path)
    memory = ImageDataModule(data_config(tmp_path, "memory").data, 16)
    disk = ImageDataModule(data_config(tmp_path, "disk").data, 16)
    memory.prepare(), disk.prepare()
    assert isinstance(disk.train_x, DiskImages) and isinstance(memory.train_x, torch.Tensor)
    assert disk.info.to_dict() == memory.info.to_dict()  # same splits, counts and normalisation
    for split in ("train", "val", "test"):
        lazy, decoded = getattr(disk, f"{split}_x"), getattr(memory, f"{split}_x")
        assert lazy.shape == decoded.shape and len(lazy) == len(decoded)
        assert torch.equal(lazy[torch.arange(len(lazy))], decoded)
        assert torch.equal(lazy[3], decoded[3]) and torch.equal(lazy[2:5], decoded[2:5])


def test_training_from_disk_gives_the_in_memory_result(tmp_path):
    from adlab.run.train import train

    make_tree(tmp_path / "data")
    results = [
        train(data_config(tmp_path / "data", storage), out=tmp_path / storage, verbose=False).metrics
        for storage in ("memory", "disk")
    ]
    drop = ("train_seconds",)
    assert {k: v for k, v in results[0].items() if k not in drop} == {
        k: v for k, v in results[1].items() if k not in drop
    }
    assert "data.storage" not in json.dumps(results[1])


def test_auto_streams_only_over_the_memory_budget(tmp_path):
    make_tree(tmp_path)  # 90 images of 12x12 grey: 12,960 bytes decoded
    small = ImageDataModule(data_config(tmp_path, "auto", memory_budget_gb=1e-5).data, 16)  # 10.7 kB
    large = ImageDataModule(data_config(tmp_path, "auto", memory_budget_gb=1e-4).data, 16)
    small.prepare(), large.prepare()
    assert isinstance(small.train_x, DiskImages) and isinstance(large.train_x, torch.Tensor)


def test_a_bad_file_met_while_streaming_is_named(tmp_path):
    make_tree(tmp_path)
    bad = tmp_path / "class1" / "005.png"
    bad.write_bytes(b"not a png")
    data = ImageDataModule(data_config(tmp_path, "disk", normalize=False).data, 16)
    data.prepare()  # indexing does not open every file...
    with pytest.raises(DataError, match="005.png: cannot read image") as info:
        for images in (data.train_x, data.val_x, data.test_x):
            images[torch.arange(len(images))]
    assert "--resume" in str(info.value)  # ...so the error says how to continue after fixing it


def test_skip_needs_memory_storage(tmp_path):
    make_tree(tmp_path)
    with pytest.raises(DataError, match="on_corrupt: skip needs the images in memory"):
        ImageDataModule(data_config(tmp_path, "disk", on_corrupt="skip").data, 16).prepare()


def test_a_bad_file_met_by_a_loader_worker_is_one_line_on_the_command_line(tmp_path, capsys):
    from adlab.cli import main

    make_tree(tmp_path / "data")
    (tmp_path / "data" / "class2" / "007.png").write_bytes(b"not a png")
    config = tmp_path / "cfg.yaml"
    config.write_text(json.dumps(data_config(tmp_path / "data", "disk", normalize=False).to_dict()))
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("adlab: error: ") and "007.png: cannot read image" in err[0]
