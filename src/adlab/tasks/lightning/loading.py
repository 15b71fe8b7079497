"""A trained network re-created from its checkpoint alone: the checkpoint holds the config, the
data description and the weights (read as untrusted input)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from adlab import io, ownership
from adlab.config import Config, DataConfig, load_config, validate_config
from adlab.data.datamodule import DataInfo
from adlab.errors import CheckpointError, ConfigError
from adlab.models.checkpoints import read_checkpoint, resolve_checkpoint, sha256_file


def load_network(
    run: str | Path, task: str, noun: str, build: Callable[[Config, DataInfo], nn.Module]
) -> tuple[nn.Module, DataInfo, Config, Path]:
    """(network in eval mode, data description, config, checkpoint path) of a run or checkpoint of
    `task`; `build` makes the untrained network from the saved config and data description."""
    path = resolve_checkpoint(run)
    state, meta = read_checkpoint(path)
    if meta.get("task") != task or "config" not in meta or "data" not in meta:
        raise CheckpointError(f"{path}: not an adlab {noun} checkpoint (no adlab metadata for task {task})")
    if not isinstance(meta["config"], dict):
        raise CheckpointError(f"{path}: damaged adlab metadata (config is not a mapping)")
    config = validate_config(meta["config"], str(path), notices=False)
    info = data_info(meta["data"], path)
    try:
        net = build(config, info)
        net.load_state_dict(state)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit {config.model.name} ({str(exc).splitlines()[0]})") from None
    return net.eval(), info, config, path


def evaluation_config(config: Config, overrides: list[str] | None) -> Config:
    """A trained run's config with `adlab evaluate --set` applied: data.* keys only (the network stays as trained)."""
    for item in overrides or []:
        if not item.startswith("data."):
            raise ConfigError(f"--set {item}: evaluate only changes data.* keys")
    return load_config(config.to_dict(), overrides)


def evaluation_folder(run: str | Path, checkpoint: Path, out: str | Path | None, overwrite: bool) -> Path:
    """Where `adlab evaluate` writes (default RUN/evaluation), checked before anything is computed: a new folder,
    or an earlier evaluation with `overwrite`."""
    run_dir = Path(run) if Path(run).is_dir() else checkpoint.parent.parent
    out_dir = ownership.canonical(out or run_dir / "evaluation")
    ownership.check_output(out_dir, "evaluation", overwrite)
    return out_dir


def write_evaluation_record(out_dir: Path, checkpoint: Path, data: DataConfig, description: str) -> None:
    """evaluation.yaml of `adlab evaluate`: which checkpoint (and its sha256) was scored on which data."""
    io.write_yaml(
        out_dir / "evaluation.yaml",
        {
            "checkpoint": str(checkpoint),
            "checkpoint_sha256": sha256_file(checkpoint),
            "data": data.model_dump(mode="json"),
            "description": description,
        },
    )


def data_info(record: object, path: Path) -> DataInfo:
    """The data description saved in a checkpoint, checked: it sizes the network and names classes."""
    try:
        info = DataInfo(**record)  # type: ignore[arg-type]
        shape = [int(v) for v in info.input_shape]
        names = [str(n) for n in info.class_names]
        ok = (
            len(shape) == 3
            and all(1 <= v <= 8192 for v in shape)
            and len(names) >= 2
            and info.channels in (1, 3)
            and info.native_channels in (1, 3)
            and len(info.native_size) == 2
            and len(info.mean) == len(info.std) >= 1
        )
    except (TypeError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise CheckpointError(
            f"{path}: damaged adlab metadata (the data description 'adlab.data' does not describe a data set)"
        )
    return info
