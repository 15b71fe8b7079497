"""The time of each shipped assignment study's quick version (`adlab study STUDY.yaml --quick`), the command a
student runs first, as a whole process on this machine. F runs on real Fashion-MNIST (Debian's package). The
others need downloads this machine cannot make, so they run on the test suite's stand-ins in the real formats
at the real data sets' sizes: CIFAR-10's 50,000 + 10,000 images (A), EuroSAT's 27,000 JPEGs (B), MNIST's
60,000 + 10,000 (E); for KITTI (C, D) 500 scenes of KITTI's 1242x375 size, the subset the course used for C
(all 7,481 scenes take about 15x the training time). The ImageNet and COCO weights are stand-in files of the
real networks. A stand-in's accuracy means nothing; its time is the time of the same work on the real data
(early stopping aside: the quick versions have none).

    python bench/bench_quick.py            # all six (about 25 minutes on 2 cores)
    python bench/bench_quick.py e f        # some of them
    python bench/bench_quick.py fast       # F only (make bench's fast form)
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench_plan import STUDIES, coco_weights, compare, weights  # noqa: E402
from common import ROOT, record, with_saved_rows  # noqa: E402

KITTI_SCENES = 500


def prepare(key: str, folder: Path) -> tuple[Path, list[str], str]:
    """The study file (copied into `folder` where its data sits next to it), its --set items, and what its
    data is."""
    study = ROOT / "studies" / f"{STUDIES[key]}.yaml"
    if key == "a":
        from standins.cifar import write_cifar10

        write_cifar10(folder / "data", per_batch=10000)
        os.environ["ADLAB_DATA"] = str(folder / "data")
        return study, ["data.verify=false"], "CIFAR-10 stand-in, 50,000 + 10,000 images"
    if key == "b":
        from standins.eurosat import write_eurosat

        write_eurosat(folder / "data", per_class=2700)
        os.environ["ADLAB_DATA"] = str(folder / "data")
        return study, [], "EuroSAT stand-in, 27,000 JPEGs"
    if key in ("c", "d"):
        from standins.kitti import write_kitti

        write_kitti(folder / "study" / "kitti", images=KITTI_SCENES, size=(1242, 375))
        copy = folder / "study" / study.name
        copy.write_text(study.read_text(encoding="utf-8"), encoding="utf-8")
        return copy, [], f"KITTI stand-in, {KITTI_SCENES} scenes of 1242x375"
    if key == "e":
        from standins.mnist import write_mnist

        write_mnist(folder / "data", train=60000, test=10000, kind="MNIST")
        os.environ["ADLAB_DATA"] = str(folder / "data")
        return study, [], "MNIST stand-in, 60,000 + 10,000 images"
    return study, [], "real Fashion-MNIST (Debian's package)"


def run_quick(key: str, study: Path, out: Path, overrides: list[str], folder: Path) -> float:
    """Wall seconds of the quick study: `adlab study --quick` as a process; D in this process, where
    ultralytics' weights folder can hold the stand-in COCO checkpoint."""
    if key == "d":
        from adlab.study.runner import run_study

        with coco_weights(folder):
            start = time.perf_counter()
            run_study(study, out=out, overrides=["study.quick=true", *overrides], verbose=False)
            return time.perf_counter() - start
    import subprocess

    command = [sys.executable, "-m", "adlab.cli", "study", str(study), "--quick", "--out", str(out)]
    for item in overrides:
        command += ["--set", item]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def summary(out: Path) -> str:
    """Each run's training seconds (its metrics are left out: on stand-ins they say nothing about quality)."""
    parts = []
    for run in sorted((out / "runs").iterdir()):
        metrics = json.loads((run / "metrics.json").read_text())
        seconds = metrics.get("train_seconds")
        parts.append(f"{run.name} {seconds:.0f} s training" if seconds else run.name)
    return "; ".join(parts)


def main(args: list[str]) -> None:
    keys = ["f"] if args == ["fast"] else [a for a in args if a in STUDIES]  # fast: F's 2 minutes on real data
    rows = []
    for key in keys or list(STUDIES):
        # ADLAB_DATA and TORCH_HOME point into this study's temporary folder only
        with mock.patch.dict(os.environ), tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            study, overrides, data = prepare(key, folder)
            weights(folder)
            seconds = run_quick(key, study, folder / "out", overrides, folder)
            rows.append({
                "measure": f"{STUDIES[key]} --quick: wall time",
                "value": seconds,
                "unit": f"s ({data}; {summary(folder / 'out')})",
                "goal": "-",
                "met": None,
            })
            print(rows[-1]["measure"], f"{seconds:.0f}", rows[-1]["unit"], flush=True)
            rows += compare(study, folder / "out", ["study.quick=true", *overrides])  # --plan, run by run
    record("quick", with_saved_rows("quick", rows, keys))


if __name__ == "__main__":
    main(sys.argv[1:])
