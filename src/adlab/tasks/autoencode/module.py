"""Autoencoding as a LightningModule: AE, VAE (+ beta, KL warm-up) and denoising AE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adlab.config import ModelConfig, TrainConfig
from adlab.models.autoencoders import corrupt, kl_divergence
from adlab.optim import build_optimization
from adlab.settings.autoencoder import AutoencoderConfig
from adlab.tasks.lightning.module import TaskModule


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Summed over the pixels of an image, averaged over images (the VAE's usual scale)."""
    recon = recon.float()  # under bf16 autocast the decoder's output is bf16: sum the loss in fp32
    per_pixel = (
        F.binary_cross_entropy(recon, target, reduction="none")
        if kind == "bce"
        else F.mse_loss(recon, target, reduction="none")
    )
    return per_pixel.flatten(1).sum(1).mean()


class AutoencodeModule(TaskModule):
    def __init__(self, model: nn.Module, model_cfg: ModelConfig, train_cfg: TrainConfig, meta: dict | None = None):
        super().__init__(model, train_cfg, meta)
        self.model_cfg = model_cfg

    def beta(self) -> float:
        """beta x min(1, epoch / warm-up epochs): the KL term fades in so the decoder learns first."""
        warmup = self.model_cfg.family(AutoencoderConfig).kl_warmup_epochs
        ramp = 1.0 if not warmup else min(1.0, (self.current_epoch + 1) / (warmup + 1))
        return self.model_cfg.family(AutoencoderConfig).beta * ramp

    def losses(self, x: torch.Tensor, noisy: bool, mse: bool = True) -> dict:
        """The loss and its parts; `mse`: also the per-pixel MSE (validation reports it, a training step does
        not need it)."""
        settings = self.model_cfg.family(AutoencoderConfig)
        source = corrupt(x, settings.noise, settings.noise_strength) if noisy else x
        out = self.model(source)
        recon = reconstruction_loss(out["recon"], x, settings.reconstruction_loss)
        result = {"recon": recon, "loss": recon}
        if mse:
            result["mse"] = F.mse_loss(out["recon"].float(), x)
        if "mu" in out:
            kl = kl_divergence(out["mu"], out["logvar"]).mean()
            result["kl"] = kl
            result["loss"] = recon + self.beta() * kl
        return result

    def training_step(self, batch, batch_idx):
        x = batch[0]
        parts = self.losses(x, noisy=bool(self.model.denoising), mse=False)  # denoising: the AutoEncoder's bool
        self.log("train_loss", parts["loss"], on_step=False, on_epoch=True, batch_size=len(x), sync_dist=True)
        return parts["loss"]

    def validation_step(self, batch, batch_idx):
        x = batch[0]
        parts = self.losses(x, noisy=False)
        self.log("val_loss", parts["loss"], on_epoch=True, batch_size=len(x), prog_bar=True, sync_dist=True)
        self.log("val_mse", parts["mse"], on_epoch=True, batch_size=len(x), prog_bar=True, sync_dist=True)
        if "kl" in parts:
            self.log("val_kl", parts["kl"], on_epoch=True, batch_size=len(x), sync_dist=True)

    def configure_optimizers(self):
        return build_optimization(self.model, self.cfg, None, self.trainer)


class TrainingLoss(nn.Module):
    """What `--plan` times for an autoencoder: in training, a step's loss as the module computes it (a VAE's
    summed binary cross-entropy and KL term cost more than its network's passes alone); in eval, the network."""

    def __init__(self, module: AutoencodeModule):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor):
        if not self.training:
            return self.module.model(x)
        return self.module.losses(x, noisy=bool(self.module.model.denoising), mse=False)["loss"]
