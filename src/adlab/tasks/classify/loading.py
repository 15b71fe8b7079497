"""Re-creating a trained classifier (network + input transform) from its checkpoint alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from adlab.config import Config
from adlab.data.datamodule import DataInfo
from adlab.data.transforms import BatchTransform
from adlab.models.factory import build_model
from adlab.tasks.lightning.loading import load_network


@dataclass
class TrainedModel:
    net: nn.Module
    info: DataInfo
    config: Config
    checkpoint: Path

    def transform(self) -> BatchTransform:
        return BatchTransform(self.info.channels, self.info.image_size, self.info.mean, self.info.std)


def load_trained(run: str | Path) -> TrainedModel:
    def build(config: Config, info: DataInfo) -> nn.Module:
        model_cfg = config.model.model_copy(update={"weights": None, "freeze": False})
        return build_model(model_cfg, info.input_shape, len(info.class_names)).net

    net, info, config, path = load_network(run, "classify", "classification", build)
    return TrainedModel(net, info, config, path)
