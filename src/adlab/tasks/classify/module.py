"""Image classification as a LightningModule: what to compute; the Trainer decides how."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassRecall

from adlab.config import TrainConfig
from adlab.optim import build_optimization
from adlab.tasks.lightning.module import TaskModule


class ClassifyModule(TaskModule):
    def __init__(self, model: nn.Module, num_classes: int, train_cfg: TrainConfig, meta: dict | None = None):
        super().__init__(model, train_cfg, meta)
        self.val_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.val_mca = MulticlassRecall(num_classes, average="macro")
        self.mix = label_mixing(train_cfg.mix, train_cfg.mix_alpha, num_classes)

    def training_step(self, batch, batch_idx):
        x, y = batch
        target = y
        if self.mix is not None:  # soft targets: each image's share of the two mixed labels
            x, target = self.mix(x, y)
        loss = F.cross_entropy(self.model(x), target, label_smoothing=self.cfg.label_smoothing)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.model(x)
        self.val_accuracy(logits, y)
        self.val_mca(logits, y)
        self.log(
            "val_loss", F.cross_entropy(logits, y), on_epoch=True, batch_size=len(y), prog_bar=True, sync_dist=True
        )
        self.log("val_accuracy", self.val_accuracy, on_epoch=True, prog_bar=True)
        self.log("val_mean_class_accuracy", self.val_mca, on_epoch=True)

    def predict_step(self, batch, batch_idx):
        return self.model(batch[0])

    def configure_optimizers(self):
        head = self.meta.get("head")
        return build_optimization(self.model, self.cfg, head, self.trainer)


def label_mixing(kind: str, alpha: float, num_classes: int):
    """torchvision's batched MixUp / CutMix (None for "none"): (images, labels) -> (mixed images, soft labels).
    They draw from torch's global generator, which Lightning seeds, so a run stays repeatable."""
    if kind == "none":
        return None
    from torchvision.transforms import v2

    mixup, cutmix = v2.MixUp(alpha=alpha, num_classes=num_classes), v2.CutMix(alpha=alpha, num_classes=num_classes)
    return {"mixup": mixup, "cutmix": cutmix, "both": v2.RandomChoice([mixup, cutmix])}[kind]
