"""task: detect through ultralytics: config checks, data checks, the run directory, both mAPs."""

import csv
import hashlib
import json

import numpy as np
import pytest

import adlab
from adlab.detection.yolo_format import read_data_yaml
from adlab.errors import ConfigError, DataError
from adlab.tasks.detect.train import check_dataset

# find_spec, not importorskip: importing ultralytics at collection would patch PIL for every test
pytestmark = pytest.mark.requires("detect")


def detect_config(data_yaml, **train):
    return {
        "task": "detect",
        "data": {"name": "yolo", "root": str(data_yaml), "image_size": 96},
        "model": {"name": "yolov8n"},
        "train": {"epochs": 2, "batch_size": 8, "lr": 0.002, **train},
    }


def test_detect_config_checks():
    with pytest.raises(ConfigError, match="data.name"):
        adlab.load_config({"task": "detect"})
    with pytest.raises(ConfigError, match="ultralytics model"):
        adlab.load_config({"task": "detect", "data": {"name": "yolo", "root": "d.yaml"}})
    with pytest.raises(ConfigError, match="task detect"):
        adlab.load_config({"data": {"name": "yolo"}})


def test_dataset_check_counts_and_errors(rectangles):
    ds = read_data_yaml(rectangles)
    counts = check_dataset(ds)
    assert counts["train"]["images"] == 16 and counts["val"]["images"] == 6
    assert counts["train"]["instances"] >= 16
    bad = rectangles.parent / "labels" / "val" / "0.txt"
    bad.write_text("0 0.5 0.5 0.2\n")
    with pytest.raises(DataError, match=r"labels/val/0.txt:1: expected 5 fields"):
        check_dataset(ds)
    bad.write_text("1 0.5 0.5 0.2 0.2\n")
    (rectangles.parent / "labels" / "val" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DataError, match="orphan.txt: label file without an image"):
        check_dataset(ds)


