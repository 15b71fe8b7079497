"""Configuration: YAML files validated by pydantic, with `--set dotted.key=value` overrides.

Every key has a default, so an empty file is a valid config. Unknown keys and wrong types are
errors that name the key and the valid choices.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model, field_validator, model_validator

from adlab import io, taskspec
from adlab.errors import ConfigError
from adlab.io import load_yaml_text, read_yaml_mapping
from adlab.names import name_field
from adlab.settings.base import Family, Section

# Seeds reach numpy and Lightning's seed_everything, which take 0 .. 2**32 - 1.
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


class AugmentConfig(Section):
    """Batched training-time augmentation (applied to whole batches, never per sample). `data.augment: true`
    turns it on with these defaults; a mapping without `enabled` turns it on too."""

    enabled: bool = Field(False, description="augment the training batches (val and test images never are)")
    crop_padding: int = Field(2, ge=0, description="random crop: translate by up to this many pixels (padded)")
    flip: bool = Field(False, description="random horizontal flip (good for clothes, bad for digits)")
    cutout: int = Field(0, ge=0, description="zero a random square of this many pixels per image (0: off)")


class DataConfig(Section):
    """The data set, its splits and how its images are fed to the model."""

    name: Literal[taskspec.DATA_SETS] = Field(  # type: ignore[valid-type]  # the choices: the task registry's
        "digits",
        description="the data set (docs/data.md describes each); yolo: a YOLO detection data set, for task detect only",
    )
    root: str | None = Field(
        None,
        description="data folder; folder: class subfolders, or train/ and test/ (or val/) trees; "
        "yolo: the data.yaml file",
    )
    val_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="validation share carved from the training split, stratified and seeded"
    )
    test_fraction: float = Field(
        0.2,
        gt=0.0,
        lt=1.0,
        description="test share for data sets without a test split (digits, eurosat, a single folder tree)",
    )
    split_seed: Seed = Field(
        0, description="seed of the test/val splits, independent of train.seed (the same split across training seeds)"
    )
    cv_folds: int | None = Field(
        None,
        ge=2,
        description="k-fold cross-validation: val is fold cv_fold of the "
        "k folds of the training split (null: a single val_fraction split)",
    )
    cv_fold: int = Field(0, ge=0, description="cv_folds: which fold (0 .. cv_folds - 1) is the validation set")
    image_size: int | None = Field(
        None,
        ge=4,
        le=4096,
        description="resize to this square size in pixels (null: the "
        "data's own; detect: ultralytics imgsz, default 640)",
    )
    channels: Literal[1, 3] | None = Field(
        None, description="1 (grey) or 3 (RGB); null: the data's own (3 for ImageNet weights)"
    )
    classes: list[int | str] | None = Field(
        None, description="keep only these classes (names or ids), relabelled 0..k-1 in this order (null: all)"
    )
    class_map: dict[str, str] | None = Field(
        None,
        description="folder data: a folder's name -> the class it holds, for a class name that cannot be a folder "
        "(Fashion-MNIST's T-shirt/top: {T-shirt_top: T-shirt/top}); evaluate matches classes by these names",
    )
    train_per_class: int | None = Field(
        None,
        ge=1,
        description="cap on training images per class (few-shot transfer studies); val is carved first (null: no cap)",
    )
    augment: AugmentConfig = Field(
        AugmentConfig(), description="training augmentation: true, false, or a mapping of the data.augment keys below"
    )
    normalize: bool = Field(
        True, description="per-channel mean/std of the training split (or those imposed by pretrained weights)"
    )
    download: bool = Field(
        True, description="let torchvision download mnist, fashion_mnist, cifar10 or eurosat when the files are missing"
    )
    verify: bool = Field(
        True,
        description="cifar10: check each file against the original's MD5; false reads a "
        "faithful copy as it is (the data description says so)",
    )
    on_corrupt: Literal["fail", "skip"] = Field(
        "fail",
        description="image-file data (folder, eurosat): an unreadable image is an error (fail), or is left "
        "out and counted in the data description, env.json and reports (skip)",
    )
    storage: Literal["auto", "memory", "disk"] = Field(
        "auto",
        description="image-file data: memory decodes all images once; disk decodes a batch at a time in two "
        "loader workers; auto: disk when the decoded images would pass memory_budget_gb",
    )
    memory_budget_gb: float = Field(
        4.0, gt=0.0, description="storage auto: largest decoded data set, in GiB, kept in memory"
    )

    @model_validator(mode="after")
    def _fold_in_range(self) -> DataConfig:
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


F = TypeVar("F", bound=Family)


class ModelConfig(Section):
    """The network, and the settings of each adlab model family (model.cnn, model.autoencoder, ...: one
    section per family the registered tasks' models read, adlab.settings); library models (torchvision,
    ultralytics) ignore the family sections. A family key written directly under model, as before the
    families (model.latent_dim), is still read as the key of model.name's family, with a notice."""

    name: str = Field(
        "cnn",
        description="; ".join(
            f"{spec.name}: {taskspec.either(spec.models.values())}" for spec in taskspec.TASKS.values()
        ),
    )
    weights: str | None = Field(
        None,
        description="null (from scratch), imagenet, or the path of an adlab "
        "checkpoint or run folder, or of a .pth state dict",
    )
    freeze: bool = Field(False, description="train only the new head (feature extraction)")
    load_head: bool = Field(False, description="also load the classifier head from the checkpoint (same classes)")
    whiten: bool = Field(
        False,
        description="classify, from scratch: half the first convolution's filters start as "
        "the whitening filters of the training images' patches (airbench); not with weights",
    )

    def family(self, section: type[F]) -> F:
        """This config's section of a model family (`cfg.family(CnnConfig)`: model.cnn)."""
        return getattr(self, section.key)


