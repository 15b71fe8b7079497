"""Task segment end to end on synthetic scenes with masks: a U-Net trained, its scores checked against torchmetrics
on the same predictions, the joint augmentation, the refusals; and a study of a U-Net from scratch against LR-ASPP on
an ImageNet backbone (a stand-in file in a temporary torch.hub cache) with its report."""

import csv
import json
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import yaml
from torchmetrics.functional.classification import multiclass_jaccard_index

import adlab
from adlab.config import load_config
from adlab.detection.synth import synth_scenes
from adlab.errors import AdlabError, ConfigError
from adlab.models.checkpoints import read_checkpoint
from adlab.models.segmentation import build_segmenter
from adlab.settings.unet import UnetConfig
from adlab.tasks.segment.data import JointAugment, SegmentDataModule
from adlab.tasks.segment.metrics import IGNORE

RUN = {
    "task": "segment",
    "data": {"name": "masks", "augment": {"flip": True, "crop_padding": 3}},
    "model": {"name": "unet", "unet": {"channels": [8, 16]}},
    "train": {
        "epochs": 2,
        "batch_size": 8,
        "lr": 0.01,
        "monitor": "val_mean_iou",
        "num_threads": 1,
        "progress_bar": False,
        "accelerator": "cpu",
    },
}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes") / "scenes"
    synth_scenes(out, 40, size=(64, 32), source="digits", seed=0, val_fraction=0.2, masks=True)
    return out


def config(scenes, **changes):
    raw = json.loads(json.dumps(RUN))
    raw["data"]["root"] = str(scenes)
    for key, value in changes.items():
        section, name = key.split("__")
        raw[section][name] = value
    return raw


def test_a_unet_run_scores_as_torchmetrics_does_on_its_own_predictions(scenes, tmp_path):
    run = adlab.train(config(scenes), out=tmp_path / "run", verbose=False).path
    metrics = json.loads((run / "metrics.json").read_text())
    # the same predictions again, from the scored checkpoint, on the same test split
    cfg = load_config(yaml.safe_load((run / "config.yaml").read_text()), notices=False)
    data = SegmentDataModule(cfg.data, 8)
    data.prepare()
    state, meta = read_checkpoint(run / "checkpoints" / "best.ckpt")
    net = build_segmenter("unet", 3, 4, None, cfg.model.family(UnetConfig)).net
    net.load_state_dict(state)
    net.eval()
    with torch.no_grad():
        pred = net(data.transform(data.test_x, train=False)).argmax(1)
    expected = multiclass_jaccard_index(pred, data.test_y.long(), 4, average="macro", ignore_index=IGNORE)
    assert metrics["mean_iou"] == pytest.approx(float(expected), abs=1e-6)
    assert list(metrics["per_class_iou"]) == ["background", "0", "1", "7"]
    assert 0 < metrics["pixel_accuracy"] <= 1 and 0 < metrics["mean_dice"] <= 1
    assert metrics["test_images"] == len(data.test_x) == sum(1 for _ in open(run / "predictions.csv")) - 1
    rows = list(csv.DictReader(open(run / "predictions.csv")))
    assert all(0 <= float(row["iou"]) <= 1 for row in rows)
    for name in ("overlays.png", "worst.png", "per_class_iou.png", "confusion_matrix.png", "loss_curves.png"):
        assert (run / "figures" / name).stat().st_size > 1000
    history = list(csv.DictReader(open(run / "history.csv")))
    assert len(history) == 2 and all(0 <= float(row["val_mean_iou"]) <= 1 for row in history)
    assert meta["task"] == "segment" and meta["data"]["class_names"] == ["background", "0", "1", "7"]


def test_the_same_crop_and_flip_move_an_image_and_its_mask():
    torch.manual_seed(0)
    mask = torch.randint(0, 5, (16, 12, 20), dtype=torch.uint8)
    image = (mask.float() * 40).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()  # the class, written in the pixels
    moved_image, moved_mask = JointAugment(crop_padding=4, flip=True)(image, mask)
    assert moved_mask.shape == mask.shape and moved_image.shape == image.shape
    assert torch.equal(moved_image[:, 0], moved_mask.float() * 40)  # still the same pixels' classes
    assert not torch.equal(moved_mask, mask)  # and something moved


