"""Re-creating a trained classifier (network + input transform) from its checkpoint alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from adlab.config import Config, validate_config
from adlab.data.datamodule import DataInfo
from adlab.data.transforms import BatchTransform
from adlab.errors import CheckpointError
from adlab.models.checkpoints import read_checkpoint, resolve_checkpoint
from adlab.models.factory import build_model


@dataclass
class TrainedModel:
    net: nn.Module
    info: DataInfo
    config: Config
    checkpoint: Path

    def transform(self) -> BatchTransform:
        return BatchTransform(self.info.channels, self.info.image_size, self.info.mean, self.info.std)


def load_trained(run: str | Path) -> TrainedModel:
    path = resolve_checkpoint(run)
    state, meta = read_checkpoint(path)
    if meta.get("task") != "classify" or "config" not in meta or "data" not in meta:
        raise CheckpointError(f"{path}: not an adlab classification checkpoint (no adlab metadata)")
    if not isinstance(meta["config"], dict):
        raise CheckpointError(f"{path}: damaged adlab metadata (config is not a mapping)")
    config = validate_config(meta["config"], str(path))
    info = data_info(meta["data"], path)
    model_cfg = config.model.model_copy(update={"weights": None, "freeze": False})
    try:
        built = build_model(model_cfg, info.input_shape, len(info.class_names))
        built.net.load_state_dict(state)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit {config.model.name} ({str(exc).splitlines()[0]})") from None
    built.net.eval()
    return TrainedModel(built.net, info, config, path)


def data_info(record: object, path: Path) -> DataInfo:
    """The data description saved in a checkpoint, checked: it sizes the network and names classes."""
    try:
        info = DataInfo(**record)  # type: ignore[arg-type]
        shape = [int(v) for v in info.input_shape]
        names = [str(n) for n in info.class_names]
        ok = (len(shape) == 3 and all(1 <= v <= 8192 for v in shape) and len(names) >= 2
              and info.channels in (1, 3) and info.native_channels in (1, 3) and len(info.native_size) == 2
              and len(info.mean) == len(info.std) >= 1)
    except (TypeError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise CheckpointError(f"{path}: damaged adlab metadata (the data description 'adlab.data' does not "
                              "describe a data set)")
    return info
