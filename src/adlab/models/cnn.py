"""A configurable VGG-style CNN: blocks of (conv, [batch norm], activation) x n, then max-pool."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
}


class VGGNet(nn.Module):
    """features (convolution blocks) -> classifier (hidden layers and output layer).

    The classifier is the "head" for transfer learning: re-initialised when weights come from a
    checkpoint, and the only part that trains when the features are frozen (as with a VGG
    convolutional base and a new dense top).

    `convs_per_block` is one count for every block or a list with one per block: convolutions
    at full resolution cost the most, so fast recipes use fewer there ([1, 2, 2]).

    Pooling stops once the feature map is 1 pixel wide, so the same recipe runs on 8x8 digits
    and on 64x64 satellite tiles.

    `pool_early` max-pools straight after each block's last convolution, before its batch norm
    and activation (as airbench does): these then touch a quarter of the pixels, which on a CPU
    is most of the cost of the full-resolution block.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_hw: tuple[int, int],
        conv_channels=(32, 64, 128),
        convs_per_block: int | list[int] = 2,
        activation: str = "relu",
        batch_norm: bool = True,
        conv_dropout: float = 0.0,
        hidden=(128,),
        dropout: float = 0.3,
        global_pool: bool = False,
        pool_early: bool = False,
    ):
        super().__init__()
        act = ACTIVATIONS[activation]
        layers: list[nn.Module] = []
        h, w = image_hw
        channels = in_channels
        repeats = [convs_per_block] * len(conv_channels) if isinstance(convs_per_block, int) else convs_per_block
        for width, convs in zip(conv_channels, repeats, strict=False):
            pool = min(h, w) >= 2
            for i in range(convs):
                layers += [nn.Conv2d(channels, width, 3, padding=1, bias=not batch_norm)]
                if pool and pool_early and i == convs - 1:
                    layers.append(nn.MaxPool2d(2))
                layers += [nn.BatchNorm2d(width)] if batch_norm else []
                layers += [act()]
                channels = width
            if pool and not pool_early:
                layers.append(nn.MaxPool2d(2))
            if pool:
                h, w = h // 2, w // 2
            if conv_dropout:
                layers.append(nn.Dropout2d(conv_dropout))
        if global_pool:
            layers.append(nn.AdaptiveAvgPool2d(1))
            h = w = 1
        self.features = nn.Sequential(*layers)
        fc: list[nn.Module] = [nn.Flatten()]
        size = channels * h * w
        for units in hidden:
            fc += [nn.Dropout(dropout)] if dropout else []
            fc += [nn.Linear(size, units), act()]
            size = units
        fc += [nn.Dropout(dropout)] if dropout else []
        fc.append(nn.Linear(size, num_classes))
        self.classifier = nn.Sequential(*fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
