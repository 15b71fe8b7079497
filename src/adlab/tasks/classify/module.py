"""Image classification as a LightningModule: what to compute; the Trainer decides how."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassRecall

from adlab.config import TrainConfig
from adlab.optim import MuonSGD, muon_parameters


class ClassifyTask(L.LightningModule):
    def __init__(self, model: nn.Module, num_classes: int, train_cfg: TrainConfig, meta: dict | None = None):
        super().__init__()
        self.model = model
        self.cfg = train_cfg
        self.meta = meta or {}  # config, class names, normalisation: makes checkpoints self-describing
        self.val_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.val_mca = MulticlassRecall(num_classes, average="macro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_fit_start(self) -> None:
        if self.cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def on_train_epoch_start(self) -> None:
        # A frozen feature extractor keeps its batch-norm statistics too, not just its weights.
        # (Lightning restores these modes after each validation, so once per epoch suffices.)
        for module in self.model.modules():
            params = list(module.parameters(recurse=False))
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and params and not any(p.requires_grad for p in params):
                module.eval()

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.model(x), y, label_smoothing=self.cfg.label_smoothing)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.model(x)
        self.val_accuracy(logits, y)
        self.val_mca(logits, y)
        self.log("val_loss", F.cross_entropy(logits, y), on_epoch=True, batch_size=len(y), prog_bar=True,
                 sync_dist=True)
        self.log("val_accuracy", self.val_accuracy, on_epoch=True, prog_bar=True)
        self.log("val_mean_class_accuracy", self.val_mca, on_epoch=True)

    def predict_step(self, batch, batch_idx):
        return self.model(batch[0])

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["adlab"] = self.meta

    def configure_optimizers(self):
        head = self.meta.get("head")
        return build_optimization(self.model, self.cfg, head, self.trainer)


def parameter_groups(module: nn.Module, cfg: TrainConfig, head: str | None) -> list[dict]:
    """Trainable parameters only; with `backbone_lr_scale` != 1 the body gets a smaller rate than the
    new head (discriminative fine-tuning: pretrained features move gently, the head learns fast)."""
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    if head is None or cfg.backbone_lr_scale == 1.0:
        return [{"params": [p for _, p in named]}]
    is_head = lambda name: name == head or name.startswith(head + ".")  # noqa: E731
    groups = [{"params": [p for n, p in named if is_head(n)], "lr": cfg.lr},
              {"params": [p for n, p in named if not is_head(n)], "lr": cfg.lr * cfg.backbone_lr_scale}]
    return [g for g in groups if g["params"]]


def muon_groups(module: nn.Module, groups: list[dict], cfg: TrainConfig) -> list[dict]:
    """Each group split in two: its hidden filters and matrices take Muon steps at muon_lr (scaled
    as the group's lr is: backbone_lr_scale) with no weight decay, the rest SGD steps."""
    hidden = {id(p) for p in muon_parameters(module)[0]}
    out = []
    for group in groups:
        scale = group.get("lr", cfg.lr) / cfg.lr
        out += [{**group, "params": [p for p in group["params"] if id(p) not in hidden], "muon": False},
                {"params": [p for p in group["params"] if id(p) in hidden], "muon": True,
                 "lr": cfg.muon_lr * scale, "weight_decay": 0.0}]
    return [g for g in out if g["params"]]


def build_optimization(module: nn.Module, cfg: TrainConfig, head: str | None = None,
                       trainer: L.Trainer | None = None) -> dict:
    """Optimizer over the trainable parameters only, and the scheduler with its stepping interval."""
    params = parameter_groups(module, cfg, head)
    if cfg.optimizer == "muon":
        optimizer = MuonSGD(muon_groups(module, params, cfg), lr=cfg.lr, momentum=cfg.momentum,
                            weight_decay=cfg.weight_decay, muon_momentum=cfg.muon_momentum)
    elif cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                    nesterov=cfg.momentum > 0)
    elif cfg.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = cfg.scheduler
    if sched is None:
        return {"optimizer": optimizer}
    if sched.name == "step":
        scheduler, interval = torch.optim.lr_scheduler.StepLR(optimizer, sched.step_size, sched.gamma), "epoch"
    else:
        total = max(1, int(trainer.estimated_stepping_batches))
        if sched.name == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=sched.min_lr)
        else:
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                                            total_steps=total,
                                                            pct_start=sched.pct_start)
        interval = "step"
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}
