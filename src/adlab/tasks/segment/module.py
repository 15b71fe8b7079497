"""Semantic segmentation as a LightningModule: per-pixel cross-entropy (IGNORE pixels left out), and the
validation mean IoU and pixel accuracy from one confusion matrix over the epoch's pixels."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from adlab.config import TrainConfig
from adlab.optim import build_optimization
from adlab.tasks.lightning.module import TaskModule
from adlab.tasks.segment.metrics import IGNORE, scores


class SegmentModule(TaskModule):
    def __init__(self, model: nn.Module, head: str, class_names: list[str], train_cfg: TrainConfig, meta: dict):
        super().__init__(model, train_cfg, meta)
        self.head = head
        self.class_names = class_names
        # a torchmetrics metric, so DDP ranks add their counts before the scores are computed
        self.val_confusion = MulticlassConfusionMatrix(len(class_names), ignore_index=IGNORE, validate_args=False)

    def training_step(self, batch, batch_idx):
        x, m = batch
        loss = F.cross_entropy(self.model(x).float(), m, ignore_index=IGNORE)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(x), sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, m = batch
        logits = self.model(x).float()
        self.log(
            "val_loss",
            F.cross_entropy(logits, m, ignore_index=IGNORE),
            on_epoch=True,
            batch_size=len(x),
            prog_bar=True,
            sync_dist=True,
        )
        self.val_confusion.update(logits.argmax(1), m)

    def on_validation_epoch_end(self) -> None:
        result = scores(self.val_confusion.compute(), self.class_names)
        self.val_confusion.reset()
        self.log("val_mean_iou", result["mean_iou"], prog_bar=True)
        self.log("val_pixel_accuracy", result["pixel_accuracy"])

    def configure_optimizers(self):
        return build_optimization(self.model, self.cfg, self.head, self.trainer)
