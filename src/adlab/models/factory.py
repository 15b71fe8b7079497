"""One entry point for every classifier: `build_model(cfg, input_shape, num_classes)`.

Names the network, adapts it to the data (channels, classes), applies weights (ImageNet or an
adlab checkpoint) and freezing. The three transfer regimes are then just settings:
scratch (`weights: null`), fine-tune (`weights` set), frozen feature extractor (`freeze: true`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from adlab.config import ModelConfig, migrate_config
from adlab.errors import ConfigError
from adlab.models.autoencoders import AutoEncoder, EncoderClassifier, VariationalAutoEncoder
from adlab.models.checkpoints import LoadReport, checkpoint_input, load_matching, read_checkpoint, read_weights
from adlab.models.cnn import VGGNet
from adlab.models.timm_zoo import build_timm, check_timm_name, is_timm_name, timm_input
from adlab.models.zoo import build_torchvision, check_torchvision_name, imagenet_normalization
from adlab.settings.autoencoder import AutoencoderConfig
from adlab.settings.cnn import CnnConfig


@dataclass
class BuiltModel:
    net: nn.Module
    head: str  # qualified name of the classification head: new on transfer, trainable when frozen
    load_report: LoadReport | None


def uses_imagenet(cfg: ModelConfig) -> bool:
    return cfg.weights is not None and cfg.weights.lower() == "imagenet"


ENCODER_ARCH = ("latent_dim", "conv_channels", "activation", "batch_norm", "conv_dropout")
# model.cnn.* / model.autoencoder.* settings each adlab network takes, by its own parameter name (a null
# setting: the network's own default, stated once, in its signature)
CNN_SETTINGS = {
    "conv_channels": "conv_channels",
    "convs_per_block": "convs_per_block",
    "activation": "activation",
    "batch_norm": "batch_norm",
    "conv_dropout": "conv_dropout",
    "hidden": "hidden",
    "dropout": "dropout",
    "global_pool": "global_pool",
    "pool_early": "pool_early",
}
AE_SETTINGS = {
    "latent_dim": "latent_dim",
    "conv_channels": "channels",
    "activation": "activation",
    "batch_norm": "batch_norm",
    "conv_dropout": "dropout",
}
HEAD_SETTINGS = {"hidden": "hidden", "dropout": "dropout"}


def settings(cfg: CnnConfig | AutoencoderConfig, names: dict[str, str]) -> dict:
    """Keyword arguments from a model family's settings; null ones are left to the network's defaults."""
    return {param: getattr(cfg, key) for key, param in names.items() if getattr(cfg, key) is not None}


def default(cls: type, param: str):
    """A network's own default for one of its parameters."""

    return inspect.signature(cls).parameters[param].default


