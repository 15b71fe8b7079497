"""`adlab study FILE --plan`: what a study would do, before it does anything.

Its runs; each data set and weights file with its state (present, made by the study, will
download, missing) and size; and an estimate of the training time, from one timed training step of
each distinct network on this machine. Nothing is written and nothing is downloaded.
"""

from __future__ import annotations

import functools
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
TEST_IMAGES = {"mnist": 10000, "fashion_mnist": 10000, "cifar10": 10000}  # their own test sets
SHAPES = {
    "digits": (1, 8, 8),
    "mnist": (1, 28, 28),
    "fashion_mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "eurosat": (3, 64, 64),
}


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
        counts = split_images(config)
        images = counts["train"] if counts else None
        seconds = estimate_seconds(config, counts, cache) if timing else None
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
            f"time: about {clock(total)} of reading the data, training, validation and test passes, checkpoints, "
            f"figures and latent maps (timed on this machine's {'GPU' if _gpu() else 'CPU'}: one training step and "
            "one evaluation batch of each network, the data read, a checkpoint written, a figure and a t-SNE map; "
            "start-up adds a few seconds a run, early stopping can end a run sooner)"
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


def split_images(config) -> dict[str, int] | None:
    """About how many images each split holds (train after the test and validation splits and caps): the
    built-in sets' public sizes, a folder's images counted; None where the data is not here yet."""
    data = config.data
    classes = 10
    own_test = TEST_IMAGES.get(data.name)
    total: float
    if data.name in TRAIN_IMAGES:
        total = TRAIN_IMAGES[data.name]
    elif data.name == "yolo" and data.root and "{out}" not in data.root:
        return _yolo_images(Path(data.root))
    elif data.name == "folder" and data.root and "{out}" not in data.root and Path(data.root).is_dir():
        found = _folder_images(Path(data.root))
        if found is None:
            return None
        total, classes, own_test = found
    else:
        return None
    test: float = own_test if own_test is not None else total * data.test_fraction
    if own_test is None:
        total -= test
    if data.classes:
        share = len(data.classes) / classes
        total, test, classes = total * share, test * share, len(data.classes)
    val = total * (data.val_fraction if not data.cv_folds else 1 / data.cv_folds)
    train = total - val
    if data.train_per_class:
        train = min(train, data.train_per_class * classes)
    return {"train": int(train), "val": int(val), "test": int(test)}


def train_images(config) -> int | None:
    """About how many images one epoch trains on."""
    counts = split_images(config)
    return counts["train"] if counts else None


def _yolo_images(data_yaml: Path) -> dict[str, int] | None:
    """The images of a YOLO data set's train and val splits (detection scores its val split: no test)."""
    from adlab.detection.yolo_format import read_data_yaml
    from adlab.errors import AdlabError

    try:
        ds = read_data_yaml(data_yaml)
        counts = {split: len(ds.images(split)) for split in ("train", "val") if split in ds.splits}
    except (AdlabError, OSError):  # the run itself says what is wrong with it
        return None
    return {"train": counts.get("train", 0), "val": counts.get("val", 0), "test": 0}


def _folder_images(root: Path) -> tuple[int, int, int | None] | None:
    """(images, classes, test images or None) of an image folder: class folders, or train/ and test/ (or val/)
    of them."""
    from adlab.data.folder import index_folder
    from adlab.data.sources import held_out_folder
    from adlab.errors import AdlabError

    try:
        held_out = held_out_folder(root)
        if held_out is not None:
            names, train = index_folder(root / "train")
            return len(train), len(names), len(index_folder(held_out, names, allow_empty=True)[1])
        names, samples = index_folder(root)
    except (AdlabError, OSError):  # the run itself says what is wrong with it
        return None
    return len(samples), len(names), None


def input_shape(config) -> tuple[int, int, int] | None:
    data = config.data
    if data.name in SHAPES:
        shape = SHAPES[data.name]
    elif data.name == "folder" and data.image_size:
        shape = (3, data.image_size, data.image_size)
    elif data.name == "yolo":
        side = data.image_size or 640  # ultralytics trains on square mosaics of imgsz
        return (3, side, side)
    else:
        return None
    if data.image_size:
        shape = (shape[0], data.image_size, data.image_size)
    if config.model.weights == "imagenet" or data.channels:
        shape = (data.channels or 3, *shape[1:])
    return shape


def estimate_seconds(config, counts: dict[str, int] | None, cache: dict) -> float | None:
    """The run's training steps, its validation passes and its final evaluation's passes over the network,
    from one training step and one evaluation batch of this network timed here (early stopping can end sooner),
    the checkpoints it writes each epoch, its figures and latent maps (Task.outputs_seconds), and reading its
    data."""
    shape = input_shape(config)
    if counts is None or shape is None:
        return None
    batch = min(config.train.batch_size, counts["train"])
    key = (
        config.task,
        config.model.model_dump_json(exclude={"weights", "load_head"}),
        shape,
        batch,
        config.train.precision,
        config.train.channels_last,
    )
    if key not in cache:
        cache[key] = _time_step(config, shape, batch)
    if cache[key] is None:
        return None
    from adlab.tasks import get_task

    step, per_image, checkpoints = cache[key]
    steps = math.ceil(counts["train"] / batch)
    task = get_task(config.task)
    passes = (
        config.train.epochs * (steps * step + counts["val"] * per_image + checkpoints)
        + task.evaluation_images(config, counts) * per_image
    )
    return passes + task.outputs_seconds(config, counts) + data_seconds(config, cache)