def test_unknown_model_and_missing_weights(rectangles, tmp_path):
    config = detect_config(rectangles)
    config["model"]["name"] = "yolov99z"
    with pytest.raises(ConfigError, match="not an ultralytics model"):
        adlab.train(config, out=tmp_path / "x", verbose=False)
    config = detect_config(rectangles)
    config["model"]["weights"] = str(tmp_path / "nothing.pt")
    with pytest.raises(ConfigError, match="nothing.pt not found"):
        adlab.train(config, out=tmp_path / "y", verbose=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_tiny_detection_run_trains_and_fills_the_run_directory(rectangles, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative --out, as on the command line
    run = adlab.train(detect_config(rectangles), out="det", verbose=False)
    assert run.path.resolve() == (tmp_path / "det").resolve()
    for name in (
        "config.yaml",
        "env.json",
        "history.csv",
        "metrics.json",
        "checkpoints/best.pt",
        "checkpoints/last.pt",
        "figures/pr_curve.png",
        "figures/predictions.png",
        "figures/loss_curves.png",
    ):
        assert (run.path / name).is_file(), name
    metrics = json.loads((run.path / "metrics.json").read_text())
    for key in (
        "map50",
        "map50_95",
        "precision",
        "recall",
        "f1",
        "per_class_ap50",
        "map50_torchmetrics",
        "map50_95_torchmetrics",
    ):
        assert key in metrics, key
    assert set(metrics["per_class_ap50"]) == {"red", "green"}
    assert 0 <= metrics["map50_95"] <= metrics["map50"] <= 1
    with open(run.path / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"] and float(rows[0]["train_loss"]) > 0
    with open(run.path / "predictions.csv") as f:  # per val image: objects, detections shown, share found
        images = list(csv.DictReader(f))
    assert len(images) == metrics["num_val_images"]
    assert sum(int(r["y_true"]) for r in images) == metrics["num_val_instances"]
    assert all(0 <= float(r["found50"]) <= 1 for r in images)


def test_optimizer_muon_trains_a_detector_with_ultralytics_musgd(rectangles, tmp_path):
    import yaml

    run = adlab.train(detect_config(rectangles, epochs=1, optimizer="muon"), out=tmp_path / "det", verbose=False)
    args = yaml.safe_load((run.path / "ultralytics" / "args.yaml").read_text())
    assert args["optimizer"] == "MuSGD"
    assert json.loads((run.path / "metrics.json").read_text())["epochs_trained"] == 1


def test_an_interrupted_detection_run_resumes_after_its_last_checkpoint(rectangles, tmp_path, monkeypatch):
    from ultralytics.engine.trainer import BaseTrainer

    from adlab.run.train import resume
    from adlab.tasks.detect import train as detect_train

    save, saved = BaseTrainer.save_model, []
    record = detect_train._record_saved_checkpoint

    def save_and_count(trainer):
        saved.append(trainer.epoch)
        return save(trainer)

    def record_then_stop(trainer):
        record(trainer)
        if trainer.epoch == 0:
            raise KeyboardInterrupt  # stopped right after the first epoch's checkpoint was saved and recorded

    monkeypatch.setattr(BaseTrainer, "save_model", save_and_count)
    monkeypatch.setattr(detect_train, "_record_saved_checkpoint", record_then_stop)
    with pytest.raises(KeyboardInterrupt):
        adlab.train(detect_config(rectangles, epochs=3), out=tmp_path / "det", verbose=False)
    assert not (tmp_path / "det" / "metrics.json").exists()
    weights = tmp_path / "det" / "ultralytics" / "weights"
    recorded = json.loads((weights / "last.pt.sha256").read_text())
    assert recorded["epoch"] == 0 and recorded["final"] is False
    assert recorded["sha256"] == hashlib.sha256((weights / "last.pt").read_bytes()).hexdigest()
    run = resume(tmp_path / "det", verbose=False)
    assert saved == [0, 1, 2]  # the second and third epochs trained after the resume, the first not again
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert metrics["epochs_trained"] == 3 and 0 <= metrics["map50"] <= 1
    with open(run.path / "history.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2", "3"]
    assert (run.path / "checkpoints" / "best.pt").is_file()
    # the resumed training recorded each of its saves too; its last one ended the training
    recorded = json.loads((weights / "last.pt.sha256").read_text())
    assert recorded["epoch"] == 2 and recorded["final"] is True


def test_a_detection_run_with_no_usable_checkpoint_starts_again(rectangles, tmp_path):
    from adlab.run.train import resume

    run_dir = tmp_path / "det"
    adlab.train(detect_config(rectangles, epochs=1), out=run_dir, verbose=False)
    (run_dir / "metrics.json").unlink()  # an unfinished run...
    weights = run_dir / "ultralytics" / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    (weights / "last.pt").write_bytes(b"truncated")  # ...whose last.pt was cut short by a kill
    run = resume(run_dir, verbose=False)
    assert json.loads((run.path / "metrics.json").read_text())["epochs_trained"] == 1
    assert not (weights / "last.pt").exists()  # the folder was rebuilt by a new run


class MarkerOnLoad:
    """Unpickling this would create `path`: the code a resume must never run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def saved_checkpoint(run_dir, content, record: bool = True, final: bool = False):
    """last.pt as ultralytics saves it (torch.save: a zip archive) and, with `record`, the hash the
    run writes right after (`on_model_save`)."""
    import torch

    from adlab.tasks.detect.train import record_checkpoint

    weights = run_dir / "ultralytics" / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    torch.save(content, weights / "last.pt")
    if record:
        record_checkpoint(weights / "last.pt", epoch=0, final=final)
    return weights / "last.pt"


@pytest.mark.parametrize(
    "saved, usable",
    [
        ({"epoch": 0, "optimizer": {"state": {}}, "train_args": {"epochs": 3}}, True),  # stopped after epoch 1 of 3
        (
            {"epoch": 2, "optimizer": {"state": {}}, "train_args": {"epochs": 3}},
            False,
        ),  # stopped while scoring the last
        ({"epoch": -1, "optimizer": None, "train_args": {"epochs": 3}}, False),  # a finished run's stripped file
        ({"epoch": 0, "train_args": {"epochs": 3}}, False),  # no optimizer at all
        (["not", "a", "checkpoint"], False),
    ],
)
def test_only_a_recorded_checkpoint_with_epochs_left_and_its_optimizer_is_resumed(tmp_path, saved, usable):
    from adlab.tasks.detect.train import interrupted_checkpoint

    assert interrupted_checkpoint(tmp_path) is None  # no last.pt yet
    path = saved_checkpoint(tmp_path, saved)
    assert interrupted_checkpoint(tmp_path) == (path if usable else None)


def test_a_checkpoint_the_run_did_not_save_is_refused_before_it_is_loaded(tmp_path):
    from adlab.errors import CheckpointError
    from adlab.tasks.detect.train import CHECKPOINT_RECORD, interrupted_checkpoint

    marker = tmp_path / "marker-created-on-unpickle"
    payload = {"epoch": 0, "optimizer": {"state": {}}, "train_args": {"epochs": 3}, "x": MarkerOnLoad(marker)}
    run = tmp_path / "run"
    path = saved_checkpoint(run, payload, record=False)  # no record at all
    try:
        with pytest.raises(CheckpointError, match="not the checkpoint this run saved; refusing to load it") as info:
            interrupted_checkpoint(run)
        assert str(path) in str(info.value) and "remove it to start the run again" in str(info.value)
        # a record of another file: the run's own checkpoint replaced by another whole archive
        saved_checkpoint(run, {"epoch": 0, "optimizer": {"state": {}}, "train_args": {"epochs": 3}})
        saved_checkpoint(run, payload, record=False)
        with pytest.raises(CheckpointError, match="not the checkpoint this run saved"):
            interrupted_checkpoint(run)
        # an unreadable record is no record
        (path.with_name(CHECKPOINT_RECORD)).write_text("{not json")
        with pytest.raises(CheckpointError, match="not the checkpoint this run saved"):
            interrupted_checkpoint(run)
    finally:
        assert not marker.exists(), "interrupted_checkpoint ran code pickled in last.pt"


def test_a_checkpoint_cut_short_by_a_kill_starts_the_run_again(tmp_path):
    from adlab.tasks.detect.train import interrupted_checkpoint

    path = saved_checkpoint(tmp_path, {"epoch": 0, "optimizer": {"state": {}}, "train_args": {"epochs": 3}})
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # a kill during ultralytics' save: zip without its directory
    assert interrupted_checkpoint(tmp_path) is None
    path.write_bytes(whole[:-30])  # cut inside the end-of-archive record
    assert interrupted_checkpoint(tmp_path) is None
    path.write_bytes(b"")
    assert interrupted_checkpoint(tmp_path) is None


def test_a_checkpoint_saved_as_training_ended_is_never_loaded(tmp_path):
    """Stopped while ultralytics scored the finished training (it rewrites last.pt without the
    optimizer then): nothing to continue, and the file is not even opened."""
    from adlab.tasks.detect.train import interrupted_checkpoint

    marker = tmp_path / "marker-created-on-unpickle"
    path = saved_checkpoint(tmp_path, {"epoch": 2, "x": MarkerOnLoad(marker)}, final=True)
    path.write_bytes(path.read_bytes())  # (any content: stripped, or replaced)
    assert interrupted_checkpoint(tmp_path) is None
    assert not marker.exists()


@pytest.mark.slow
def test_torchmetrics_map_agrees_with_ultralytics(tmp_path):
    """Once the model detects something, both implementations of mAP give nearly the same number."""
    from tests.detection.conftest import make_rectangles

    data = make_rectangles(tmp_path / "rects", n_train=48, n_val=16)
    config = detect_config(data, epochs=40, batch_size=16, lr=0.003)
    config["data"]["image_size"] = 128
    run = adlab.train(config, out=tmp_path / "det", verbose=False)
    m = run.metrics
    assert m["map50"] > 0.3, m
    assert m["map50_torchmetrics"] == pytest.approx(m["map50"], abs=0.03)
    assert m["map50_95_torchmetrics"] == pytest.approx(m["map50_95"], abs=0.03)
    with open(run.path / "predictions.csv") as f:  # a detector this good finds most objects image by image
        assert np.mean([float(r["found50"]) for r in csv.DictReader(f)]) > 0.3


def test_plan_estimates_a_detection_run_from_ultralytics_own_network_and_loss(rectangles, monkeypatch):
    """`--plan` times ultralytics' network with its own loss on random boxes, at the run's square imgsz, and
    counts a present YOLO data set's images: a detection study is estimated like the others."""
    import torch

    from adlab.study import plan
    from adlab.tasks import get_task, output_costs
    from adlab.tasks.detect.timing import LossOnRandomBoxes, checkpoint_bytes

    config = adlab.load_config(detect_config(rectangles, epochs=3))
    assert plan.input_shape(config) == (3, 96, 96)
    counts = plan.split_images(config)
    assert counts == {"train": 16, "val": 6, "test": 0}

    net = get_task("detect").timing_network(config, (3, 96, 96))
    assert isinstance(net, LossOnRandomBoxes) and net.model.model[-1].nc == 2  # the data set's two classes
    loss = net.train()(torch.rand(2, 3, 96, 96))
    assert loss.ndim == 0 and loss.item() > 0 and loss.requires_grad  # ultralytics' box, class and DFL loss
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    weights = sum(p.numel() for p in net.parameters())
    assert checkpoint_bytes(net) == 4 * weights  # EMA and momentum, both half precision

    step, per_image, checkpoints = plan._time_step(config, (3, 96, 96), 8)
    assert step > 0 and per_image > 0 and checkpoints > 0
    monkeypatch.setattr(plan, "_time_step", lambda config, shape, batch: (0.5, 0.01, 0.25))
    monkeypatch.setattr(output_costs, "figure_seconds", lambda: 0.1)
    figures = get_task("detect").figures_per_run * 0.1
    # 3 epochs of 2 steps (16 images, batch 8), a validation pass and two checkpoints; then the final
    # validation and the torchmetrics pass over the 6 val images
    assert plan.estimate_seconds(config, counts, {}) == pytest.approx(
        3 * (2 * 0.5 + 6 * 0.01 + 0.25) + 2 * 6 * 0.01 + figures
    )
    made = adlab.load_config(
        {**detect_config(rectangles), "data": {"name": "yolo", "root": "{out}/data/cars/data.yaml"}}
    )
    assert plan.split_images(made) is None  # made by the study's prepare step: not here yet
