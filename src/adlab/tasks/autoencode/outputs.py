"""Evaluating a trained autoencoder: reconstruction metrics, latent probes, latents.npz, figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adlab import io
from adlab.formatting import figure_text
from adlab.models.autoencoders import corrupt, kl_divergence
from adlab.settings.autoencoder import AutoencoderConfig
from adlab.tasks.autoencode import figures as figs
from adlab.tasks.autoencode.latent import knn_accuracy, linear_probe_predictions, pca_2d, subsample, tsne_2d

CORRUPTION_SEED = 1234  # the same corrupted test set every time


@torch.inference_mode()
def _batched(fn, images: torch.Tensor, transform: nn.Module, batch_size: int = 1024) -> list:
    return [fn(transform(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]


@torch.inference_mode()
def encode(model: nn.Module, transform: nn.Module, images: torch.Tensor) -> torch.Tensor:
    model.eval()
    return torch.cat(_batched(model.encode, images, transform))


@torch.inference_mode()
def reconstruction_metrics(
    model: nn.Module, model_cfg, transform: nn.Module, images: torch.Tensor
) -> tuple[dict, np.ndarray]:
    """Per-pixel MSE and BCE on clean inputs; a VAE adds KL and ELBO (nats per image); a DAE adds
    the MSE of reconstructing clean images from corrupted ones. Also each image's own MSE (the
    report's paired test between variants on the same test images)."""
    model.eval()
    sums = {"mse": 0.0, "bce": 0.0, "kl": 0.0, "bce_image": 0.0, "mse_corrupted": 0.0}
    generator = torch.Generator().manual_seed(CORRUPTION_SEED)
    settings = model_cfg.family(AutoencoderConfig)
    n_pixels = 0
    per_image = []
    for i in range(0, len(images), 1024):
        x = transform(images[i : i + 1024])
        out = model(x)
        recon = out["recon"]
        squared = F.mse_loss(recon, x, reduction="none").flatten(1)
        per_image.append(squared.mean(dim=1))
        sums["mse"] += squared.sum().item()
        bce = F.binary_cross_entropy(recon, x, reduction="sum").item()
        sums["bce"] += bce
        n_pixels += x.numel()
        if "mu" in out:
            sums["kl"] += kl_divergence(out["mu"], out["logvar"]).sum().item()
        if model.denoising:
            noisy = corrupt(x, settings.noise, settings.noise_strength, generator)
            sums["mse_corrupted"] += F.mse_loss(model(noisy)["recon"], x, reduction="sum").item()
    n = len(images)
    metrics = {"test_mse": sums["mse"] / n_pixels, "test_bce": sums["bce"] / n_pixels}
    if model.variational:
        metrics["test_kl"] = sums["kl"] / n
        metrics["test_elbo"] = -(sums["bce"] + sums["kl"]) / n
    if model.denoising:
        metrics["test_mse_corrupted"] = sums["mse_corrupted"] / n_pixels
    return metrics, torch.cat(per_image).numpy()


