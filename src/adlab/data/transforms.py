"""Per-batch preprocessing: dtype, size, channels, augmentation, normalisation.

Images stay in memory at their native size and dtype (uint8 where the source is uint8) and are
turned into network inputs a whole batch at a time, so there is no per-sample Python work and a
224-pixel ImageNet net on Fashion-MNIST does not need 36 GB of resized copies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BatchTransform(nn.Module):
    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(
        self,
        channels: int,
        image_size: int | None,
        mean,
        std,
        crop_padding: int = 0,
        flip: bool = False,
        augment: bool = False,
        cutout: int = 0,
    ):
        super().__init__()
        self.channels = channels
        self.image_size = image_size
        self.augment = augment
        self.crop_padding = crop_padding
        self.flip = flip
        self.cutout = cutout
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def to_unit_range(self, x: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1] at the network's size and channel count (no augmentation)."""
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        if x.shape[1] == 1 and self.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] == 3 and self.channels == 1:
            x = x.mean(dim=1, keepdim=True)
        if self.image_size is not None and tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            x = F.interpolate(
                x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False
            )
        return x

    def forward(self, x: torch.Tensor, train: bool = False) -> torch.Tensor:
        x = self.to_unit_range(x)
        if train and self.augment:
            x = random_translate(x, self.crop_padding) if self.crop_padding else x
            x = random_hflip(x) if self.flip else x
            x = (x - self.mean) / self.std
            return random_cutout(x, self.cutout) if self.cutout else x
        return (x - self.mean) / self.std


def random_translate(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Random crop after reflect padding, a different offset per image, as one gather."""
    b, c, h, w = x.shape
    pad = min(pad, h - 1, w - 1)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (b,))
    dx = torch.randint(0, 2 * pad + 1, (b,))
    rows = (dy[:, None] + torch.arange(h)[None, :]).to(x.device)
    cols = (dx[:, None] + torch.arange(w)[None, :]).to(x.device)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


def random_hflip(x: torch.Tensor) -> torch.Tensor:
    flip = torch.rand(x.shape[0]) < 0.5
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)


def random_cutout(x: torch.Tensor, size: int) -> torch.Tensor:
    """Zero (the data mean, after normalisation) a size x size square at a random place in each
    image; squares may hang over the border, as in DeVries & Taylor's cutout."""
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b, 1, 1), device=x.device)
    cx = torch.randint(0, w, (b, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device)[None, :, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    top, left = cy - size // 2, cx - size // 2
    inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return x.masked_fill(inside[:, None], 0.0)


def channel_stats(images: torch.Tensor, max_images: int = 10_000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of images in [0, 1] (a seeded subset for large sets)."""
    if len(images) > max_images:
        idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:max_images]
        images = images[idx]
    elif not isinstance(images, torch.Tensor):  # images on disk: decode them
        images = images[torch.arange(len(images))]
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return mean.tolist(), std.tolist()
