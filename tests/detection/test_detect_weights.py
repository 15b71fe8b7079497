"""Detection `model.weights` as an ultralytics checkpoint name (yolov8n.pt): checked against
ultralytics' release assets, taken from its weights folder (downloaded there on first use), said and
recorded with its sha256. No test downloads: the weights folder holds a checkpoint saved by ultralytics
itself from a test's model, and every download attempt fails as offline."""

import hashlib
import json
from types import SimpleNamespace

import pytest
import yaml

import adlab
from adlab.errors import CheckpointError, ConfigError

pytestmark = pytest.mark.requires("detect")

URL = "https://github.com/ultralytics/assets/releases/download/v8.4.0/yolov8n.pt"


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """ultralytics' weights folder moved under tmp_path, and no network (tests/standins)."""
    from standins.ultralytics_weights import offline_weights_folder

    folder = tmp_path / "ultralytics-weights"
    return SimpleNamespace(path=folder, attempts=offline_weights_folder(monkeypatch, folder))


def saved_yolov8n(path):
    """A real ultralytics checkpoint (ultralytics' own Model.save of a yolov8n) at any file name, as the
    release asset is."""
    from ultralytics import YOLO

    path.parent.mkdir(parents=True, exist_ok=True)
    YOLO("yolov8n.yaml").save(str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def detect_config(data_yaml, weights, name="yolov8n", **train):
    return {
        "task": "detect",
        "data": {"name": "yolo", "root": str(data_yaml), "image_size": 64},
        "model": {"name": name, "weights": weights},
        "train": {"epochs": 1, "batch_size": 8, **train},
    }


def test_a_named_checkpoint_in_the_weights_folder_is_loaded_said_and_recorded(rectangles, weights_dir):
    from adlab.tasks.detect.train import prepare

    sha256 = saved_yolov8n(weights_dir.path / "yolov8n.pt")
    said = []
    job = prepare(adlab.load_config(detect_config(rectangles, "yolov8n.pt")), lambda *a: said.append(" ".join(a)))
    assert weights_dir.attempts == []  # found: nothing fetched
    assert job.environment["weights"] == {
        "source": "ultralytics",
        "file": str(weights_dir.path / "yolov8n.pt"),
        "sha256": sha256,
        "name": "yolov8n.pt",
        "url": URL,
        "downloaded": False,
    }
    assert f"weights: ultralytics yolov8n.pt from {weights_dir.path / 'yolov8n.pt'}, sha256 {sha256[:8]}…" in said
    assert job.state.weights == str(weights_dir.path / "yolov8n.pt") and job.state.model.task == "detect"


def test_a_local_checkpoint_is_recorded_with_its_sha256(rectangles, weights_dir, tmp_path):
    from adlab.tasks.detect.train import prepare

    path = tmp_path / "mine.pt"
    sha256 = saved_yolov8n(path)
    said = []
    job = prepare(adlab.load_config(detect_config(rectangles, str(path))), lambda *a: said.append(" ".join(a)))
    assert job.environment["weights"] == {"source": "file", "file": str(path), "sha256": sha256}
    assert f"weights: {path}, sha256 {sha256[:8]}…" in said


@pytest.mark.parametrize(
    "weights, name, message",
    [
        (
            "yolov8x7.pt",
            "yolov8n",
            "model.weights: unknown ultralytics checkpoint 'yolov8x7.pt' (e.g. yolov8n.pt, "
            "yolo11n.pt, yolov5su.pt; did you mean",
        ),
        ("yolov8n-seg.pt", "yolov8n", "model.weights: yolov8n-seg.pt is not an ultralytics detection model"),
        (
            "yolo11n.pt",
            "yolov8n",
            "model.weights: yolo11n.pt is a yolo11n checkpoint but model.name is yolov8n; set model.name: yolo11n",
        ),
    ],
)
def test_a_name_that_is_no_detection_checkpoint_of_model_name_is_one_line(
    cli, rectangles, weights_dir, weights, name, message
):
    config = cli.root / "det.yaml"
    config.write_text(yaml.safe_dump(detect_config(rectangles, weights, name)))
    line = cli.refused("train", config, "--out", "run")
    assert message in line
    assert weights_dir.attempts == [] and not weights_dir.path.exists()  # refused before any download


def test_a_missing_named_checkpoint_offline_is_one_line_naming_where_to_put_it(cli, rectangles, weights_dir):
    config = cli.root / "det.yaml"
    config.write_text(yaml.safe_dump(detect_config(rectangles, "yolov8n.pt")))
    target = weights_dir.path / "yolov8n.pt"
    line = cli.refused("train", config, "--out", "run")  # nothing written in the working folder
    assert line == (
        f"adlab: error: model.weights: yolov8n.pt could not be downloaded from {URL} (Environment may "
        f"be offline); without internet, put that file at {target}"
    )
    assert weights_dir.attempts == [(URL, str(target))]  # into the weights folder, never the working folder
    assert not target.exists()


def test_a_broken_named_checkpoint_is_one_line_naming_it(rectangles, weights_dir, tmp_path):
    from adlab.tasks.detect.train import prepare

    weights_dir.path.mkdir()
    (weights_dir.path / "yolov8n.pt").write_bytes(b"cut short")
    with pytest.raises(CheckpointError) as err:
        prepare(adlab.load_config(detect_config(rectangles, "yolov8n.pt")), lambda *a: None)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{weights_dir.path / 'yolov8n.pt'}: not a readable ultralytics checkpoint (")
    assert message.endswith("; delete it and run again online")
    with pytest.raises(ConfigError, match=r"sub/yolov8n.pt not found"):  # a path is never a name
        prepare(adlab.load_config(detect_config(rectangles, "sub/yolov8n.pt")), lambda *a: None)


class MarkerOnLoad:
    """Unpickling this would create `path`: code a checkpoint must never run when loaded."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_checkpoint_with_code_in_it_is_refused_before_it_is_unpickled(rectangles, weights_dir, tmp_path):
    import torch

    from adlab.tasks.detect.train import prepare

    marker = tmp_path / "marker-created-on-unpickle"
    weights_dir.path.mkdir()
    for path in (weights_dir.path / "yolov8n.pt", tmp_path / "given.pt"):  # by name, and as a path
        torch.save({"model": None, "train_args": {}, "x": MarkerOnLoad(marker)}, path)
        weights = path.name if path.parent == weights_dir.path else str(path)
        with pytest.raises(CheckpointError) as err:
            prepare(adlab.load_config(detect_config(rectangles, weights)), lambda *a: None)
        assert str(err.value) == (
            f"{path}: refused: it references types outside ultralytics' checkpoint format (loading it could run code)"
        )
        assert not marker.exists(), "the checkpoint's code ran"


@pytest.mark.slow
def test_training_from_a_named_checkpoint_starts_from_that_file(rectangles, weights_dir, tmp_path):
    sha256 = saved_yolov8n(weights_dir.path / "yolov8n.pt")
    run = adlab.train(detect_config(rectangles, "yolov8n.pt"), out=tmp_path / "det", verbose=False)
    recorded = json.loads((run.path / "env.json").read_text())["weights"]
    assert recorded["file"] == str(weights_dir.path / "yolov8n.pt") and recorded["sha256"] == sha256
    args = yaml.safe_load((run.path / "ultralytics" / "args.yaml").read_text())
    assert args["model"] == str(weights_dir.path / "yolov8n.pt") and args["pretrained"] is True
    assert yaml.safe_load((run.path / "config.yaml").read_text())["model"]["weights"] == "yolov8n.pt"
    assert json.loads((run.path / "metrics.json").read_text())["epochs_trained"] == 1
    assert weights_dir.attempts == []
    # the run folder, as the weights of the next run: ultralytics' restricted loader accepts what it trained
    from adlab.tasks.detect.train import prepare

    job = prepare(adlab.load_config(detect_config(rectangles, str(run.path))), lambda *a: None)
    best = run.path / "checkpoints" / "best.pt"
    assert job.environment["weights"] == {
        "source": "run",
        "file": str(best),
        "sha256": hashlib.sha256(best.read_bytes()).hexdigest(),
    }
