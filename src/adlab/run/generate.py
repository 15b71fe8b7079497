"""`generate(run)`: new images from a trained autoencoder's latent space."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from adlab.config import Config, validate_config
from adlab.data.datamodule import DataInfo
from adlab.errors import AdlabError, CheckpointError
from adlab.models.checkpoints import read_checkpoint, resolve_checkpoint


def load_autoencoder(run: str | Path) -> tuple[torch.nn.Module, DataInfo, Config]:
    from adlab.models.factory import build_autoencoder

    path = resolve_checkpoint(run)
    state, meta = read_checkpoint(path)
    if meta.get("task") != "autoencode":
        raise CheckpointError(f"{path}: not an adlab autoencoder checkpoint")
    config = validate_config(meta["config"], str(path))
    info = DataInfo(**meta["data"])
    model = build_autoencoder(config.model, info.input_shape)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit {config.model.name} ({str(exc).splitlines()[0]})") from None
    return model.eval(), info, config


def generate(run: str | Path, n: int = 64, out: str | Path = "samples.png", seed: int = 0,
             verbose: bool = True) -> Path:
    from adlab.figures_autoencoder import image_grid
    from adlab.run.autoencode import sample_images

    if n < 1:
        raise AdlabError("--n must be at least 1")
    model, _, config = load_autoencoder(run)
    latents = Path(run) / "latents.npz" if Path(run).is_dir() else resolve_checkpoint(run).parent.parent / "latents.npz"
    if config.model.name == "vae":
        train_z = np.zeros((2, config.model.latent_dim), dtype=np.float32)  # only its width is used
    elif latents.is_file():
        with np.load(latents) as f:
            train_z = f["train_z"]
    else:
        raise AdlabError(f"{latents}: not found; AE/DAE samples come from a Gaussian fitted to the train codes")
    images = sample_images(model, config.model, train_z, n, seed)
    out = Path(out)
    image_grid(images, out, f"{n} samples from {config.model.name.upper()}")
    if verbose:
        print(f"wrote {n} samples to {out}")
    return out
