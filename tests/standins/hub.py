"""torch.hub's cache as a download leaves it: TORCH_HOME/hub/checkpoints/<torchvision's file name>,
holding a state dict of the right architecture (random values: the file is not torchvision's)."""

from __future__ import annotations

from pathlib import Path

import torch


def write_imagenet_weights(torch_home: Path, name: str) -> Path:
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    folder = Path(torch_home) / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / Path(weights.url).name
    torch.manual_seed(0)
    torch.save(torchvision.models.get_model(name, weights=None).state_dict(), path)
    return path