# Every family section the registered tasks' models read, in registry order, composed into the schema: a
# section of its own per family (model.cnn, model.autoencoder), so the reference and the refusals of
# unknown keys follow from the family modules.
MODEL_FAMILIES: dict[str, type[Family]] = {
    family.key: family for spec in taskspec.TASKS.values() for family in spec.families
}
if not TYPE_CHECKING:  # the type checker reads families through ModelConfig.family
    ModelConfig = create_model(  # noqa: F811
        "ModelConfig",
        __base__=ModelConfig,
        __module__=__name__,
        __doc__=ModelConfig.__doc__,
        **{key: (family, Field(family(), description=family.summary)) for key, family in MODEL_FAMILIES.items()},
    )


def model_family(name: Any) -> str | None:
    """The family section a model reads (autoencoder for ae, vae, dae and encoder); None: none of them."""
    return next((key for key, family in MODEL_FAMILIES.items() if name in family.models), None)


def _family_of_key(key: str, name: Any) -> str | None:
    """Where an old `model.<key>` goes: model.name's family if it has the key, else the first family that has it."""
    preferred = model_family(name)
    if preferred is not None and key in MODEL_FAMILIES[preferred].model_fields:
        return preferred
    return next((family for family, section in MODEL_FAMILIES.items() if key in section.model_fields), None)


class SchedulerConfig(Section):
    """Learning-rate schedule: `train.scheduler: step` (a name alone takes these defaults), or a mapping such as
    {name: cosine, min_lr: 0.0}. cosine and onecycle step every batch, step every epoch."""

    name: Literal["step", "cosine", "onecycle"] = Field(
        description="step: multiply the rate by gamma every step_size epochs; cosine: cosine decay to min_lr; "
        "onecycle: rise to lr over pct_start of the steps, then anneal"
    )
    step_size: int = Field(5, ge=1, description="step: epochs between decays")
    gamma: float = Field(0.1, gt=0.0, description="step: decay factor")
    min_lr: float = Field(0.0, ge=0.0, description="cosine: final learning rate")
    pct_start: float = Field(0.25, gt=0.0, lt=1.0, description="onecycle: warm-up fraction of the steps")


# Lightning's own loggers (lightning.pytorch.loggers); detect switches on ultralytics' integrations instead
LOGGERS = ("csv", "tensorboard", "mlflow")
Logger = Literal[LOGGERS]  # type: ignore[valid-type]


