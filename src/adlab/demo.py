"""`adlab demo`: the seeds' curriculum, end to end, on offline data, ending in one report.

1. a VGG-style CNN and a learning-rate study (with and without StepLR in the full demo),
2. transfer regimes (scratch / fine-tune / frozen) on split classes, and a late fusion,
3. AE vs VAE vs DAE with latent probes, maps and samples,
4. YOLO detection from scratch vs from a pretrained checkpoint on synthetic KITTI-like scenes.

Fashion-MNIST when it is on the machine, scikit-learn's digits otherwise. `quick` is sized to
finish in about three minutes on a 2-core CPU; the full demo in about twenty.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from adlab import io, ownership

MARKER = "demo.json"  # what the demo ran on (its ownership marker is ownership.MARKER)


def _fashion_mnist_available() -> bool:
    from adlab.data.sources import DEBIAN_FASHION_MNIST, default_root
    from adlab.data.idx import find_idx

    return any(find_idx(folder, "train-images-idx3-ubyte") for folder in
               (DEBIAN_FASHION_MNIST, default_root() / "FashionMNIST" / "raw"))


@dataclass
class Synth:
    """Make a synthetic scene data set (adlab data synth-scenes) for later runs."""

    name: str
    arguments: dict


@dataclass
class Train:
    name: str
    section: str
    config: dict


@dataclass
class Fuse:
    name: str
    section: str
    members: list[str]
    method: str


def plan(source: str, quick: bool, out: Path) -> list[Synth | Train | Fuse]:
    """The demo's steps, in order."""
    fm = source == "fashion_mnist"
    runs = out / "runs"
    small_cnn = {"name": "cnn", "conv_channels": [16, 32] if quick else [32, 64, 128],
                 "convs_per_block": 1 if quick else 2, "hidden": [64] if quick else [128]}
    # Fashion-MNIST is capped per class so the full demo stays near 20 minutes on 2 cores
    cap = (200 if quick else 1000) if fm else None
    data = {"name": source, "val_fraction": 0.05 if fm else 0.1}
    quiet = {"progress_bar": False}
    steps: list[Synth | Train | Fuse] = []

    section = "1. CNN learning-rate study"
    schedulers = [None] if quick else [None, {"name": "step", "step_size": 3, "gamma": 0.5}]
    for lr in (0.01, 0.001, 0.0001):
        for sched in schedulers:
            name = f"cnn-lr={lr:g}" + ("" if quick else f"-{'steplr' if sched else 'constant'}")
            steps.append(Train(name, section, {
                "data": {**data, "train_per_class": cap}, "model": small_cnn,
                "train": {"epochs": 3 if quick else 8, "batch_size": 128 if fm else 64, "lr": lr,
                          "scheduler": sched, **quiet}}))

    section = "2. Transfer regimes and late fusion"
    first, second = ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])
    pre_cap = (500 if quick else 2000) if fm else None
    shots = 50 if fm else 20
    steps.append(Train("pretrain-cnn", section, {
        "data": {**data, "classes": first, "train_per_class": pre_cap}, "model": small_cnn,
        "train": {"epochs": 3 if quick else 5, "batch_size": 128, "lr": 0.002, "scheduler": "cosine", **quiet}}))
    few = {**data, "classes": second, "train_per_class": shots, "val_fraction": 0.02 if fm else 0.1}
    regimes = {"scratch": {"weights": None}, "finetune": {"weights": str(runs / "pretrain-cnn")},
               "frozen": {"weights": str(runs / "pretrain-cnn"), "freeze": True}}
    for regime, model in regimes.items():
        steps.append(Train(f"cnn-{regime}", section, {
            "data": few, "model": {**small_cnn, **model},
            "train": {"epochs": 15 if quick else 40, "batch_size": 50, "lr": 0.001, "scheduler": "cosine", **quiet}}))
    steps.append(Fuse("fusion-finetune+frozen", section, ["cnn-finetune", "cnn-frozen"], "mean_prob"))

    section = "3. Autoencoders: AE vs VAE vs DAE"
    ae_cap = (300 if quick else 2000) if fm else None
    for model in ("ae", "vae", "dae"):
        steps.append(Train(model, section, {
            "task": "autoencode", "data": {**data, "train_per_class": ae_cap},
            "model": {"name": model, "latent_dim": 10, "kl_warmup_epochs": 1, "tsne_points": 500 if quick else 2000},
            "train": {"epochs": 3 if quick else 8, "batch_size": 128, "lr": 0.002, **quiet}}))

    section = "4. Detection: YOLO from scratch vs transfer"
    scenes = out / "data"
    steps.append(Synth("scenes_pretrain", {"out": scenes / "pretrain", "images": 80 if quick else 300,
                                               "seed": 0, "val_fraction": 0.1}))
    steps.append(Synth("scenes_target", {"out": scenes / "target", "images": 40 if quick else 200,
                                             "seed": 1, "val_fraction": 0.5}))
    detect = {"task": "detect", "model": {"name": "yolov8n"}}
    imgsz = 128 if quick else 192
    steps.append(Train("yolo-pretrain", section, {
        **detect, "data": {"name": "yolo", "root": str(scenes / "pretrain" / "data.yaml"), "image_size": imgsz},
        "train": {"epochs": 3 if quick else 8, "batch_size": 16, "optimizer": "adamw", "lr": 0.002}}))
    for regime, weights in (("scratch", None), ("transfer", str(runs / "yolo-pretrain"))):
        steps.append(Train(f"yolo-{regime}", section, {
            **{**detect, "model": {"name": "yolov8n", "weights": weights}},
            "data": {"name": "yolo", "root": str(scenes / "target" / "data.yaml"), "image_size": imgsz},
            "train": {"epochs": 4 if quick else 20, "batch_size": 16, "optimizer": "adamw", "lr": 0.002}}))
    return steps


