"""`generate(run)`: new images from a trained autoencoder's latent space."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from adlab import io, ownership
from adlab.config import Config
from adlab.data.datamodule import DataInfo
from adlab.errors import AdlabError
from adlab.models.checkpoints import resolve_checkpoint
from adlab.settings.autoencoder import AutoencoderConfig
from adlab.tasks.lightning.loading import load_network


def load_autoencoder(run: str | Path) -> tuple[torch.nn.Module, DataInfo, Config]:
    from adlab.models.factory import build_autoencoder

    model, info, config, _ = load_network(
        run, "autoencode", "autoencoder", lambda config, info: build_autoencoder(config.model, info.input_shape)
    )
    return model, info, config


MAX_SAMPLES = 4096


def generate(
    run: str | Path,
    n: int = 64,
    out: str | Path = "samples.png",
    seed: int = 0,
    verbose: bool = True,
    overwrite: bool = False,
) -> Path:
    """`n` samples as one PNG grid at `out`; an existing file is replaced only with `overwrite`
    and only if it is an image adlab wrote."""
    from adlab.tasks.autoencode.figures import image_grid
    from adlab.tasks.autoencode.outputs import sample_images

    if not 1 <= n <= MAX_SAMPLES:
        raise AdlabError(f"--n: need 1 to {MAX_SAMPLES} images, not {n}")
    if not 0 <= seed <= 2**32 - 1:
        raise AdlabError(f"--seed: need 0 to {2**32 - 1}, not {seed}")
    out = ownership.canonical(out)  # `missing/../user.png` is the user's file once `missing` is made
    if out.suffix.lower() != ".png":
        raise AdlabError(f"{out}: --out must name a .png file")
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise AdlabError(
                f"{out}: already exists (use --overwrite to replace an image adlab made, or another --out)"
            )
        if out.is_symlink() or not out.is_file() or not io.made_by_adlab(out):
            raise AdlabError(f"{out}: not an image adlab made; refusing to replace it (choose another --out)")
    model, _, config = load_autoencoder(run)
    latents = Path(run) / "latents.npz" if Path(run).is_dir() else resolve_checkpoint(run).parent.parent / "latents.npz"
    latent_dim = config.model.family(AutoencoderConfig).latent_dim
    if model.variational:
        train_z = np.zeros((2, latent_dim), dtype=np.float32)  # only its width is used
    elif latents.is_file():
        try:
            with np.load(latents) as f:  # allow_pickle stays False: arrays only
                train_z = np.asarray(f["train_z"], dtype=np.float32)
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise AdlabError(f"{latents}: not readable latent codes ({type(exc).__name__})") from None
        if train_z.ndim != 2 or train_z.shape[1] != latent_dim or len(train_z) < 2 or not np.isfinite(train_z).all():
            raise AdlabError(f"{latents}: train_z should be finite codes [N >= 2, {latent_dim}]")
    else:
        raise AdlabError(f"{latents}: not found; AE/DAE samples come from a Gaussian fitted to the train codes")
    images = sample_images(model, config.model, train_z, n, seed)
    image_grid(images, out, f"{n} samples from {config.model.name.upper()}")
    if verbose:
        print(f"wrote {n} samples to {out}")
    return out
