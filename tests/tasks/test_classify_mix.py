"""train.mix: MixUp / CutMix of training batches (torchvision's), with soft targets in the loss."""

import json

import pytest
import torch
from tests.conftest import fast_config

import adlab
from adlab.errors import ConfigError
from adlab.tasks.classify.module import label_mixing


@pytest.mark.parametrize("kind", ["mixup", "cutmix", "both"])
def test_mixing_gives_images_of_the_batch_and_labels_that_sum_to_one(kind):
    torch.manual_seed(0)
    x = torch.stack([torch.full((1, 8, 8), float(i)) for i in range(4)])  # image i is all i
    y = torch.tensor([0, 1, 2, 3])
    mixed, soft = label_mixing(kind, 1.0, 5)(x, y)
    assert mixed.shape == x.shape and soft.shape == (4, 5)
    assert torch.allclose(soft.sum(1), torch.ones(4)) and soft[:, 4].eq(0).all()  # class 4 is in no image
    assert not torch.equal(mixed, x)  # images were mixed
    for i in range(4):  # each image's labels match what it is made of: its mean pixel is its label mix
        assert mixed[i].mean().item() == pytest.approx((soft[i] * torch.arange(5.0)).sum().item(), abs=1e-4)


def test_no_mixing_is_none():
    assert label_mixing("none", 1.0, 10) is None


def test_a_run_with_cutmix_trains_and_repeats_exactly(tmp_path):
    config = fast_config(train={"mix": "cutmix"})
    first = adlab.train(config, out=tmp_path / "a", verbose=False).metrics
    again = adlab.train(config, out=tmp_path / "b", verbose=False).metrics
    plain = adlab.train(fast_config(), out=tmp_path / "c", verbose=False).metrics
    assert first["accuracy"] > 0.5  # still learns digits in the short schedule
    assert first["accuracy"] == again["accuracy"] and first["confusion_matrix"] == again["confusion_matrix"]
    assert first["confusion_matrix"] != plain["confusion_matrix"]  # the mixing changed training
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["accuracy"] == first["accuracy"]


def test_an_unknown_mix_is_refused_naming_the_choices():
    with pytest.raises(ConfigError, match="mixup"):
        adlab.load_config(fast_config(train={"mix": "mosaic"}))


@pytest.mark.parametrize("task", ["autoencode", "detect"])
def test_mixing_is_refused_for_tasks_without_class_labels(task):
    config = {
        "task": task,
        "model": {"name": "ae" if task == "autoencode" else "yolov8n"},
        "data": {"name": "digits" if task == "autoencode" else "yolo"},
        "train": {"mix": "mixup"},
    }
    with pytest.raises(ConfigError, match=f"train.mix: .*not by task {task}"):
        adlab.load_config(config)
