"""Every network of the shipped assignment studies (studies/a-f): adlab's training throughput against a plain
PyTorch loop of the same network, side by side on this machine.

For each distinct network (its model settings, input shape, batch size, precision and frozen layers; seeds
and learning rates do not change a step's cost):
- plain loop: the network adlab builds for the run (`timing_network`, random initial weights), trained on
  random tensors already in memory with the task's loss (cross-entropy; an autoencoder's summed squared error
  per image, plus the KL term for a VAE and corrupted inputs for a DAE) and the run's optimizer, in the run's
  precision and memory layout; the median of 20 steps after 3 of warm-up;
- adlab: `adlab.train` of the run's config on a folder of random images of that shape (the in-memory data
  path, its augmentation and logging), no validation split; the mean of its second and third epochs.
Goal: adlab at 1/1.5 of the plain loop's images per second or better. YOLO (study D) is not here: ultralytics'
own trainer is adlab's training loop for detection, so there is no adlab step to compare with it.

    python bench/bench_study_nets.py            # writes results/study_nets.json (about 10 minutes)
    python bench/bench_study_nets.py f          # the nets of some studies only
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, record, with_saved_rows  # noqa: E402

GOAL, THREADS, STEPS_PER_EPOCH = 1.5, 2, 20
STUDIES = {"a": "a_cifar10_lr", "b": "b_eurosat_transfer", "c": "c_kitti_crops", "e": "e_mnist_autoencoders",
           "f": "f_fmnist_autoencoder_search"}


def networks(keys: list[str]) -> dict[tuple, tuple[str, object, tuple[int, int, int]]]:
    """{key: (a run's name, its config, input shape)} for each distinct network of the studies."""
    from adlab.study.plan import input_shape
    from adlab.study.spec import load_study

    found: dict[tuple, tuple[str, object, tuple[int, int, int]]] = {}
    for key in keys:
        for run in load_study(ROOT / "studies" / f"{STUDIES[key]}.yaml").runs:
            config = run.config
            shape = input_shape(config)
            if shape is None:
                continue
            model = config.model.model_dump_json(exclude={"weights", "load_head"})
            identity = (config.task, model, shape, config.train.batch_size, config.train.precision)
            found.setdefault(identity, (f"{key} {run.name.split('-seed=')[0]}", config, shape))
    return found


def plain_loop(config, shape: tuple[int, int, int], steps: int = 20) -> float:
    from adlab.models.autoencoders import corrupt, kl_divergence
    from adlab.models.layout import channels_last_pays
    from adlab.settings.autoencoder import AutoencoderConfig
    from adlab.tasks import get_task

    torch.manual_seed(0)
    model = config.model.model_copy(update={"weights": None})  # random weights; frozen layers stay frozen
    net = get_task(config.task).timing_network(config.model_copy(update={"model": model}), shape)
    batch, precision = config.train.batch_size, str(config.train.precision)
    layout = torch.channels_last if channels_last_pays(net, config.train.channels_last, precision) else None
    net = net.train().to(memory_format=layout or torch.contiguous_format)
    trained = [p for p in net.parameters() if p.requires_grad]
    optimizer = (torch.optim.SGD(trained, lr=config.train.lr, momentum=0.9) if config.train.optimizer == "sgd"
                 else torch.optim.Adam(trained, lr=config.train.lr))
    x = torch.rand(batch * 4, *shape)
    y = torch.randint(0, 10, (batch * 4,))
    settings = config.model.family(AutoencoderConfig) if config.task == "autoencode" else None
    times = []
    for step in range(steps + 3):
        xb = x[(step % 4) * batch:][:batch].contiguous(memory_format=layout or torch.contiguous_format)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision.startswith("bf16")):
            if settings is None:
                loss = F.cross_entropy(net(xb).float(), y[:batch])
            else:
                source = corrupt(xb, settings.noise, settings.noise_strength) if config.model.name == "dae" else xb
                out = net(source)
                loss = F.mse_loss(out["recon"].float(), xb, reduction="none").flatten(1).sum(1).mean()
                if "mu" in out:
                    loss = loss + kl_divergence(out["mu"].float(), out["logvar"].float()).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= 3:
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def image_folder(root: Path, shape: tuple[int, int, int], images: int) -> Path:
    rng = np.random.default_rng(0)
    mode = "L" if shape[0] == 1 else "RGB"
    for i in range(images):
        folder = root / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(shape[1], shape[2], shape[0]), dtype=np.uint8)
        Image.fromarray(pixels.squeeze(-1) if mode == "L" else pixels, mode).save(folder / f"{i}.png")
    return root


def adlab_loop(config, shape: tuple[int, int, int], tmp: Path) -> float:
    import adlab

    train_images = STEPS_PER_EPOCH * config.train.batch_size
    root = tmp / f"images-{'x'.join(map(str, shape))}-{train_images}"
    if not root.is_dir():
        image_folder(root, shape, int(train_images / 0.9) + 10)
    settings = config.to_dict()
    settings["data"] = {"name": "folder", "root": str(root), "image_size": shape[1], "channels": shape[0],
                        "val_fraction": 0.0, "test_fraction": 0.1}
    settings["model"]["weights"] = None  # the files are not here; a frozen net keeps its frozen layers
    settings["train"].update({"epochs": 3, "num_threads": THREADS, "progress_bar": False,
                              "early_stopping_patience": None, "scheduler": None})
    run = adlab.train(settings, out=tmp / "run", verbose=False, overwrite=True)
    rows = list(csv.DictReader(open(run.path / "history.csv")))
    images = json.loads((run.path / "env.json").read_text())["counts"]["train"]
    return images / statistics.mean(float(row["seconds"]) for row in rows[1:])


def main(keys: list[str]) -> None:
    torch.set_num_threads(THREADS)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, config, shape in networks(keys or list(STUDIES)).values():
            plain = plain_loop(config, shape)
            ours = adlab_loop(config, shape, Path(tmp))
            label = f"{name} ({config.model.name}{', frozen' if config.model.freeze else ''}, " \
                    f"{'x'.join(map(str, shape))}, batch {config.train.batch_size}, {config.train.precision})"
            rows.append({"measure": label, "value": ours / plain, "unit": f"({ours:.0f} / {plain:.0f} img/s)",
                         "goal": f">= 1/{GOAL}", "met": ours >= plain / GOAL})
            print(f"{label}: adlab {ours:.0f} img/s, plain loop {plain:.0f} img/s", flush=True)
    record("study_nets", with_saved_rows("study_nets", rows, keys))


if __name__ == "__main__":
    main([a for a in sys.argv[1:] if a in STUDIES])  # run_all.py passes "fast" to every benchmark