class TrainConfig(Section):
    """Optimisation, evaluation-time averaging and the Lightning trainer."""

    epochs: int = Field(10, ge=1, le=100_000, description="passes over the training split (fewer with early stopping)")
    batch_size: int = Field(128, ge=1, le=2**20, description="images per training batch (per device)")
    optimizer: Literal["adam", "adamw", "sgd", "muon"] = Field(
        "adam",
        description="sgd: Nesterov momentum; muon: Muon for the filters and weight matrices between the input "
        "and output layers (at muon_lr, no weight decay), SGD with Nesterov momentum for the rest (at lr); detect: "
        "ultralytics' MuSGD, which sets its own Muon rate and momentum",
    )
    lr: float = Field(1e-3, gt=0.0, description="learning rate (muon: of the SGD part)")
    momentum: float = Field(
        0.9,
        ge=0.0,
        lt=1.0,
        description="momentum (Nesterov) of sgd and of muon's SGD part; detect: ultralytics' momentum",
    )
    muon_lr: float = Field(0.05, gt=0.0, description="optimizer muon: learning rate of the Muon layers (not detect)")
    muon_momentum: float = Field(
        0.6, ge=0.0, lt=1.0, description="optimizer muon: Nesterov momentum of the Muon layers (not detect)"
    )
    weight_decay: float = Field(
        0.0, ge=0.0, description="L2 penalty (adam, sgd) or decoupled decay (adamw); muon: on the SGD part only"
    )
    backbone_lr_scale: float = Field(
        1.0, gt=0.0, description="learning rate of all but the head, relative to lr (discriminative fine-tuning)"
    )
    scheduler: SchedulerConfig | None = Field(
        None,
        description="null (constant rate), a name (step, cosine, "
        "onecycle), or a mapping of the train.scheduler keys below",
    )
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="classify: cross-entropy label smoothing")
    mix: Literal["none", "mixup", "cutmix", "both"] = Field(
        "none",
        description="classify: mix pairs of training images and their labels in each batch (torchvision's "
        "MixUp or CutMix; both: one of the two at random per batch)",
    )
    mix_alpha: float = Field(
        1.0, gt=0.0, description="train.mix: the Beta(alpha, alpha) the mixing share is drawn from"
    )
    tta_flip: bool = Field(False, description="test predictions averaged over each image and its mirror image")
    tta_shift: int = Field(
        0,
        ge=0,
        le=4,
        description="test predictions also averaged over copies moved this many "
        "pixels diagonally (pays after training with crop_padding)",
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, description="epochs without improvement of monitor before stopping (null: never stop early)"
    )
    monitor: Literal[taskspec.MONITORS] = Field(  # type: ignore[valid-type]  # the choices: the task registry's
        "val_loss",
        description="validation metric that picks best.ckpt and drives early stopping ("
        + "; ".join(f"{name}: {' or '.join(tasks)}" for name, tasks in taskspec.monitor_owners().items())
        + ")",
    )
    test_checkpoint: Literal["best", "last"] = Field(
        "best",
        description="the weights the test set is scored with: best (best.ckpt, the epoch with the best "
        "monitor) or last (the last epoch trained); metrics.json says which, and its epoch",
    )
    keep_last: bool = Field(
        True,
        description="keep checkpoints/last.ckpt (with the optimizer state, to continue "
        "training) when the run finishes; false deletes it, or keeps only its weights when "
        "test_checkpoint is last",
    )
    seed: Seed = Field(0, description="seed of initialisation, batch order and augmentation")
    deterministic: bool = Field(True, description="deterministic algorithms (exact repeatability on the CPU)")
    precision: str = Field("32-true", description="any Lightning precision, e.g. bf16-mixed")
    accelerator: str = Field("auto", description="Lightning accelerator: cpu, gpu or auto")
    devices: int | str = Field(1, description="Lightning devices: a count, or a list or 'auto' as a string")
    strategy: str = Field("auto", description="Lightning strategy, e.g. ddp")
    num_nodes: int = Field(1, ge=1, description="machines taking part in DDP (torchrun or SLURM)")
    num_threads: int | None = Field(None, ge=1, le=1024, description="torch CPU threads (null: PyTorch's choice)")
    channels_last: bool = Field(True, description="NHWC memory layout: faster convolutions on CPUs")
    progress_bar: bool = Field(True, description="a progress bar on a terminal; one line per epoch otherwise")
    loggers: list[Logger] = Field(
        [],
        description="trackers the run also logs to, inside the run folder: csv, tensorboard, mlflow (pip install "
        "'adlab[track]'); a name alone is a list of one; []: none, only history.csv and metrics.json "
        "(docs/tracking.md)",
    )

    @field_validator("scheduler", mode="before")
    @classmethod
    def _scheduler_shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("loggers", mode="before")
    @classmethod
    def _known_loggers(cls, value: Any) -> Any:
        names = [value] if isinstance(value, str) else value  # `--set train.loggers=mlflow`: a list of one
        if not isinstance(names, list):
            return names  # pydantic names the wrong type
        for name in names:
            if name not in LOGGERS:
                raise ValueError(f"unknown logger {name!r} (valid: {', '.join(LOGGERS)})")
            if names.count(name) > 1:
                raise ValueError(f"{name} is listed twice")
        return names


class Config(Section):
    """A run: what it does and its name; the data, model and train sections follow."""

    task: Literal[tuple(taskspec.TASKS)] = Field(  # type: ignore[valid-type]  # the choices: the task registry's
        taskspec.DEFAULT_TASK, description="; ".join(f"{spec.name}: {spec.summary}" for spec in taskspec.TASKS.values())
    )
    name: str | None = Field(
        None, description="run name, and the name of its run folder (null: the config file's name)"
    )
    data: DataConfig = Field(DataConfig(), description="the data set and its splits")
    model: ModelConfig = Field(ModelConfig(), description="the network")
    train: TrainConfig = Field(TrainConfig(), description="optimisation and the trainer")

    @model_validator(mode="after")
    def _task_rules(self) -> Config:
        """The data, models and settings the task accepts, as the task registry declares them."""
        if self.model.whiten and self.model.weights:
            raise ValueError(
                "model.whiten: initialises the first convolution of a classifier trained from scratch "
                "(no model.weights)"
            )
        taskspec.check(self)
        return self

    _safe_name = field_validator("name")(name_field)  # the run folder is named after it

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")

