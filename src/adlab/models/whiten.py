"""A whitened first layer (airbench): some of the first convolution's filters start as the
principal directions of the training images' patches, scaled to unit variance, so the next layer
sees decorrelated inputs from the first step. The filters keep training as usual."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adlab.errors import ConfigError

EPS = 1e-2  # added to the eigenvalues: the smallest directions of patches are mostly noise


@torch.no_grad()
def patch_covariance(batches, kernel_size: tuple[int, int]) -> torch.Tensor:
    """Covariance of all kernel-sized patches of the (normalised) images, one batch at a time."""
    total, outer, count = None, None, 0
    for images in batches:
        patches = F.unfold(images.float(), kernel_size)  # (batch, in x kh x kw, places)
        patches = patches.transpose(1, 2).reshape(-1, patches.shape[1])
        total = patches.sum(0) if total is None else total + patches.sum(0)
        outer = patches.T @ patches if outer is None else outer + patches.T @ patches
        count += len(patches)
    mean = total / count
    return outer / count - torch.outer(mean, mean)


@torch.no_grad()
def whiten_first_conv(net: nn.Module, batches) -> int:
    """Set filters 0..n-1 of the first convolution to the patch eigenvectors / sqrt(eigenvalue),
    largest first, and filters n..2n-1 to their negatives (so a ReLU keeps both signs);
    n = min(half the filters, the patch size). Returns n."""
    conv = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None or conv.groups != 1:
        raise ConfigError("model.whiten: the model has no plain first convolution to whiten")
    eigenvalues, vectors = torch.linalg.eigh(patch_covariance(batches, conv.kernel_size))
    filters = (vectors / (eigenvalues.clamp(min=0) + EPS).sqrt()).T.flip(0)  # largest eigenvalue first
    n = min(conv.out_channels // 2, len(filters))
    shaped = filters[:n].to(conv.weight.dtype).view(n, *conv.weight.shape[1:])  # rows: (in, kh, kw) as unfold
    conv.weight[:n] = shaped
    conv.weight[n:2 * n] = -shaped
    return n