def run_demo(out: str | Path = "runs/demo", quick: bool = False, verbose: bool = True) -> Path:
    from adlab.detection.synth import synth_scenes
    from adlab.tasks.classify.fuse import fuse
    from adlab.run.train import train
    from adlab.study.report import write_report
    from adlab.study.spec import PlannedRun, Study, StudySpec

    say = io.printer(verbose)
    out = Path(out)
    ownership.prepare_output(out, "demo", overwrite=True)  # an earlier demo is replaced, nothing else
    source = "fashion_mnist" if _fashion_mnist_available() else "digits"
    say(f"demo data: {'Fashion-MNIST (Debian package dataset-fashion-mnist)' if source == 'fashion_mnist' else 'scikit-learn digits (Fashion-MNIST not found)'}"
        f"; {'quick' if quick else 'full'} demo")
    io.write_json(out / MARKER, {"source": source, "quick": quick})
    steps = plan(source, quick, out)
    runs = [s for s in steps if not isinstance(s, Synth)]
    started = time.perf_counter()
    sections: dict[str, list[str]] = {}
    for step in steps:
        t0 = time.perf_counter()
        if isinstance(step, Synth):
            synth_scenes(source="auto", **step.arguments)
            continue
        sections.setdefault(step.section, []).append(step.name)
        if isinstance(step, Train):
            metrics = train(step.config, out=out / "runs" / step.name, verbose=False).metrics
        else:
            metrics = fuse([out / "runs" / m for m in step.members], out=out / "runs" / step.name,
                           method=step.method, verbose=False)
        say(f"[{runs.index(step) + 1}/{len(runs)}] {step.name}: {_headline(metrics)} "
            f"({time.perf_counter() - t0:.0f} s; elapsed {time.perf_counter() - started:.0f} s)")
    names = [s.name for s in runs]
    study = Study(out / MARKER, StudySpec(name=f"adlab demo ({'quick' if quick else 'full'}, {source})"),
                  [PlannedRun(n, n, None) for n in names])
    report = write_report(out, study, sections=list(sections.items()))
    say(f"report: {report} and {report.with_suffix('.html')} ({time.perf_counter() - started:.0f} s in all)")
    return report


def _headline(metrics: dict) -> str:
    for key in ("accuracy", "map50", "test_mse"):
        if key in metrics:
            extra = f", latent kNN {metrics['latent_knn_accuracy']:.3f}" if key == "test_mse" else ""
            return f"{key} {metrics[key]:.4f}{extra}"
    return ""
