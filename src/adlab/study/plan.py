"""`adlab study FILE --plan`: what a study would do, before it does anything.

Its runs; each data set and weights file with its state (present, made by the study, will
download, missing) and size; and an estimate of the training time, from one timed training step of
each distinct network on this machine. Nothing is written and nothing is downloaded.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from adlab.formatting import clock, plural
from adlab.taskspec import TASKS

# Size of the files torchvision downloads, and the images each split holds (public figures).
DOWNLOADS = {
    "mnist": ("the four MNIST IDX files", 11.6),
    "fashion_mnist": ("the four Fashion-MNIST IDX files", 30.9),
    "cifar10": ("cifar-10-python.tar.gz", 170.5),
    "eurosat": ("EuroSAT.zip (RGB)", 94.3),
}
TRAIN_IMAGES = {"digits": 1797, "mnist": 60000, "fashion_mnist": 60000, "cifar10": 50000, "eurosat": 27000}
SHAPES = {
    "digits": (1, 8, 8),
    "mnist": (1, 28, 28),
    "fashion_mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "eurosat": (3, 64, 64),
}
WITH_TEST_SPLIT = ("mnist", "fashion_mnist", "cifar10")


def plan_lines(study, out: Path, timing: bool = True) -> list[str]:
    runs = study.runs
    state = "continues the study there (--resume)" if (out / "study.yaml").is_file() else "new"
    fusions = f" and {plural(len(study.spec.fusion), 'fusion step')}" if study.spec.fusion else ""
    lines = [f"study {study.name}: {plural(len(runs), 'run')}{fusions}; study folder {out} ({state})"]
    from adlab.study.prepare import path_resolver

    paths = path_resolver(study.path, out)
    for tool, step in study.prepare:
        target = paths(step.out)
        lines.append(f"prepare: {tool} -> {target} ({'present' if target.exists() else 'to make'})")
    lines.append("data:")
    for text in dict.fromkeys(data_state(r.config) for r in runs):
        lines.append(f"  {text}")
    weights = [text for text in dict.fromkeys(weights_state(r.config) for r in runs) if text]
    if weights:
        lines.append("weights:")
        lines += [f"  {text}" for text in weights]
    lines.append("runs:")
    total, unknown = 0.0, 0
    cache: dict[tuple, float | None] = {}
    for i, run in enumerate(runs, start=1):
        config = run.config
        images = train_images(config)
        seconds = estimate_seconds(config, images, cache) if timing else None
        if seconds is None:
            unknown += 1
        else:
            total += seconds
        start = config.model.weights or "scratch"
        lines.append(
            f"  [{i}/{len(runs)}] {run.name}: {config.task} {config.model.name} ({start}), "
            f"{config.train.epochs} epoch{'s' * (config.train.epochs != 1)}, batch {config.train.batch_size}"
            + (f", about {images:,} training images" if images else "")
            + (f", about {clock(seconds)}" if seconds is not None else "")
        )
    if timing:
        lines.append(
            f"time: about {clock(total)} of training steps (one step of each network timed on this machine's "
            f"{'GPU' if _gpu() else 'CPU'}; "
            "evaluation, data loading and figures add to it)"
            + (
                f"; {plural(unknown, 'run')} not estimated (no step timing for its task, or data not here)"
                if unknown
                else ""
            )
        )
    lines.append("nothing was written or downloaded (--plan)")
    return lines


def _gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def data_state(config) -> str:
    from adlab.data.sources import DEBIAN_FASHION_MNIST, default_root

    data = config.data
    name = data.name
    root = Path(data.root) if data.root and "{out}" not in data.root else None
    if data.root and "{out}" in data.root:
        return f"{name} {data.root}: made by this study"
    if name == "digits":
        return "digits: bundled with scikit-learn"
    if name in ("folder", "yolo"):
        if root is None or not root.exists():
            return f"{name} {root}: MISSING"
        files, size = _count(root if root.is_dir() else root.parent)
        return f"{name} {root}: present ({files:,} files, {size / 2**20:,.1f} MB)"
    base = root or default_root()
    found = _builtin_files(name, base, DEBIAN_FASHION_MNIST)
    if found:
        return f"{name}: present in {found}"
    what, mb = DOWNLOADS[name]
    if not data.download:
        return f"{name}: MISSING in {base} (data.download is false)"
    return f"{name}: will download {what} ({mb:,.1f} MB) to {base}"


def _builtin_files(name: str, base: Path, debian: Path) -> Path | None:
    from adlab.data.idx import find_idx

    if name in ("mnist", "fashion_mnist"):
        kind = "MNIST" if name == "mnist" else "FashionMNIST"
        folders = [base, base / kind / "raw"] + ([debian] if name == "fashion_mnist" else [])
        folders.append(Path(os.environ.get("ADLAB_DATA", "")) / kind / "raw")
        return next((f for f in folders if find_idx(f, "train-images-idx3-ubyte")), None)
    if name == "cifar10":
        folder = base / "cifar-10-batches-py"
        return folder if (folder / "data_batch_1").is_file() else None
    if name == "eurosat":
        folder = base / "eurosat" / "2750"
        return folder if folder.is_dir() else None
    return None


def weights_state(config) -> str:
    weights = config.model.weights
    if not weights:
        return ""
    if "{out}" in weights:
        return f"{weights}: made by this study"
    if weights in ("imagenet", "coco_voc"):
        return _library_state(config.model.name, weights)
    path = Path(weights)
    if path.exists():
        files, size = _count(path) if path.is_dir() else (1, path.stat().st_size)
        return f"{weights}: present ({size / 2**20:,.1f} MB)"
    named = TASKS[config.task].named_weights
    if named and len(path.parts) == 1:
        return f"{weights}: {named}"
    return f"{weights}: MISSING"


def _library_state(name: str, regime: str) -> str:
    """Where the library weights `model.weights: imagenet` (or coco_voc) would be read from: cached or to be
    downloaded (timm's from the Hugging Face cache; torchvision's from torch.hub's)."""
    import torch
    import torchvision

    from adlab.models.segmentation import SEGMENTATION_NETS, library_weights
    from adlab.models.timm_zoo import is_timm_name, weights_location

    if is_timm_name(name):
        try:
            cached, where, url = weights_location(name)
        except Exception as exc:  # an unknown name or tag: the run itself says it in one line
            return f"{regime} for {name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        if cached is not None:
            return f"{regime} for {name}: present at {cached} ({cached.stat().st_size / 2**20:,.1f} MB)"
        return f"{regime} for {name}: will download from {url} to {where}"
    try:
        weights = (
            library_weights(name, regime)
            if name in SEGMENTATION_NETS
            else torchvision.models.get_model_weights(name).DEFAULT
        )
    except (ValueError, KeyError, AttributeError):
        return f"{regime} for {name}: torchvision has no such weights for it"
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if cached.is_file():
        return f"{regime} for {name}: present at {cached} ({cached.stat().st_size / 2**20:,.1f} MB)"
    mb = weights.meta.get("file_size")
    return f"{regime} for {name}: will download {weights.url}" + (f" ({mb:,.1f} MB)" if mb else "") + f" to {cached}"


def _count(folder: Path) -> tuple[int, int]:
    files = size = 0
    for base, _, names in os.walk(folder):
        for name in names:
            files += 1
            try:
                size += os.stat(os.path.join(base, name)).st_size
            except OSError:
                pass
    return files, size


def train_images(config) -> int | None:
    """About how many images one epoch trains on (after the test and validation splits and caps)."""
    data = config.data
    total = TRAIN_IMAGES.get(data.name)
    classes = 10
    if total is None:
        return None
    if data.name not in WITH_TEST_SPLIT:
        total = total * (1 - data.test_fraction)
    total *= 1 - data.val_fraction
    if data.classes:
        total *= len(data.classes) / classes
        classes = len(data.classes)
    if data.train_per_class:
        total = min(total, data.train_per_class * classes)
    return int(total)


def estimate_seconds(config, images: int | None, cache: dict) -> float | None:
    """Epochs x steps x the seconds of one training step of this network, timed here."""
    if images is None or config.data.name not in SHAPES:
        return None
    shape = SHAPES[config.data.name]
    if config.data.image_size:
        shape = (shape[0], config.data.image_size, config.data.image_size)
    if config.model.weights == "imagenet" or config.data.channels:
        shape = (config.data.channels or 3, *shape[1:])
    batch = min(config.train.batch_size, images)
    key = (config.task, config.model.model_dump_json(exclude={"weights", "freeze", "load_head"}), shape, batch)
    if key not in cache:
        cache[key] = _time_step(config, shape, batch)
    steps = math.ceil(images / config.train.batch_size)
    return None if cache[key] is None else cache[key] * steps * config.train.epochs


def planned_seconds(runs: list) -> list[float | None]:
    """Each run's estimated training time (the plan's; None where it cannot be estimated, or for a None), for the
    time left."""
    cache: dict = {}
    return [
        estimate_seconds(run.config, train_images(run.config), cache) if run and run.config else None for run in runs
    ]


def seconds_left(done: list[tuple[float | None, float]], todo: list[float | None]) -> float:
    """The time the runs still to make will take: their planned cost scaled by how the finished runs' measured
    time compared with theirs (the plan times training steps only; evaluation and figures come on top). A run
    with no plan counts as the finished runs' mean. `done`: (planned, measured) per finished run."""
    if not done:
        return sum(p for p in todo if p is not None)
    planned = [(p, measured) for p, measured in done if p]
    scale = sum(m for _, m in planned) / sum(p for p, _ in planned) if planned else None
    mean = sum(measured for _, measured in done) / len(done)
    return sum(p * scale if p is not None and scale is not None else mean for p in todo)


def _time_step(config, shape: tuple[int, int, int], batch: int) -> float | None:
    import torch

    from adlab.models.layout import channels_last_pays
    from adlab.tasks import get_task

    model = config.model.model_copy(update={"weights": None, "freeze": False})
    try:
        net = get_task(config.task).timing_network(config.model_copy(update={"model": model}), shape)
    except Exception:  # an estimate, never a reason to stop: the run itself reports a bad model
        return None
    if net is None:
        return None
    device = "cuda" if torch.cuda.is_available() else "cpu"  # where the runs will train
    # in the run's precision and memory layout: bf16 with channels-last is twice fp32's speed on a CPU
    precision = str(config.train.precision)
    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16 if precision.startswith("16") else None
    pays = channels_last_pays(net, config.train.channels_last, precision)
    layout = torch.channels_last if pays else torch.contiguous_format
    net.train().to(device, memory_format=layout)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.rand(batch, *shape, device=device).contiguous(memory_format=layout)
    timings = []
    for _ in range(3):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
            output = net(x)  # logits; an autoencoder's {"recon": ..., "z": ...}; a VAE encoder's tuple
        if isinstance(output, dict):
            output = output.get("recon", next(iter(output.values())))
        output = output[0] if isinstance(output, (tuple, list)) else output
        output.float().mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - start)
    return min(timings[1:])