def test_masks_outside_the_classes_or_settings_of_other_tasks_are_refused(scenes):
    with pytest.raises(ConfigError, match="data.classes: read by task classify or autoencode only"):
        load_config(config(scenes, data__classes=[1]))
    with pytest.raises(ConfigError, match="data.name: task classify reads .* not 'masks'; task segment reads it"):
        load_config({**config(scenes), "task": "classify", "train": {}})
    with pytest.raises(ConfigError, match="train.monitor: 'val_accuracy' is not measured by task segment"):
        load_config(config(scenes, train__monitor="val_accuracy"))


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """A temporary torch.hub cache holding a stand-in for torchvision's ImageNet MobileNetV3-Large file."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    path = tmp_path / "torch" / "hub" / "checkpoints" / "mobilenet_v3_large-8738ca79.pth"
    path.parent.mkdir(parents=True)
    torch.manual_seed(1)
    torch.save(torchvision.models.mobilenet_v3_large().state_dict(), path)
    return path


@pytest.mark.slow
def test_a_study_of_a_unet_against_lraspp_on_an_imagenet_backbone(scenes, offline_hub, tmp_path):
    study = tmp_path / "segmentation.yaml"
    study.write_text(
        yaml.safe_dump(
            {
                "name": "segmentation",
                "config": config(scenes, train__epochs=2),
                "variants": {
                    "unet_scratch": {},
                    "lraspp_imagenet": {
                        "model.name": "lraspp_mobilenet_v3_large",
                        "model.weights": "imagenet",
                        "train.lr": 0.003,
                    },
                },
            }
        )
    )
    out = adlab.run_study(study, out=tmp_path / "study", verbose=False)
    env = json.loads((out / "runs" / "lraspp_imagenet" / "env.json").read_text())
    assert env["weights"]["file"] == str(offline_hub) and len(env["weights"]["sha256"]) == 64
    report = (out / "report.md").read_text()
    assert "## Segmentation" in report or "Segmentation" in report
    assert "mean_iou" in report and "per_class_iou" in report.replace("Per-class IoU", "per_class_iou")
    assert "Wilcoxon" in report  # the paired test on per-image IoU, both runs on the same test masks
    assert "overlays.png" in report
    assert "of the test images" not in report  # a collapse over pixels is said as one
    for run in ("unet_scratch", "lraspp_imagenet"):
        assert json.loads((out / "runs" / run / "metrics.json").read_text())["mean_iou"] >= 0


@pytest.fixture(scope="module")
def trained(scenes, tmp_path_factory):
    return adlab.train(config(scenes, train__epochs=1), out=tmp_path_factory.mktemp("seg") / "run", verbose=False).path


def test_evaluate_on_its_own_test_split_gives_the_runs_scores(trained, tmp_path):
    from adlab.tasks.segment.evaluate import evaluate

    metrics = evaluate(trained, out=tmp_path / "evaluation", verbose=False)
    recorded = json.loads((trained / "metrics.json").read_text())
    assert metrics["mean_iou"] == pytest.approx(recorded["mean_iou"], abs=1e-9)
    assert (tmp_path / "evaluation" / "figures" / "overlays.png").exists()


def test_predict_writes_one_mask_per_image_at_the_images_size(trained, scenes, tmp_path):
    from PIL import Image

    from adlab.tasks.segment.evaluate import predict

    image = sorted((scenes / "images" / "val").glob("*.png"))[0]
    bigger = tmp_path / "big.png"
    Image.open(image).resize((128, 64)).save(bigger)
    results = predict(trained, [image, bigger], tmp_path / "masks")
    assert [Path(mask).name for _, mask, _ in results] == [image.name, "big.png"]
    for _, mask, shares in results:
        with Image.open(mask) as m:
            values = set(np.unique(np.asarray(m)).tolist())
        assert values <= {0, 1, 2, 3} and sum(shares.values()) == pytest.approx(1.0)
    assert Image.open(tmp_path / "masks" / "big.png").size == (128, 64)
    with pytest.raises(AdlabError, match="predictions already exists here"):
        predict(trained, [image], tmp_path / "masks")


def test_a_classifier_command_on_a_segmentation_run_is_pointed_to_its_own(trained, capsys):
    from adlab.cli import main

    assert main(["predict", str(trained), "x.png"]) == 2
    assert "give --out FOLDER" in capsys.readouterr().err