def _cnn(cfg: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> tuple[nn.Module, str]:

    c, h, w = input_shape
    return VGGNet(
        in_channels=c, num_classes=num_classes, image_hw=(h, w), **settings(cfg.family(CnnConfig), CNN_SETTINGS)
    ), "classifier"


def _encoder(cfg: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> tuple[nn.Module, str]:

    encoder = build_autoencoder(cfg, input_shape).encoder
    return EncoderClassifier(
        encoder=encoder,
        latent_dim=cfg.family(AutoencoderConfig).latent_dim,
        num_classes=num_classes,
        **settings(cfg.family(AutoencoderConfig), HEAD_SETTINGS),
    ), "classifier"


# adlab's own classifiers by model.name; timm/<name> is a timm net (models/timm_zoo.py), any other name a
# torchvision net (models/zoo.py)
CLASSIFIERS = {"cnn": _cnn, "encoder": _encoder}


def check_model_config(cfg: ModelConfig) -> None:
    """The model name exists and has the weights asked for (before anything else reads them)."""
    if cfg.name in ("ae", "vae", "dae", "encoder"):
        if uses_imagenet(cfg):
            raise ConfigError(f"model.weights: there are no ImageNet weights for '{cfg.name}'")
        return
    if cfg.name == "cnn":
        if uses_imagenet(cfg):
            raise ConfigError(
                "model.weights: there are no ImageNet weights for 'cnn'; use a torchvision net "
                "(resnet18, mobilenet_v2, ...), a timm net (timm/resnet18, ...) or a checkpoint path"
            )

        cnn = cfg.family(CnnConfig)
        blocks = len(cnn.setting("conv_channels", default(VGGNet, "conv_channels")))
        if isinstance(cnn.convs_per_block, list) and len(cnn.convs_per_block) != blocks:
            raise ConfigError(
                f"model.cnn.convs_per_block: {len(cnn.convs_per_block)} counts for {blocks} "
                f"blocks (model.cnn.conv_channels)"
            )
        return
    if is_timm_name(cfg.name):
        check_timm_name(cfg.name, imagenet=uses_imagenet(cfg))
        return
    check_torchvision_name(cfg.name)


def weights_input(cfg: ModelConfig) -> tuple[int | None, tuple[list[float], list[float]] | None]:
    """Input channels and statistics the weights impose: ImageNet's (3 channels), or those recorded
    in the adlab checkpoint (read once here); (None, None) without weights."""
    check_model_config(cfg)
    if cfg.weights is None:
        return None, None
    if uses_imagenet(cfg):
        return timm_input(cfg.name) if is_timm_name(cfg.name) else (3, imagenet_normalization(cfg.name))
    return checkpoint_input(cfg.weights)


def build_model(cfg: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> BuiltModel:
    in_channels = input_shape[0]
    check_model_config(cfg)
    if cfg.name in CLASSIFIERS:
        net, head = CLASSIFIERS[cfg.name](cfg, input_shape, num_classes)
    elif is_timm_name(cfg.name):
        net, head = build_timm(cfg.name, input_shape, num_classes, imagenet=uses_imagenet(cfg))
    else:
        net, head = build_torchvision(cfg.name, in_channels, num_classes, imagenet=uses_imagenet(cfg))
    report = None
    if cfg.weights is not None and not uses_imagenet(cfg):
        state, _, source = read_weights(cfg.weights, with_sha256=True)  # provenance: the file and its sha256
        report = load_matching(net, state, cfg.weights, skip_prefixes=() if cfg.load_head else (head,))
        report.file = source
    check_input(net, cfg.name, input_shape)
    if cfg.freeze:
        freeze_all_but(net, head)
    return BuiltModel(net, head, report)


def freeze_all_but(net: nn.Module, head: str) -> None:
    for name, param in net.named_parameters():
        param.requires_grad = name == head or name.startswith(head + ".")


def check_input(net: nn.Module, name: str, input_shape: tuple[int, int, int]) -> None:
    """Fail early, with a hint, if the network cannot take images of this size."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(torch.zeros(1, *input_shape))
    except (RuntimeError, AssertionError) as exc:  # timm's networks assert what they take
        c, h, w = input_shape
        reason = str(exc).strip().splitlines()[0]
        raise ConfigError(
            f"model {name} cannot take {c}x{h}x{w} images ({reason}); set data.image_size larger (e.g. 64 or 224)"
        ) from None
    finally:
        net.train(was_training)


def build_autoencoder(cfg: ModelConfig, input_shape: tuple[int, int, int]) -> AutoEncoder:
    """AE / DAE (same network; the DAE's corruption is part of its training) or VAE.
    `cfg.name: encoder` builds the autoencoder whose encoder it re-uses."""

    in_channels, h, w = input_shape
    cls = VariationalAutoEncoder if cfg.name == "vae" else AutoEncoder
    return cls(
        in_channels=in_channels,
        image_hw=(h, w),
        denoising=cfg.name == "dae",
        **settings(cfg.family(AutoencoderConfig), AE_SETTINGS),
    )


def resolve_encoder_architecture(cfg: ModelConfig) -> ModelConfig:
    """`model.name: encoder` with an autoencoder checkpoint takes that autoencoder's architecture, so
    the saved config alone rebuilds the classifier."""
    if cfg.name != "encoder" or cfg.weights is None:
        return cfg
    _, meta = read_checkpoint(cfg.weights)
    if meta.get("task") != "autoencode" or "config" not in meta:
        raise ConfigError(
            f"model.weights: {cfg.weights} is not an autoencoder run or checkpoint "
            "(model.name: encoder re-uses an autoencoder's encoder)"
        )
    source = migrate_config(meta["config"], str(cfg.weights), notices=False)["model"]["autoencoder"]
    arch = {key: source[key] for key in ENCODER_ARCH}

    arch["conv_channels"] = arch["conv_channels"] or list(default(AutoEncoder, "channels"))
    return cfg.model_copy(update={"autoencoder": cfg.family(AutoencoderConfig).model_copy(update=arch)})
