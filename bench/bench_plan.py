"""`adlab study --plan`'s estimate against the measured time, run by run, for the shipped assignment studies.

Each study of studies/ runs as it ships (its networks, batch sizes, precisions, weights regimes and prepare
steps) with one seed and two epochs, on its data in the real on-disk format: real Fashion-MNIST for F (capped
at 10,000 training images), the test suite's stand-ins for the others (CIFAR-10's pickles, EuroSAT's JPEGs,
KITTI's devkit, MNIST's IDX files; tests/standins) at a size where training, not start-up, fills a run. The
ImageNet and COCO weights are stand-in files in a temporary torch.hub cache and ultralytics weights folder.

Measured: a run's wall time, its env.json `prepare_seconds` (the data read and the model built) and the time
from its `started` to its metrics.json (training, validation, checkpoints, the test evaluation and the
figures). Planned: the plan's estimate for the same run (`adlab.study.plan.estimate_seconds`: one training
step and one evaluation batch of the network timed, times the steps and images of its splits; a checkpoint, a
figure, the data read), given the split sizes the run recorded. The plan uses the public split sizes for the
built-in sets; here the stand-ins' own sizes stand in for them. Goal: every run within 1.5x.

    python bench/bench_plan.py                 # all studies (about 15 minutes on 2 cores)
    python bench/bench_plan.py f e             # some of them
    python bench/bench_plan.py --from /tmp/f   # a study folder already made (the full study F, say)
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import ROOT, record, with_saved_rows  # noqa: E402

GOAL = 1.5
STUDIES = {
    "a": "a_cifar10_lr",
    "b": "b_eurosat_transfer",
    "c": "c_kitti_crops",
    "d": "d_kitti_yolo",
    "e": "e_mnist_autoencoders",
    "f": "f_fmnist_autoencoder_search",
}
TWO_EPOCHS = ["train.epochs=2"]


def prepare_data(key: str, folder: Path) -> list[str]:
    """The study's data in its real format under `folder`; the --set items the study runs with."""
    if key == "a":
        from standins.cifar import write_cifar10

        write_cifar10(folder / "data", per_batch=2000)  # 10,000 training images, 2,000 test
        os.environ["ADLAB_DATA"] = str(folder / "data")
        return [*TWO_EPOCHS, "data.verify=false"]
    if key == "b":
        from standins.eurosat import write_eurosat

        write_eurosat(folder / "data", per_class=150)
        os.environ["ADLAB_DATA"] = str(folder / "data")
        return TWO_EPOCHS
    if key == "c":
        from standins.kitti import write_kitti

        write_kitti(folder / "study" / "kitti", images=300, size=(620, 188))
        return TWO_EPOCHS
    if key == "d":  # KITTI's own size: ultralytics reads and augments each image every epoch
        from standins.kitti import write_kitti

        write_kitti(folder / "study" / "kitti", images=100, size=(1242, 375))
        return TWO_EPOCHS
    if key == "e":
        from standins.mnist import write_mnist

        write_mnist(folder / "data", train=15000, test=2500, kind="MNIST")
        os.environ["ADLAB_DATA"] = str(folder / "data")
        return TWO_EPOCHS
    return [*TWO_EPOCHS, "data.train_per_class=1000"]  # F: real Fashion-MNIST, Debian's package


def weights(folder: Path) -> None:
    """Stand-in ImageNet files for the torchvision nets the studies load (never downloaded here)."""
    from standins.hub import write_imagenet_weights

    os.environ["TORCH_HOME"] = str(folder / "torch")
    for name in ("alexnet", "mobilenet_v2", "resnet18"):
        write_imagenet_weights(folder / "torch", name)


@contextlib.contextmanager
def coco_weights(folder: Path) -> Iterator[None]:
    """ultralytics' weights folder, in this process, holding a stand-in COCO yolov5su.pt (D's pretrained run)."""
    import pytest

    from standins.ultralytics_weights import offline_weights_folder, write_ultralytics_checkpoint

    with pytest.MonkeyPatch.context() as monkeypatch:
        offline_weights_folder(monkeypatch, folder / "ultralytics-weights")
        write_ultralytics_checkpoint(folder / "ultralytics-weights", "yolov5su.pt")
        yield


def one_seed(name: str, folder: Path) -> Path:
    text = (ROOT / "studies" / f"{name}.yaml").read_text(encoding="utf-8").replace("seeds: [0, 1, 2]", "seeds: [0]")
    path = folder / "study" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def compare(study_path: Path, out: Path, overrides: list[str]) -> list[dict]:
    """One row per run of the study folder `out`: planned and measured seconds."""
    from adlab.study.plan import estimate_seconds
    from adlab.study.spec import load_study

    cache: dict = {}
    rows = []
    study = load_study(study_path, overrides=overrides)
    for run in study.runs:
        folder = out / "runs" / run.name
        if not (folder / "metrics.json").is_file():
            continue
        env = json.loads((folder / "env.json").read_text())
        measured = (folder / "metrics.json").stat().st_mtime - datetime.fromisoformat(env["started"]).timestamp()
        measured += env.get("prepare_seconds", 0.0)  # the data read and the model built, before "started"
        epochs = len((folder / "history.csv").read_text().splitlines()) - 1  # early stopping may end sooner
        config = run.config.model_copy(update={"train": run.config.train.model_copy(update={"epochs": epochs})})
        counts = {split: n["images"] if isinstance(n, dict) else n for split, n in env["counts"].items()}
        counts.setdefault("test", 0)  # detection: images and objects per split, scored on val
        planned = estimate_seconds(config, counts, cache) if "train" in counts else None
        ratio = measured / planned if planned else None
        rows.append({
            "measure": f"{study.name[:1]} {run.name}: measured / planned",
            "value": ratio if ratio is not None else float("nan"),
            "unit": f"({measured:.0f} s / {planned:.0f} s)" if planned else f"({measured:.0f} s / not estimated)",
            "goal": f"1/{GOAL} to {GOAL}",
            "met": None if ratio is None else 1 / GOAL <= ratio <= GOAL,
        })
        print(rows[-1]["measure"], rows[-1]["unit"], flush=True)
    return rows


def main(args: list[str]) -> None:
    from adlab.study.runner import run_study

    if args[:1] == ["--from"]:
        out = Path(args[1])
        overrides = json.loads((out / "study.json").read_text()).get("set", [])
        record(f"plan_{out.name}", compare(out / "study.yaml", out, overrides))
        return
    keys = [a for a in args if a in STUDIES]  # run_all.py passes "fast" to every benchmark: this one has no fast form
    rows = []
    for key in keys or list(STUDIES):
        # ADLAB_DATA and TORCH_HOME point into this study's temporary folder only
        with mock.patch.dict(os.environ), tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            overrides = prepare_data(key, folder)
            weights(folder)
            path = one_seed(STUDIES[key], folder)
            with coco_weights(folder) if key == "d" else contextlib.nullcontext():
                out = run_study(path, out=folder / "out", overrides=overrides, verbose=False)
            rows += compare(path, out, overrides)
    record("plan", with_saved_rows("plan", rows, keys))


if __name__ == "__main__":
    main(sys.argv[1:])
