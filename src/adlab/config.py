"""Configuration: YAML files validated by pydantic, with `--set dotted.key=value` overrides.

Every key has a default, so an empty file is a valid config. Unknown keys and wrong types are
errors that name the key and the valid choices.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from adlab.errors import ConfigError
from adlab.io import load_yaml_text, read_yaml_mapping
from adlab.names import name_field

# Seeds reach numpy and Lightning's seed_everything, which take 0 .. 2**32 - 1.
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


class _Section(BaseModel):
    # strict: YAML already gives numbers, booleans and lists their own types; coercing hides
    # mistakes (`epochs: true` would train one epoch). Non-finite floats are never a setting.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), strict=True,
                              allow_inf_nan=False)


class AugmentConfig(_Section):
    """Batched training-time augmentation (applied to whole batches, never per sample)."""

    enabled: bool = False
    crop_padding: int = Field(2, ge=0, description="random translation by up to this many pixels")
    flip: bool = Field(False, description="random horizontal flip (good for clothes, bad for digits)")
    cutout: int = Field(0, ge=0, description="zero a random square of this many pixels per image (0: off)")


class DataConfig(_Section):
    name: Literal["digits", "fashion_mnist", "mnist", "cifar10", "eurosat", "folder", "yolo"] = "digits"
    root: Optional[str] = None
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="for data sets without a test split")
    split_seed: Seed = Field(0, description="seed of the test/val splits (fixed across training seeds)")
    cv_folds: Optional[int] = Field(None, ge=2, description="k-fold cross-validation: val is fold cv_fold of k")
    cv_fold: int = Field(0, ge=0)
    image_size: Optional[int] = Field(None, ge=4)
    channels: Optional[Literal[1, 3]] = None
    classes: Optional[list[Union[int, str]]] = None
    train_per_class: Optional[int] = Field(None, ge=1)
    augment: AugmentConfig = AugmentConfig()
    normalize: bool = True
    download: bool = True
    on_corrupt: Literal["fail", "skip"] = Field(
        "fail", description="folder data: an unreadable image file is an error, or is skipped and counted")
    storage: Literal["auto", "memory", "disk"] = Field(
        "auto", description="folder data: decode all images into memory, or stream them from disk a batch at a "
                            "time; auto streams when the decoded images would pass memory_budget_gb")
    memory_budget_gb: float = Field(4.0, gt=0.0, description="storage auto: largest decoded data set kept in memory")

    @model_validator(mode="after")
    def _fold_in_range(self) -> "DataConfig":
        if self.cv_folds is not None and self.cv_fold >= self.cv_folds:
            raise ValueError(f"data.cv_fold: {self.cv_fold} is not a fold of {self.cv_folds} (0..{self.cv_folds - 1})")
        return self

    @field_validator("augment", mode="before")
    @classmethod
    def _augment_shorthand(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return {"enabled": value}
        if isinstance(value, dict) and "enabled" not in value:
            return {"enabled": True, **value}
        return value


AUTOENCODERS = ("ae", "vae", "dae")


class ModelConfig(_Section):
    name: str = "cnn"
    weights: Optional[str] = None
    freeze: bool = False
    load_head: bool = False
    # `cnn` and autoencoder settings (ignored by torchvision nets); null means the model's default
    conv_channels: Optional[list[int]] = Field(None, description="cnn: [32, 64, 128]; autoencoders: [32, 64]")
    convs_per_block: Union[int, list[Annotated[int, Field(ge=1)]]] = Field(
        2, description="cnn: convolutions per block, one number or one per block ([1, 2, 2])")
    activation: Literal["relu", "leaky_relu", "gelu", "silu", "elu", "tanh"] = "relu"
    batch_norm: bool = True
    conv_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    hidden: Optional[list[int]] = Field(None, description="cnn: [128]; encoder head: []")
    dropout: Optional[float] = Field(None, ge=0.0, lt=1.0, description="cnn: 0.3; autoencoders: 0.0")
    global_pool: bool = False
    pool_early: bool = Field(False, description="cnn: max-pool before each block's last batch norm and "
                             "activation (airbench); cheaper on a CPU")
    whiten: bool = Field(False, description="classify: half the first convolution's filters start as the "
                         "whitening filters of the training images' patches (airbench); not with pretrained weights")
    # autoencoders (task: autoencode) and their encoders (model.name: encoder)
    latent_dim: int = Field(10, ge=1)
    reconstruction_loss: Literal["bce", "mse"] = "bce"
    beta: float = Field(1.0, ge=0.0, description="vae: weight of the KL term")
    kl_warmup_epochs: int = Field(0, ge=0, description="vae: epochs over which beta ramps up from 0")
    noise: Literal["gaussian", "salt_pepper", "mask"] = "gaussian"
    noise_strength: float = Field(0.3, ge=0.0, le=1.0, description="dae: noise std or corrupted fraction")
    tsne_points: int = Field(3000, ge=10, description="autoencoders: test codes in the t-SNE map")

    @field_validator("convs_per_block")
    @classmethod
    def _positive_counts(cls, value: Any) -> Any:
        if (value if isinstance(value, int) else min(value, default=0)) < 1:
            raise ValueError("needs at least one convolution per block")
        return value

    def setting(self, key: str, default):
        """A model setting, or the model's own default where the config leaves it null."""
        value = getattr(self, key)
        return default if value is None else value