LOADED_BY_ADLAB = ("digits", "mnist", "fashion_mnist", "cifar10", "eurosat", "folder")  # into memory, each run
SAMPLED_FILES = 64  # an image folder's loading is timed on this many of its files and scaled


def data_seconds(config, cache: dict) -> float:
    """Seconds a run spends reading its data into memory before its first step (every run reads it again):
    timed here where the data is present (0 where it is not, or where the task's library reads it)."""
    data = config.data
    if data.name not in LOADED_BY_ADLAB or (data.root and "{out}" in data.root):
        return 0.0
    key = ("data", data.name, data.root, data.image_size, data.verify)
    if key not in cache:
        cache[key] = _time_loading(data)
    return cache[key]


def _time_loading(data) -> float:
    """A built-in set's files read as a run reads them; an image folder's files decoded, SAMPLED_FILES of them
    spread over the folder, scaled to all of them (27,000 EuroSAT JPEGs would take a while to plan)."""
    from adlab.data.folder import decode_images, index_folder
    from adlab.data.sources import default_root, held_out_folder, load_source
    from adlab.errors import AdlabError

    try:
        if data.name not in ("folder", "eurosat"):
            start = time.perf_counter()
            load_source(data.name, data.root, download=False, verify=data.verify)
            return time.perf_counter() - start
        root = Path(data.root) if data.name == "folder" else Path(data.root or default_root()) / "eurosat" / "2750"
        held_out = held_out_folder(root)
        trees = [root / "train", held_out] if held_out is not None else [root]
        paths = [path for tree in trees for path, _ in index_folder(tree, allow_empty=True)[1]]
        if not paths:
            return 0.0
        sample = paths[:: max(1, len(paths) // SAMPLED_FILES)][:SAMPLED_FILES]
        decode = functools.partial(decode_images, sample, data.image_size, on_corrupt="skip")
        return _best_of(decode, "cpu", 2) * len(paths) / len(sample)  # the first pass loads Pillow's plugins
    except (AdlabError, OSError):  # not here (the run downloads it, or says what is wrong)
        return 0.0


def planned_seconds(runs: list) -> list[float | None]:
    """Each run's estimated time (the plan's; None where it cannot be estimated, or for a None), for the time
    left."""
    cache: dict = {}
    return [
        estimate_seconds(run.config, split_images(run.config), cache) if run and run.config else None for run in runs
    ]


def seconds_left(done: list[tuple[float | None, float]], todo: list[float | None]) -> float:
    """The time the runs still to make will take: their planned cost scaled by how the finished runs' measured
    time compared with theirs (the plan leaves out each run's start-up, and this machine may be busier than
    when it timed). A run with no plan counts as the finished runs' mean. `done`: (planned, measured) per
    finished run."""
    if not done:
        return sum(p for p in todo if p is not None)
    planned = [(p, measured) for p, measured in done if p]
    scale = sum(m for _, m in planned) / sum(p for p, _ in planned) if planned else None
    mean = sum(measured for _, measured in done) / len(done)
    return sum(p * scale if p is not None and scale is not None else mean for p in todo)


def _time_step(config, shape: tuple[int, int, int], batch: int) -> tuple[float, float, float] | None:
    """(seconds of one training step, seconds per image of an evaluation pass, seconds of an epoch's
    checkpoints) of the run's network, timed on random inputs of `shape`; None where the network cannot be
    built here."""
    import torch

    from adlab.models.layout import channels_last_pays
    from adlab.tasks import get_task
    from adlab.tasks.lightning import flush_denormals

    flush_denormals()  # as the runs will train, and before torch starts the threads they will train on
    model = config.model.model_copy(update={"weights": None})  # a frozen net keeps its frozen layers' cost
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
    trained = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trained, lr=1e-3) if trained else None
    x = torch.rand(batch, *shape, device=device).contiguous(memory_format=layout)

    def forward():
        with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
            output = net(x)  # logits; an autoencoder's {"recon": ..., "z": ...}; a VAE encoder's tuple
        if isinstance(output, dict):
            output = output.get("recon", next(iter(output.values())))
        return output[0] if isinstance(output, (tuple, list)) else output

    def train_step():
        output = forward()
        if output.requires_grad:
            output.float().mean().backward()
        if optimizer is not None:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    def eval_pass():
        with torch.no_grad():
            forward()

    train = _best_of(train_step, device, 3)
    net.eval()
    evaluation = _best_of(eval_pass, device, 2)
    net.train()
    return train, evaluation / batch, get_task(config.task).checkpoint_seconds(config, net)


def _best_of(step, device: str, times: int) -> float:
    """The fastest of `times` calls after one of warm-up."""
    import torch

    timings = []
    for _ in range(times + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - start)
    return min(timings[1:])
