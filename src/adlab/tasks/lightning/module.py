"""What every task's LightningModule shares: its network, its train settings, the metadata its checkpoints carry,
the memory layout its inputs come in, and frozen layers kept frozen."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

from adlab.config import TrainConfig
from adlab.models.layout import channels_last_pays
from adlab.tasks.lightning.callbacks import keep_frozen_norms_frozen


class TaskModule(L.LightningModule):
    def __init__(self, model: nn.Module, train_cfg: TrainConfig, meta: dict | None = None):
        super().__init__()
        self.model = model
        self.cfg = train_cfg
        self.meta = meta or {}  # config, class names, normalisation: makes checkpoints self-describing
        self.channels_last = channels_last_pays(model, train_cfg.channels_last, train_cfg.precision)

    def forward(self, x: torch.Tensor):
        return self.model(x)

    def on_fit_start(self) -> None:
        # the data module sends its batches in this layout (prepare sets it); a network left in the other layout
        # converts every activation back and forth (F's autoencoder trained at 58% of its speed so)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def on_train_epoch_start(self) -> None:
        keep_frozen_norms_frozen(self.model)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["adlab"] = self.meta
