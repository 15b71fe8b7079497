"""Optimizers and schedulers of every Lightning task (`build_optimization`), and Muon for the hidden
filters with SGD for the rest, as one optimizer (`MuonSGD`).

Muon (Keller Jordan, 2024; `torch.optim.Muon`) replaces each weight matrix's momentum update by the
nearest orthogonal matrix, so every direction of a layer moves at the same rate. Two things keep
`torch.optim.Muon` from being used as it is here:
- it takes 2D parameters only, and a convolution's filters are 4D: Muon's reference implementation
  views them as (out, in x k x k) matrices, and so does this optimizer;
- the layers Muon is not meant for (the input layer, the output layer, norms, biases) need a second
  optimizer, and Lightning's automatic optimization, its schedulers and its checkpoints expect one.
The update rules themselves are torch's own functional `muon` and `sgd`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.optim._muon import muon as muon_update  # torch.optim.Muon's step on 2D tensors
from torch.optim.sgd import sgd as sgd_update

if TYPE_CHECKING:
    import lightning as L

    from adlab.config import TrainConfig

# torch.optim.Muon's defaults
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5


def muon_parameters(module: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(hidden, rest): the trainable weights of the linear layers and full convolutions between
    the input layer and the output layer go to Muon. Those two layers, depthwise and grouped
    filters, norms, biases, layer scales, embeddings and tokens go to SGD, as Muon's authors
    advise. Layers are found by type in module order, not by shape: a (C, 1, 1) layer scale or a
    position table is not a weight matrix."""
    layers = [m for m in module.modules() if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)]
    weights = [m.weight for m in layers if m.weight.requires_grad]
    hidden = {id(p) for p in weights[1:-1]}
    trainable = [p for p in module.parameters() if p.requires_grad]
    return [p for p in trainable if id(p) in hidden], [p for p in trainable if id(p) not in hidden]


def as_matrix(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`t` (a weight or its gradient) as an (out, fan-in) matrix whose columns are ordered as in the
    weight's memory: a view of a channels-last filter bank too. (Muon's update does not depend on the
    order of the columns, only every tensor of one weight must use the same order.)"""
    if like.ndim == 4 and not like.is_contiguous() and like.is_contiguous(memory_format=torch.channels_last):
        t = t.permute(0, 2, 3, 1)
    return t.reshape(len(t), -1)


def _grads(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """The gradients of `params`: all of them, as MuonSGD.step passes only parameters that have one."""
    return [p.grad for p in params if p.grad is not None]


class MuonSGD(torch.optim.Optimizer):
    """Param groups flagged `muon: True` take Muon steps at their `lr` with `muon_momentum`
    (Nesterov) and decoupled `weight_decay`; the others take SGD steps (Nesterov `momentum`,
    L2 `weight_decay`). Muon's momentum has its own key so that one-cycle's momentum cycling
    applies to the SGD groups only."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, muon_momentum: float = 0.6):
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "muon_momentum": muon_momentum,
            "muon": False,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if group["muon"]:
                self._muon_step(group, params)
            else:
                self._sgd_step(group, params)
        return loss

    def _muon_step(self, group: dict, params: list[torch.Tensor]) -> None:
        matrices = [as_matrix(p, p) for p in params]  # views: Muon's in-place steps reach the filters
        if any(m.data_ptr() != p.data_ptr() for m, p in zip(matrices, params, strict=True)):
            raise ValueError(
                "optimizer muon: a weight's memory layout has no matrix view (neither contiguous nor channels-last)"
            )
        buffers = []
        for p, matrix in zip(params, matrices, strict=True):
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(matrix, memory_format=torch.contiguous_format)
            buffers.append(state["momentum_buffer"])
        muon_update(
            matrices,
            [as_matrix(g, p) for g, p in zip(_grads(params), params, strict=True)],
            buffers,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            momentum=group["muon_momentum"],
            nesterov=True,
            ns_coefficients=NS_COEFFICIENTS,
            ns_steps=NS_STEPS,
            eps=1e-7,
            adjust_lr_fn=None,
            has_complex=False,
        )

    def _sgd_step(self, group: dict, params: list[torch.Tensor]) -> None:
        buffers = [self.state[p].get("momentum_buffer") for p in params]
        sgd_update(
            params,
            _grads(params),
            buffers,
            weight_decay=group["weight_decay"],
            momentum=group["momentum"],
            lr=group["lr"],
            dampening=0.0,
            nesterov=group["momentum"] > 0,
            maximize=False,
        )
        if group["momentum"] > 0:  # the functional creates the buffers on the first step
            for p, buffer in zip(params, buffers, strict=True):
                self.state[p]["momentum_buffer"] = buffer


def parameter_groups(module: nn.Module, cfg: TrainConfig, head: str | None) -> list[dict]:
    """Trainable parameters only; with `backbone_lr_scale` != 1 the body gets a smaller rate than the
    new head (discriminative fine-tuning: pretrained features move gently, the head learns fast)."""
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    if head is None or cfg.backbone_lr_scale == 1.0:
        return [{"params": [p for _, p in named]}]
    is_head = lambda name: name == head or name.startswith(head + ".")  # noqa: E731
    groups = [
        {"params": [p for n, p in named if is_head(n)], "lr": cfg.lr},
        {"params": [p for n, p in named if not is_head(n)], "lr": cfg.lr * cfg.backbone_lr_scale},
    ]
    return [g for g in groups if g["params"]]


def muon_groups(module: nn.Module, groups: list[dict], cfg: TrainConfig) -> list[dict]:
    """Each group split in two: its hidden filters and matrices take Muon steps at muon_lr (scaled
    as the group's lr is: backbone_lr_scale) with no weight decay, the rest SGD steps."""
    hidden = {id(p) for p in muon_parameters(module)[0]}
    out = []
    for group in groups:
        scale = group.get("lr", cfg.lr) / cfg.lr
        out += [
            {**group, "params": [p for p in group["params"] if id(p) not in hidden], "muon": False},
            {
                "params": [p for p in group["params"] if id(p) in hidden],
                "muon": True,
                "lr": cfg.muon_lr * scale,
                "weight_decay": 0.0,
            },
        ]
    return [g for g in out if g["params"]]


def build_optimization(
    module: nn.Module, cfg: TrainConfig, head: str | None = None, trainer: L.Trainer | None = None
) -> dict:
    """Optimizer over the trainable parameters only, and the scheduler with its stepping interval."""
    params = parameter_groups(module, cfg, head)
    optimizer: torch.optim.Optimizer
    if cfg.optimizer == "muon":
        optimizer = MuonSGD(
            muon_groups(module, params, cfg),
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            muon_momentum=cfg.muon_momentum,
        )
    elif cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0
        )
    elif cfg.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = cfg.scheduler
    if sched is None:
        return {"optimizer": optimizer}
    scheduler: torch.optim.lr_scheduler.LRScheduler
    if sched.name == "step":
        scheduler, interval = torch.optim.lr_scheduler.StepLR(optimizer, sched.step_size, sched.gamma), "epoch"
    else:
        assert trainer is not None  # the per-step schedulers need the trainer's step count
        total = max(1, int(trainer.estimated_stepping_batches))
        if sched.name == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=sched.min_lr)
        else:
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer,
                max_lr=[g["lr"] for g in optimizer.param_groups],
                total_steps=total,
                pct_start=sched.pct_start,
            )
        interval = "step"
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}
