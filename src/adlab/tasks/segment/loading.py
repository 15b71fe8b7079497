"""Re-creating a trained segmenter (network + input transform) from its checkpoint alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from adlab.config import Config
from adlab.data.datamodule import DataInfo
from adlab.data.transforms import BatchTransform
from adlab.models.segmentation import build_segmenter
from adlab.settings.unet import UnetConfig
from adlab.tasks.lightning.loading import load_network


@dataclass
class TrainedSegmenter:
    net: nn.Module
    info: DataInfo
    config: Config
    checkpoint: Path

    def transform(self) -> BatchTransform:
        return BatchTransform(self.info.channels, None, self.info.mean, self.info.std)


def load_segmenter(run: str | Path) -> TrainedSegmenter:
    def build(config: Config, info: DataInfo) -> nn.Module:  # the architecture only: the checkpoint has the weights
        return build_segmenter(
            config.model.name, info.channels, len(info.class_names), None, config.model.family(UnetConfig)
        ).net

    net, info, config, path = load_network(run, "segment", "segmentation", build)
    return TrainedSegmenter(net, info, config, path)
