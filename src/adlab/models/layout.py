"""The memory layout a network trains fastest in on a CPU: one rule for training, prediction and `--plan`."""

from __future__ import annotations

from torch import nn

# oneDNN's bf16 channels-last kernels block channels by 16: a narrower layer is slower in NHWC than in NCHW.
# Measured on 2 cores (a plain loop of F's autoencoders, bf16, img/s NHWC against NCHW): 8-16-16 5,311 against
# 9,322 and 8-32-32 5,397 against 7,829, but 16-16-16 7,891 against 6,596 and 16-32-32 7,393 against 5,018.
NARROWEST_BF16_CHANNELS_LAST = 16


def channels_last_pays(net: nn.Module, asked: bool, precision: str) -> bool:
    """Whether `net` runs channels-last: train.channels_last asks for it, and in bf16 only a network whose
    convolutions all read 16 channels or more (the first, which reads the image, aside) gets it."""
    if not asked:
        return False
    if not str(precision).startswith("bf16"):
        return True
    widths = [m.in_channels for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))][1:]
    return min(widths, default=NARROWEST_BF16_CHANNELS_LAST) >= NARROWEST_BF16_CHANNELS_LAST
