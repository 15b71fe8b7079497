"""What `--plan` times for a detection run: ultralytics' own network with its own loss (the task-aligned
assigner and the box, class and DFL terms) on random boxes, and the size of the checkpoints it writes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

BOXES_PER_IMAGE = 4  # about KITTI's cars per image: the assigner's work grows with the boxes


class LossOnRandomBoxes(nn.Module):
    """A YOLO model whose training forward is ultralytics' loss on `BOXES_PER_IMAGE` random boxes per image
    (as its trainer computes it every step); in eval mode it is the model's inference."""

    def __init__(self, model: Any, boxes_per_image: int = BOXES_PER_IMAGE):  # ultralytics' DetectionModel
        super().__init__()
        self.model = model
        self.boxes_per_image = boxes_per_image

    def to(self, *args, memory_format=None, **kwargs):
        return super().to(*args, **kwargs)  # ultralytics trains NCHW on a CPU (channels-last on CUDA only)

    def forward(self, x: torch.Tensor):
        x = x.contiguous()
        if not self.training:
            return self.model(x)
        n, k = x.shape[0], self.boxes_per_image
        generator = torch.Generator().manual_seed(0)
        centres = 0.2 + 0.6 * torch.rand(n * k, 2, generator=generator)
        sizes = 0.05 + 0.2 * torch.rand(n * k, 2, generator=generator)
        batch = {
            "img": x,
            "batch_idx": torch.arange(n).repeat_interleave(k).float(),
            "cls": torch.zeros(n * k, 1),
            "bboxes": torch.cat([centres, sizes], dim=1),  # normalised x, y, w, h, as ultralytics' loader gives
        }
        loss, _ = self.model.loss(batch)
        return loss.sum()


def timing_network(model_name: str, classes: int) -> nn.Module:
    """ultralytics' network `model_name` (from its yaml, no weights) for `classes` classes, with the default
    hyperparameters its trainer attaches for the loss."""
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel, yaml_model_load

    spec = yaml_model_load(f"{model_name}.yaml")
    spec["nc"] = classes  # set here, not passed: ultralytics would log that it overrides the yaml's
    model: Any = DetectionModel(spec, verbose=False)
    model.args = get_cfg()  # box, cls and dfl gains: what the trainer sets before its first step
    return LossOnRandomBoxes(model)


def checkpoint_bytes(net: nn.Module) -> int:
    """About the size of one ultralytics checkpoint: the EMA weights and the optimizer's momentum, both saved
    in half precision (its trainer's save_model)."""
    return 2 * 2 * sum(p.numel() for p in net.parameters())
