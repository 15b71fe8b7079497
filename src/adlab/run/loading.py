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
    config = validate_config(meta["config"], str(path))
    info = DataInfo(**meta["data"])
    model_cfg = config.model.model_copy(update={"weights": None, "freeze": False})
    built = build_model(model_cfg, info.input_shape, len(info.class_names))
    try:
        built.net.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit {config.model.name} ({str(exc).splitlines()[0]})") from None
    built.net.eval()
    return TrainedModel(built.net, info, config, path)
