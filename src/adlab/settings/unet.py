"""model.unet: the U-Net's settings (adlab.models.segmentation.UNet)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from adlab.settings.base import Activation, Family


class UnetConfig(Family):
    """adlab's U-Net (model.name: unet; task segment). Keys set to null take the network's own default; other
    models ignore this section."""

    key = "unet"
    models = ("unet",)
    summary = "adlab's U-Net (model.name: unet; task segment)"

    channels: list[Annotated[int, Field(ge=1)]] | None = Field(
        None,
        min_length=1,
        description="widths per level (null: [16, 32, 64, 128]), each two conv3x3 blocks; the encoder max-pools "
        "between levels, the decoder mirrors it with skip connections, the last level is the bottleneck",
    )
    activation: Activation = Field("relu", description="activation function")
    batch_norm: bool = Field(True, description="batch norm after each convolution")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout2d in the bottleneck")
    upsample: Literal["bilinear", "transposed"] = Field(
        "bilinear",
        description="decoder upsampling: bilinear then a 1x1 convolution (cheaper on a CPU), or a learned "
        "2x2 transposed convolution",
    )
