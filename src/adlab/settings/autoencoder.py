"""model.autoencoder: the autoencoders' settings (adlab.models.autoencoders), read by the `encoder` classifier too."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from adlab.settings.base import Activation, Family


class AutoencoderConfig(Family):
    """The autoencoders (model.name: ae, vae or dae; task autoencode) and the `encoder` classifier (model.name:
    encoder), which re-uses a trained autoencoder's encoder and takes its architecture from that checkpoint. Keys
    set to null take the network's own default; other models ignore this section."""

    key = "autoencoder"
    models = ("ae", "vae", "dae", "encoder")
    summary = "the autoencoders (ae, vae, dae) and the encoder classifier"

    conv_channels: list[int] | None = Field(
        None,
        description="widths of the convolution blocks (null: [32, 64]), one stride-2 block each, mirrored "
        "in the decoder",
    )
    latent_dim: int = Field(10, ge=1, description="size of the code")
    activation: Activation = Field("relu", description="activation function")
    batch_norm: bool = Field(True, description="batch norm after each convolution")
    conv_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout2d after each convolution block")
    hidden: list[int] | None = Field(
        None, description="encoder: widths of the head's fully connected hidden layers (null: [])"
    )
    dropout: float | None = Field(
        None,
        ge=0.0,
        lt=1.0,
        description="encoder: dropout before each of the head's fully connected layers (null: 0.0)",
    )
    reconstruction_loss: Literal["bce", "mse"] = Field(
        "bce", description="reconstruction loss, summed over pixels and averaged over images"
    )
    beta: float = Field(1.0, ge=0.0, description="vae: weight of the KL term")
    kl_warmup_epochs: int = Field(0, ge=0, description="vae: epochs over which beta ramps up linearly from 0")
    noise: Literal["gaussian", "salt_pepper", "mask"] = Field(
        "gaussian", description="dae: how the input images are corrupted"
    )
    noise_strength: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="dae: gaussian noise std, or the fraction of corrupted pixels (salt_pepper, mask)",
    )
    tsne_points: int = Field(3000, ge=10, description="test codes drawn in the t-SNE map")
