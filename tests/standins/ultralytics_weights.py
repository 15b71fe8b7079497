"""ultralytics' weights folder as a release download leaves it: <weights_dir>/yolov5su.pt, a checkpoint
saved by ultralytics itself (Model.save) of the named network with random weights (not the COCO-trained
file), and that folder made ultralytics' own for one test, with every download failing as offline."""

from __future__ import annotations

import hashlib
from pathlib import Path


def write_ultralytics_checkpoint(folder: Path, name: str = "yolov5su.pt") -> tuple[Path, str]:
    """folder/name, a real ultralytics detection checkpoint of the network `name` names; and its sha256."""
    from adlab.tasks.detect.train import _import_ultralytics

    _import_ultralytics()  # with adlab's settings (and Pillow's own Image.open kept)
    from ultralytics import YOLO

    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    YOLO(f"{Path(name).stem}.yaml").save(str(path))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def offline_weights_folder(monkeypatch, folder: Path) -> list:
    """ultralytics' weights folder moved to `folder` for this test (a copy of its settings: the real
    settings file is never written) and no network: each download attempt is recorded in the returned
    list and fails as offline, as it does on a machine without internet."""
    from adlab.tasks.detect.train import _import_ultralytics

    _import_ultralytics()
    import ultralytics.utils
    from ultralytics.utils import downloads

    settings = {**dict(ultralytics.utils.SETTINGS), "weights_dir": str(folder)}
    monkeypatch.setattr(ultralytics.utils, "SETTINGS", settings)
    attempts = []

    def offline(url, file=None, *args, **kwargs):
        attempts.append((url, str(file)))
        raise ConnectionError(f"❌  Download failure for {url}. Environment may be offline.")

    monkeypatch.setattr(downloads, "safe_download", offline)
    return attempts
