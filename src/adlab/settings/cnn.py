"""model.cnn: the VGG-style classifier's settings (adlab.models.cnn.VGGNet)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator

from adlab.settings.base import Activation, Family


class CnnConfig(Family):
    """The VGG-style `cnn` classifier (model.name: cnn). Keys set to null take the network's own default; other
    models ignore this section."""

    key = "cnn"
    models = ("cnn",)
    summary = "the VGG-style cnn classifier (model.name: cnn)"

    conv_channels: list[int] | None = Field(
        None,
        description="widths of the convolution blocks (null: [32, 64, 128]), one block each of "
        "convs_per_block x (conv3x3, batch norm, activation) and a max-pool",
    )
    convs_per_block: int | list[Annotated[int, Field(ge=1)]] = Field(
        2, description="convolutions per block, one number or one per block ([1, 2, 2])"
    )
    activation: Activation = Field("relu", description="activation function")
    batch_norm: bool = Field(True, description="batch norm after each convolution")
    conv_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout2d after each convolution block")
    hidden: list[int] | None = Field(None, description="widths of the fully connected hidden layers (null: [128])")
    dropout: float | None = Field(
        None, ge=0.0, lt=1.0, description="dropout before each fully connected layer (null: 0.3)"
    )
    global_pool: bool = Field(False, description="global average pooling instead of flattening")
    pool_early: bool = Field(
        False, description="max-pool before each block's last batch norm and activation (airbench); cheaper on a CPU"
    )

    @field_validator("convs_per_block")
    @classmethod
    def _positive_counts(cls, value: Any) -> Any:
        if (value if isinstance(value, int) else min(value, default=0)) < 1:
            raise ValueError("needs at least one convolution per block")
        return value
