"""Convolutional autoencoders: AE, VAE and denoising AE (the AE trained on corrupted inputs).

Encoder: stride-2 convolution blocks, then a linear bottleneck. Decoder: the mirror image with
transposed convolutions that restore the exact input size (28 -> 14 -> 7 -> 14 -> 28, and
8 -> 4 -> 2 -> 4 -> 8 for digits), sigmoid output for images in [0, 1].
"""

from __future__ import annotations

import math

import torch
from torch import nn

from adlab.models.cnn import ACTIVATIONS


def _conv_block(
    c_in: int, c_out: int, act, batch_norm: bool, dropout: float, transpose: bool = False, output_padding: int = 0
) -> list[nn.Module]:
    conv: nn.Module
    if transpose:
        conv = nn.ConvTranspose2d(
            c_in, c_out, 3, stride=2, padding=1, output_padding=output_padding, bias=not batch_norm
        )
    else:
        conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=not batch_norm)
    layers: list[nn.Module] = [conv]
    layers += [nn.BatchNorm2d(c_out)] if batch_norm else []
    layers += [act()]
    layers += [nn.Dropout2d(dropout)] if dropout else []
    return layers


class ConvEncoder(nn.Module):
    """Images [B, C, H, W] -> codes [B, latent_dim] (or mean and log-variance for a VAE)."""

    def __init__(
        self,
        in_channels: int,
        image_hw: tuple[int, int],
        latent_dim: int,
        channels=(32, 64),
        activation: str = "relu",
        batch_norm: bool = True,
        dropout: float = 0.0,
        variational: bool = False,
    ):
        super().__init__()
        act = ACTIVATIONS[activation]
        layers: list[nn.Module] = []
        c, (h, w) = in_channels, image_hw
        self.sizes = [(h, w)]
        for width in channels:
            layers += _conv_block(c, width, act, batch_norm, dropout)
            c, h, w = width, math.ceil(h / 2), math.ceil(w / 2)
            self.sizes.append((h, w))
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.feature_shape = (c, h, w)
        self.to_latent = nn.Linear(c * h * w, latent_dim)
        self.to_logvar = nn.Linear(c * h * w, latent_dim) if variational else None

    def forward(self, x: torch.Tensor):
        h = self.features(x)
        if self.to_logvar is None:
            return self.to_latent(h)
        return self.to_latent(h), self.to_logvar(h)


class ConvDecoder(nn.Module):
    """Codes [B, latent_dim] -> images [B, C, H, W] in [0, 1]."""

    def __init__(
        self,
        encoder: ConvEncoder,
        out_channels: int,
        latent_dim: int,
        channels=(32, 64),
        activation: str = "relu",
        batch_norm: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        act = ACTIVATIONS[activation]
        c, h, w = encoder.feature_shape
        self.feature_shape = (c, h, w)
        self.from_latent = nn.Sequential(nn.Linear(latent_dim, c * h * w), act())
        layers: list[nn.Module] = []
        sizes = encoder.sizes[::-1]  # e.g. [(7,7), (14,14), (28,28)]
        widths = list(channels[::-1][1:]) + [channels[0]]
        for (small, big), width in zip(zip(sizes[:-1], sizes[1:], strict=True), widths, strict=False):
            pad = big[0] - (2 * small[0] - 1)  # restores odd sizes exactly
            layers += _conv_block(c, width, act, batch_norm, dropout, transpose=True, output_padding=pad)
            c = width
        layers += [nn.Conv2d(c, out_channels, 3, padding=1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.from_latent(z).view(-1, *self.feature_shape))


class AutoEncoder(nn.Module):
    """AE (and DAE: the corruption happens in the task, not the network)."""

    variational = False

    def __init__(
        self,
        in_channels: int,
        image_hw: tuple[int, int],
        latent_dim: int = 10,
        channels=(32, 64),
        activation: str = "relu",
        batch_norm: bool = True,
        dropout: float = 0.0,
        denoising: bool = False,
    ):
        """`dropout`: Dropout2d after each convolution block (model.autoencoder.conv_dropout). `denoising`: trained
        on corrupted inputs (a DAE); the network is the same, the task reads this to corrupt them."""
        super().__init__()
        self.latent_dim = latent_dim
        self.denoising = denoising
        self.encoder = ConvEncoder(
            in_channels, image_hw, latent_dim, channels, activation, batch_norm, dropout, variational=self.variational
        )
        self.decoder = ConvDecoder(self.encoder, in_channels, latent_dim, channels, activation, batch_norm, dropout)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code used for latent maps and probes (a VAE's mean)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> dict:
        z = self.encoder(x)
        return {"recon": self.decoder(z), "z": z}


class VariationalAutoEncoder(AutoEncoder):
    variational = True

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[0]

    def forward(self, x: torch.Tensor) -> dict:
        mu, logvar = self.encoder(x)
        logvar = logvar.clamp(-30.0, 20.0)
        # reparameterisation: z = mu + sigma * eps keeps the sample differentiable in mu and sigma
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if self.training else mu
        return {"recon": self.decoder(z), "z": z, "mu": mu, "logvar": logvar}


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) per sample, summed over latent dimensions."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def corrupt(x: torch.Tensor, kind: str, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Batched corruption of images in [0, 1] for denoising: gaussian, salt_pepper or mask."""
    if kind == "gaussian":
        noise = torch.randn(x.shape, generator=generator, device=x.device)
        return (x + strength * noise).clamp(0.0, 1.0)
    u = torch.rand(x.shape, generator=generator, device=x.device)
    if kind == "salt_pepper":
        out = x.clone()
        out[u < strength / 2] = 0.0
        out[(u >= strength / 2) & (u < strength)] = 1.0
        return out
    if kind == "mask":
        return x * (u >= strength)
    raise ValueError(f"unknown corruption {kind!r}")


class EncoderClassifier(nn.Module):
    """An autoencoder's encoder plus a classification head (`classifier`), for transfer.

    The head starts with batch norm over the code: codes have arbitrary scales, and a linear
    classifier learns much faster on standardised inputs (the StandardScaler of a linear probe).
    """

    def __init__(self, encoder: ConvEncoder, latent_dim: int, num_classes: int, hidden=(), dropout: float = 0.0):
        super().__init__()
        self.encoder = encoder
        layers: list[nn.Module] = [nn.BatchNorm1d(latent_dim)]
        size = latent_dim
        for units in hidden:
            layers += [nn.Linear(size, units), nn.ReLU()]
            layers += [nn.Dropout(dropout)] if dropout else []
            size = units
        layers.append(nn.Linear(size, num_classes))
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x)
        return self.classifier(z[0] if isinstance(z, tuple) else z)
