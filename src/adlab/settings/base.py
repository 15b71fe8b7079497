"""The base every config section shares, and what a model family section declares about itself."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # strict: YAML already gives numbers, booleans and lists their own types; coercing hides
    # mistakes (`epochs: true` would train one epoch). Non-finite floats are never a setting.
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, protected_namespaces=(), strict=True, allow_inf_nan=False
    )


class Family(Section):
    """A model family's section (model.<key>): the settings of the adlab networks that read it."""

    key: ClassVar[str]  # its name under model
    models: ClassVar[tuple[str, ...]]  # the model.name values that read it
    summary: ClassVar[str]  # its line in the config reference

    def setting(self, key: str, default):
        """A model setting, or the model's own default where the config leaves it null."""
        value = getattr(self, key)
        return default if value is None else value


Activation = Literal["relu", "leaky_relu", "gelu", "silu", "elu", "tanh"]
