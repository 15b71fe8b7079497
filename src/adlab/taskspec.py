"""What each task accepts, declared once: the task registry.

A task is a package under adlab.tasks (its training, evaluation and outputs) plus one entry here: the
data sets it reads, the model kinds it builds, the settings only it reads, the validation metrics it can
monitor. Everything that refuses a setting for a task is derived from these entries (`check`), so a new
task adds one entry and no refusal to the others. This module sits below the config schema, which
validates every run against it, and imports nothing of the tasks themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from adlab.settings.autoencoder import AutoencoderConfig
from adlab.settings.base import Family
from adlab.settings.cnn import CnnConfig
from adlab.settings.unet import UnetConfig

# The kinds of model a task can build, by model.name: adlab's own networks by their names, and any other
# name a library's model (torchvision's classifiers for classify, ultralytics' detectors for detect).
AUTOENCODER_NAMES = ("ae", "vae", "dae")
MODEL_KINDS = {
    "cnn": "cnn",
    "encoder": "encoder",
    "unet": "unet",
    **{name: "autoencoder" for name in AUTOENCODER_NAMES},
}
LIBRARY = "library"  # a name not in MODEL_KINDS

IMAGE_SETS = ("digits", "fashion_mnist", "mnist", "cifar10", "eurosat", "folder")  # classification data sets
MASK_SETS = ("masks", "kitti_semantic", "oxford_pet")  # images with a class id per pixel (adlab.data.masks)
DATA_SETS = (*IMAGE_SETS, "yolo", *MASK_SETS)


@dataclass(frozen=True)
class TaskSpec:
    """One task's declaration."""

    name: str
    package: str  # the module holding its TASK
    summary: str  # what it does, in the config reference
    data: tuple[str, ...]  # data.name values it reads
    models: dict[str, str]  # model kinds it builds -> how the reference names them
    monitors: dict[str, str]  # train.monitor choices -> "min" | "max"
    # settings only some tasks read: dotted key -> the value that means "off" (set otherwise, it is
    # refused for the tasks that do not list it)
    own_settings: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, tuple[Any, str]] = field(default_factory=dict)  # key -> (the only value it takes, why)
    named_weights: str = ""  # what a bare model.weights file name means (a checkpoint the engine downloads)
    fusion_methods: tuple[str, ...] = ()  # late fusion of its runs (a study's `fusion` steps, `adlab fuse`)
    families: tuple[type[Family], ...] = ()  # the model.<family> sections its adlab networks read (adlab.settings)


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            "classify",
            "adlab.tasks.classify",
            "classify images",
            IMAGE_SETS,
            {
                "cnn": "cnn",
                "encoder": "encoder",
                LIBRARY: "a torchvision classifier (resnet18, ...) or timm/<name>",
            },
            {"val_loss": "min", "val_accuracy": "max"},
            own_settings={
                "train.mix": "none",
                "model.whiten": False,
                "data.classes": None,
                "data.train_per_class": None,
                "data.class_map": None,
            },
            fusion_methods=("mean_prob", "sum_logits", "vote"),
            families=(CnnConfig, AutoencoderConfig),
        ),
        TaskSpec(
            "autoencode",
            "adlab.tasks.autoencode",
            "train an autoencoder",
            IMAGE_SETS,
            {"autoencoder": "ae, vae or dae"},
            {"val_loss": "min", "val_mse": "min"},
            own_settings={"data.classes": None, "data.train_per_class": None, "data.class_map": None},
            families=(AutoencoderConfig,),
        ),
        TaskSpec(
            "detect",
            "adlab.tasks.detect",
            "detect objects",
            ("yolo",),
            {LIBRARY: "an ultralytics model (yolov8n, yolo11n, yolov5nu, ...)"},
            {"val_loss": "min"},
            fixed={"train.test_checkpoint": ("best", "it is scored with ultralytics' best.pt")},
            named_weights="an ultralytics checkpoint, downloaded on first use if not cached",
        ),
        TaskSpec(
            "segment",
            "adlab.tasks.segment",
            "label every pixel (semantic segmentation)",
            MASK_SETS,
            {
                "unet": "unet",
                LIBRARY: "a torchvision segmentation net (lraspp_mobilenet_v3_large, deeplabv3_mobilenet_v3_large, "
                "fcn_resnet50)",
            },
            {"val_loss": "min", "val_mean_iou": "max"},
            families=(UnetConfig,),
        ),
    )
}


DEFAULT_TASK = "classify"  # a config without `task`
MONITORS = tuple(dict.fromkeys(name for spec in TASKS.values() for name in spec.monitors))


def monitor_owners() -> dict[str, list[str]]:
    """Each validation metric that only some tasks measure -> those tasks."""
    owners = {name: [s.name for s in TASKS.values() if name in s.monitors] for name in MONITORS}
    return {name: tasks for name, tasks in owners.items() if len(tasks) < len(TASKS)}


FUSED = "fuse"  # the task a fused run's config.yaml records


def fusing_task() -> TaskSpec:
    """The task whose runs late fusion combines (a fused run is reported and scored as one of its runs)."""
    return next(spec for spec in TASKS.values() if spec.fusion_methods)


def recorded_task(name: object) -> object:
    """The task a run folder's config.yaml names, a fused run's being its members' task."""
    return fusing_task().name if name == FUSED else name


def either(names) -> str:
    """'a, b or c'."""
    names = list(names)
    return " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def model_kind(name: str) -> str:
    return MODEL_KINDS.get(name, LIBRARY)


def _get(config: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def _yaml(value: Any) -> str:
    """A default as a config file writes it (null, false, 'none')."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else repr(value)


def _takers(verb: str, value: str, kinds: dict[str, tuple[str, ...]]) -> str:
    takers = [name for name, accepted in kinds.items() if value in accepted]
    return f"; task {' or '.join(takers)} {verb} it" if takers else ""


def check(config: Any) -> None:
    """Every rule the task's declaration implies, as a ValueError naming the key (the config schema turns
    it into one line). `config`: a validated Config."""
    spec = TASKS[config.task]
    if config.data.name not in spec.data:
        readers = {name: s.data for name, s in TASKS.items()}
        raise ValueError(
            f"data.name: task {spec.name} reads {', '.join(spec.data)}, not {config.data.name!r}"
            + _takers("reads", config.data.name, readers)
        )
    kind = model_kind(config.model.name)
    if kind not in spec.models:
        builders = {name: tuple(s.models) for name, s in TASKS.items()}
        raise ValueError(
            f"model.name: task {spec.name} takes {either(spec.models.values())}, not "
            f"{config.model.name!r}" + _takers("takes", kind, builders)
        )
    if config.train.monitor not in spec.monitors:
        raise ValueError(
            f"train.monitor: {config.train.monitor!r} is not measured by task {spec.name} "
            f"(valid: {', '.join(spec.monitors)})"
        )
    for key in sorted({k for s in TASKS.values() for k in s.own_settings} - set(spec.own_settings)):
        off = next(s.own_settings[key] for s in TASKS.values() if key in s.own_settings)
        if _get(config, key) != off:
            owners = [name for name, s in TASKS.items() if key in s.own_settings]
            raise ValueError(
                f"{key}: read by task {' or '.join(owners)} only, not by task {spec.name} (leave it {_yaml(off)})"
            )
    for key, (value, why) in spec.fixed.items():
        if _get(config, key) != value:
            raise ValueError(f"{key}: task {spec.name} takes only {value!r} ({why})")


def monitor_mode(task: str, monitor: str) -> str:
    """'min' or 'max': which way the monitored metric improves."""
    return TASKS[task].monitors[monitor]
