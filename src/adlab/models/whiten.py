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
def patch_covariance(
    batches, kernel_size: tuple[int, ...], max_patches: int = 10_000_000, chunk: int = 4_000_000
) -> torch.Tensor:
    """Covariance of the kernel-sized patches of the (normalised) images, a few images at a time
    (`chunk` values of unfolded patches at most: 16 MB), stopping after `max_patches` patches
    (10,000 28x28 images; a few hundred of 224x224)."""

    def chunks():
        for batch in batches:
            places = (batch.shape[-2] - kernel_size[0] + 1) * (batch.shape[-1] - kernel_size[1] + 1)
            yield from batch.split(max(1, chunk // (places * batch.shape[1] * kernel_size[0] * kernel_size[1])))

    total: torch.Tensor | float = 0.0
    outer: torch.Tensor | float = 0.0
    count = 0
    for images in chunks():
        patches = F.unfold(images.float(), kernel_size)  # (images, in x kh x kw, places)
        patches = patches.transpose(1, 2).reshape(-1, patches.shape[1])
        total, outer, count = total + patches.sum(0), outer + patches.T @ patches, count + len(patches)
        if count >= max_patches:
            break
    mean = total / count
    assert isinstance(mean, torch.Tensor)  # count > 0: at least one batch was summed
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
    conv.weight[n : 2 * n] = -shaped
    return n