def write_autoencoder_result(
    path: Path, model: nn.Module, model_cfg, data, extra: dict | None = None, seed: int = 0
) -> dict:
    """All result files of an autoencoder run; metrics.json last."""
    path = Path(path)
    transform = data.transform
    names = data.info.class_names
    metrics, image_mse = reconstruction_metrics(model, model_cfg, transform, data.test_x)
    train_z = encode(model, transform, data.train_x).numpy()
    test_z = encode(model, transform, data.test_x).numpy()
    train_y, test_y = data.train_y.numpy(), data.test_y.numpy()
    metrics["latent_knn_accuracy"] = knn_accuracy(train_z, train_y, test_z, test_y)
    probe = linear_probe_predictions(train_z, train_y, test_z)
    metrics["latent_linear_accuracy"] = float(np.mean(probe == test_y))
    metrics.update({"latent_dim": int(train_z.shape[1]), "class_names": names, "num_test": int(len(test_y))})
    metrics.update(extra or {})
    # one row per test image: its class, the linear probe's answer and its reconstruction error
    io.write_csv(
        path / "predictions.csv",
        ["index", "y_true", "y_pred", "mse"],
        ([i, int(t), int(p), f"{e:.6g}"] for i, (t, p, e) in enumerate(zip(test_y, probe, image_mse, strict=True))),
    )
    with io.atomic_path(path / "latents.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, train_z=train_z, train_y=train_y, test_z=test_z, test_y=test_y)
    write_figures(path / "figures", model, model_cfg, transform, data.test_x, data.test_y, train_z, test_z, names, seed)
    io.write_json(path / "metrics.json", metrics)
    return metrics


@torch.inference_mode()
def write_figures(fig_dir: Path, model, model_cfg, transform, test_x, test_y, train_z, test_z, names, seed=0) -> None:
    names = [figure_text(name) for name in names]  # drawn as written, never mathtext ('f$^$')
    model.eval()
    test_y_np = test_y.numpy()
    # one test image per class (then more) so every class shows up
    picks = [int(np.flatnonzero(test_y_np == k)[0]) for k in range(len(names)) if (test_y_np == k).any()]
    picks = (picks + [i for i in range(len(test_y_np)) if i not in picks])[:10]
    x = transform(test_x[picks])
    if model.denoising:
        noisy = corrupt(
            x,
            model_cfg.family(AutoencoderConfig).noise,
            model_cfg.family(AutoencoderConfig).noise_strength,
            torch.Generator().manual_seed(CORRUPTION_SEED),
        )
        rows = [("corrupted", noisy), ("output", model(noisy)["recon"]), ("clean", x)]
    else:
        rows = [("input", x), ("output", model(x)["recon"])]
    figs.image_rows(rows, fig_dir / "reconstructions.png", f"{model_cfg.name.upper()} reconstructions (test)")

    keep = subsample(len(test_z), model_cfg.family(AutoencoderConfig).tsne_points, seed)
    points, ratio = pca_2d(test_z)
    figs.latent_scatter(
        points,
        test_y_np,
        names,
        fig_dir / "latent_pca.png",
        f"Latent space, PCA ({ratio[:2].sum():.0%} of variance)",
        ("PC 1", "PC 2"),
    )
    figs.latent_scatter(
        tsne_2d(test_z[keep], seed),
        test_y_np[keep],
        names,
        fig_dir / "latent_tsne.png",
        f"Latent space, t-SNE ({len(keep)} test images)",
        ("t-SNE 1", "t-SNE 2"),
    )

    figs.image_grid(
        sample_images(model, model_cfg, train_z, 64, seed), fig_dir / "samples.png", "New samples from the latent space"
    )
    figs.image_rows(
        interpolations(model, transform, test_x, test_y_np, names),
        fig_dir / "interpolation.png",
        "Interpolation between test images in the latent space",
    )
    if train_z.shape[1] == 2:
        images, z1, z2 = manifold(model, model_cfg, train_z)
        figs.manifold_map(images, z1, z2, fig_dir / "manifold.png", "Decoded 2-D latent manifold")


@torch.inference_mode()
def sample_images(model, model_cfg, train_z: np.ndarray, n: int, seed: int = 0) -> torch.Tensor:
    """VAE: decode z ~ N(0, I). AE/DAE: decode draws from a Gaussian fitted to the train codes."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    dim = train_z.shape[1]
    if model.variational:
        z = torch.randn(n, dim, generator=g)
    else:
        mean = torch.from_numpy(train_z.mean(0)).float()
        cov = torch.from_numpy(np.cov(train_z, rowvar=False).reshape(dim, dim)).float()
        chol = torch.linalg.cholesky(cov + 1e-5 * torch.eye(dim))
        z = mean + torch.randn(n, dim, generator=g) @ chol.T
    return model.decode(z)


@torch.inference_mode()
def interpolations(
    model, transform, test_x, test_y: np.ndarray, class_names: list[str], pairs: int = 5, steps: int = 10
) -> list:
    """Rows decoding straight lines in latent space between test images of different classes."""
    model.eval()
    classes = np.unique(test_y)
    rows = []
    for r in range(pairs):
        a_class, b_class = classes[r % len(classes)], classes[(r + 1 + r // len(classes)) % len(classes)]
        a = int(np.flatnonzero(test_y == a_class)[r // len(classes)])
        b = int(np.flatnonzero(test_y == b_class)[-(1 + r // len(classes))])
        z = model.encode(transform(test_x[[a, b]]))
        t = torch.linspace(0, 1, steps)[:, None]
        rows.append((f"{class_names[a_class]} to\n{class_names[b_class]}", model.decode((1 - t) * z[0] + t * z[1])))
    return rows


@torch.inference_mode()
def manifold(model, model_cfg, train_z: np.ndarray, size: int = 15) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decoded grid over a 2-D latent space (VAE: Gaussian quantiles; AE: the codes' 5-95% range): the images row
    by row from the top, the z1 value of each column and the z2 value of each row."""
    model.eval()
    if model.variational:
        from scipy.stats import norm

        axes = [torch.from_numpy(norm.ppf(np.linspace(0.05, 0.95, size))).float()] * 2
    else:
        lo, hi = np.percentile(train_z, 5, axis=0), np.percentile(train_z, 95, axis=0)
        axes = [torch.linspace(float(lo[d]), float(hi[d]), size) for d in range(2)]
    grid_y, grid_x = torch.meshgrid(axes[1].flip(0), axes[0], indexing="ij")
    return model.decode(torch.stack([grid_x.flatten(), grid_y.flatten()], 1)), axes[0], axes[1].flip(0)