class SchedulerConfig(_Section):
    name: Literal["step", "cosine", "onecycle"]
    step_size: int = Field(5, ge=1, description="step: epochs between decays")
    gamma: float = Field(0.1, gt=0.0, description="step: decay factor")
    min_lr: float = Field(0.0, ge=0.0, description="cosine: final learning rate")
    pct_start: float = Field(0.25, gt=0.0, lt=1.0, description="onecycle: warm-up fraction")


class TrainConfig(_Section):
    epochs: int = Field(10, ge=1, le=100_000)
    batch_size: int = Field(128, ge=1, le=2**20)
    optimizer: Literal["adam", "adamw", "sgd", "muon"] = Field(
        "adam", description="muon: Muon for the filters and weight matrices between the input and output layers "
        "(at muon_lr, no weight decay), SGD with Nesterov momentum for the rest (at lr); detect: ultralytics' "
        "MuSGD, which sets its own Muon rate and momentum")
    lr: float = Field(1e-3, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    muon_lr: float = Field(0.05, gt=0.0, description="optimizer muon: learning rate of the Muon layers (not detect)")
    muon_momentum: float = Field(0.6, ge=0.0, lt=1.0,
                                 description="optimizer muon: Nesterov momentum of the Muon layers (not detect)")
    weight_decay: float = Field(0.0, ge=0.0)
    backbone_lr_scale: float = Field(1.0, gt=0.0, description="learning rate of all but the head, relative to lr")
    scheduler: Optional[SchedulerConfig] = None
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    tta_flip: bool = Field(False, description="test predictions averaged over each image and its mirror image")
    tta_shift: int = Field(0, ge=0, le=4, description="test predictions also averaged over copies moved this many "
                           "pixels diagonally (pays after training with crop_padding)")
    early_stopping_patience: Optional[int] = Field(None, ge=1)
    monitor: Literal["val_loss", "val_accuracy", "val_mse"] = "val_loss"
    seed: Seed = 0
    deterministic: bool = True
    precision: str = "32-true"
    accelerator: str = "auto"
    devices: Union[int, str] = 1
    strategy: str = "auto"
    num_nodes: int = Field(1, ge=1, description="machines taking part in DDP (torchrun or SLURM)")
    num_threads: Optional[int] = Field(None, ge=1, le=1024)
    channels_last: bool = Field(True, description="NHWC memory layout: faster convolutions on CPUs")
    progress_bar: bool = True

    @field_validator("scheduler", mode="before")
    @classmethod
    def _scheduler_shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class Config(_Section):
    task: Literal["classify", "autoencode", "detect"] = "classify"
    name: Optional[str] = None
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _model_fits_task(self) -> "Config":
        if self.task == "autoencode" and self.model.name not in AUTOENCODERS:
            raise ValueError(f"model.name: task autoencode takes ae, vae or dae, not {self.model.name!r}")
        if self.task == "detect":
            if self.data.name != "yolo":
                raise ValueError("data.name: task detect reads a YOLO data set (data.name: yolo, data.root: data.yaml)")
            if self.model.name in (*AUTOENCODERS, "cnn", "encoder"):
                raise ValueError(f"model.name: task detect takes an ultralytics model (yolov8n, yolo11n, yolov5nu, "
                                 f"...), not {self.model.name!r}")
        elif self.data.name == "yolo":
            raise ValueError("data.name: yolo data sets are for task detect")
        if self.model.whiten and (self.task != "classify" or self.model.weights):
            raise ValueError("model.whiten: initialises the first convolution of a classifier trained from scratch "
                             "(task classify, no model.weights)")
        if self.task == "classify" and self.model.name in AUTOENCODERS:
            raise ValueError(f"model.name: {self.model.name!r} is an autoencoder; use task: autoencode "
                             "(or model.name: encoder to classify with its encoder)")
        return self

    _safe_name = field_validator("name")(name_field)  # the run folder is named after it

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")

# Shorthands: a scalar standing for a section (`scheduler: step`, `augment: true`).
_SHORTHAND_KEY = {("train", "scheduler"): "name", ("data", "augment"): "enabled"}


def load_config(source: Union[str, Path, dict, None] = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML file (or take a dict), apply `key=value` overrides, validate."""
    origin = "config"
    if source is None:
        raw: Any = {}
    elif isinstance(source, dict):
        raw = copy.deepcopy(source)
    else:
        origin = str(source)
        raw = read_yaml_mapping(source)
    for item in overrides or []:
        key, value = parse_override(item)
        set_dotted(raw, key, value)
    return validate_config(raw, origin)


def validate_config(raw: dict, origin: str = "config") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {describe_validation_error(exc)}") from None


def parse_override(item: str) -> tuple[str, Any]:
    """`train.lr=0.01` -> ("train.lr", 0.01); values are parsed as YAML (numbers, lists, null)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected dotted.key=value")
    try:
        value = load_yaml_text(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads '1e-3' as a string
    return key, value


def set_dotted(raw: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None or not isinstance(child, dict):
            short = _SHORTHAND_KEY.get(tuple(parts[: depth + 1]))
            if child is not None and short is None:
                raise ConfigError(f"--set {key}: '{'.'.join(parts[:depth + 1])}' is not a section")
            child = {} if child is None else {short: child}
            node[part] = child
        node = child
    node[parts[-1]] = value


def describe_validation_error(exc: ValidationError) -> str:
    """One line for the first problem: the dotted key, what is wrong, and the valid choices."""
    err = exc.errors()[0]
    if err["type"] == "value_error" and not err["loc"]:  # a cross-field check: its message names the key
        return str(err["msg"]).removeprefix("Value error, ")
    model, path = Config, []
    for part in err["loc"]:
        if not isinstance(part, str):
            path.append(str(part))
            continue
        fields = _fields(model)
        if fields is None or part not in fields:
            if err["type"] == "extra_forbidden" and fields is not None:
                path.append(part)
                break
            continue  # a union branch tag such as 'bool' or 'SchedulerConfig'
        path.append(part)
        model = _section_type(fields[part].annotation)
    key = ".".join(path) or "config"
    if err["type"] == "extra_forbidden":
        parent_fields = _fields(model) or {}
        return f"unknown key '{key}' (valid keys here: {', '.join(parent_fields)})"
    got = err.get("input")
    got_repr = repr(got)
    got_text = "" if isinstance(got, (dict, list)) or err["type"] == "value_error" else f" (got {got_repr[:60]}{'...' if len(got_repr) > 60 else ''})"
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{key}: {message[0].lower()}{message[1:]}{got_text}"


def _fields(model: Any) -> dict | None:
    return getattr(model, "model_fields", None)


def _section_type(annotation: Any) -> Any:
    """The pydantic section class inside an annotation like Optional[SchedulerConfig]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is not None:
        for arg in get_args(annotation):
            found = _section_type(arg)
            if found is not None:
                return found
    return None