# Shorthands: a scalar standing for a section (`scheduler: step`, `augment: true`).
_SHORTHAND_KEY: dict[tuple[str, ...], str] = {("train", "scheduler"): "name", ("data", "augment"): "enabled"}


def load_config(
    source: str | Path | dict | None = None, overrides: list[str] | None = None, notices: bool = True
) -> Config:
    """Read a YAML file (or take a dict), apply `key=value` overrides, validate. A file's relative paths
    (data.root, model.weights) are relative to the file, those of overrides to the working directory
    (adlab.paths). `notices: False` for configs adlab wrote itself (run folders, checkpoints): an old key
    there is moved without a notice, and their paths are taken as written."""
    from adlab.paths import resolve_paths

    origin = "config"
    if source is None:
        raw: Any = {}
    elif isinstance(source, dict):
        raw = copy.deepcopy(source)
    else:
        origin = str(source)
        raw = read_yaml_mapping(source)
        if notices:
            resolve_paths(raw, Path(source).parent, origin)
    for item in overrides or []:
        key, value = parse_override(item)
        set_dotted(raw, key, value)
    if overrides and notices:
        resolve_paths(raw, Path.cwd(), "--set")
    return validate_config(raw, origin, notices)


def validate_config(raw: dict, origin: str = "config", notices: bool = True) -> Config:
    raw = migrate_config(raw, origin, notices)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {describe_validation_error(exc)}") from None


def migrate_config(raw: Any, origin: str = "config", notices: bool = True) -> Any:
    """`raw` (a config mapping, not changed) with each model setting written the old way, directly under
    `model`, moved to its family section (`model.latent_dim` -> `model.autoencoder.latent_dim`): the family of
    model.name that has the key, else the one family that has it. A notice names the new key once per process;
    the old and the new key both given is an error naming both."""
    model = raw.get("model") if isinstance(raw, dict) else None
    if not isinstance(model, dict):
        return raw
    moved = [key for key in model if key not in ModelConfig.model_fields and _family_of_key(key, None) is not None]
    if not moved:
        return raw
    model = dict(model)
    for key in moved:
        family = _family_of_key(key, model.get("name", ModelConfig.model_fields["name"].default))
        section = model.get(family)
        if section is None and family not in model:
            section = {}
        if not isinstance(section, dict):
            continue  # validation names model.<family> as not a mapping
        if key in section:
            raise ConfigError(
                f"{origin}: model.{key} and model.{family}.{key} are both given (model.{key} is the "
                f"old name of model.{family}.{key}); keep only model.{family}.{key}"
            )
        model[family] = {**section, key: model.pop(key)}
        if notices:
            io.notice(f"model.{key} is now model.{family}.{key} (the old key still works)")
    return {**raw, "model": model}


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
    """Set a dotted key in a config mapping; a model setting given in its other spelling (old or new,
    migrate_config) is replaced, as any key an override sets."""
    parts = key.split(".")
    _drop_other_spelling(raw, parts)
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None or not isinstance(child, dict):
            short = _SHORTHAND_KEY.get(tuple(parts[: depth + 1]))
            if child is not None and short is None:
                raise ConfigError(f"--set {key}: '{'.'.join(parts[: depth + 1])}' is not a section")
            child = {} if child is None else {short: child}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _drop_other_spelling(raw: dict, parts: list[str]) -> None:
    """Before an override sets model.<key> (old) or model.<family>.<key> (new), remove the same setting in
    the other spelling, so that the override replaces it instead of being given twice (a study run's
    old-style `model.latent_dim` over its base config's `model.autoencoder.latent_dim`)."""
    model = raw.get("model")
    if parts[0] != "model" or not isinstance(model, dict):
        return
    if len(parts) == 2 and parts[1] not in ModelConfig.model_fields and _family_of_key(parts[1], None):
        for family in MODEL_FAMILIES:  # every family: model.name may still change in a later override
            if isinstance(model.get(family), dict):
                model[family].pop(parts[1], None)
    elif len(parts) == 3 and parts[1] in MODEL_FAMILIES and parts[2] in model:
        if _family_of_key(parts[2], model.get("name", ModelConfig.model_fields["name"].default)) == parts[1]:
            del model[parts[2]]


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
    got_text = (
        ""
        if isinstance(got, (dict, list)) or err["type"] == "value_error"
        else f" (got {got_repr[:60]}{'...' if len(got_repr) > 60 else ''})"
    )
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
