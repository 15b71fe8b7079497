"""One entry point for every classifier: `build_model(cfg, input_shape, num_classes)`.

Names the network, adapts it to the data (channels, classes), applies weights (ImageNet or an
adlab checkpoint) and freezing. The three transfer regimes are then just settings:
scratch (`weights: null`), fine-tune (`weights` set), frozen feature extractor (`freeze: true`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from adlab.config import ModelConfig
from adlab.errors import ConfigError
from adlab.models.checkpoints import LoadReport, load_matching, read_checkpoint


@dataclass
class BuiltModel:
    net: nn.Module
    head: str  # qualified name of the classification head: new on transfer, trainable when frozen
    load_report: LoadReport | None


def uses_imagenet(cfg: ModelConfig) -> bool:
    return cfg.weights is not None and cfg.weights.lower() == "imagenet"


CNN_CHANNELS = [32, 64, 128]
AE_CHANNELS = [32, 64]
ENCODER_ARCH = ("latent_dim", "conv_channels", "activation", "batch_norm", "conv_dropout")


def check_model_config(cfg: ModelConfig) -> None:
    """The model name exists and has the weights asked for (before anything else reads them)."""
    if cfg.name in ("ae", "vae", "dae", "encoder"):
        if uses_imagenet(cfg):
            raise ConfigError(f"model.weights: there are no ImageNet weights for '{cfg.name}'")
        return
    if cfg.name == "cnn":
        if uses_imagenet(cfg):
            raise ConfigError("model.weights: there are no ImageNet weights for 'cnn'; use a torchvision net "
                              "(resnet18, mobilenet_v2, ...) or a checkpoint path")
        blocks = len(cfg.setting("conv_channels", CNN_CHANNELS))
        if isinstance(cfg.convs_per_block, list) and len(cfg.convs_per_block) != blocks:
            raise ConfigError(f"model.convs_per_block: {len(cfg.convs_per_block)} counts for {blocks} blocks "
                              f"(model.conv_channels)")
        return
    from adlab.models.zoo import check_torchvision_name

    check_torchvision_name(cfg.name)


def weights_input(cfg: ModelConfig) -> tuple[int | None, tuple[list[float], list[float]] | None]:
    """Input channels and statistics the weights impose: ImageNet's (3 channels), or those recorded
    in the adlab checkpoint (read once here); (None, None) without weights."""
    check_model_config(cfg)
    if cfg.weights is None:
        return None, None
    if uses_imagenet(cfg):
        from adlab.models.zoo import imagenet_normalization

        return 3, imagenet_normalization(cfg.name)
    _, meta = read_checkpoint(cfg.weights)
    data = meta.get("data") or {}
    normalization = (data["mean"], data["std"]) if "mean" in data and "std" in data else None
    return data.get("channels"), normalization


def build_model(cfg: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> BuiltModel:
    in_channels, h, w = input_shape
    check_model_config(cfg)
    if cfg.name == "cnn":
        from adlab.models.cnn import VGGNet

        net = VGGNet(in_channels, num_classes, (h, w), cfg.setting("conv_channels", CNN_CHANNELS),
                     cfg.convs_per_block, cfg.activation, cfg.batch_norm, cfg.conv_dropout,
                     cfg.setting("hidden", [128]), cfg.setting("dropout", 0.3), cfg.global_pool,
                     cfg.pool_early)
        head = "classifier"
    elif cfg.name == "encoder":
        from adlab.models.autoencoders import EncoderClassifier

        encoder = build_autoencoder(cfg, input_shape).encoder
        net = EncoderClassifier(encoder, cfg.latent_dim, num_classes, cfg.setting("hidden", []),
                                cfg.setting("dropout", 0.0))
        head = "classifier"
    else:
        from adlab.models.zoo import build_torchvision

        net, head = build_torchvision(cfg.name, in_channels, num_classes, imagenet=uses_imagenet(cfg))
    report = None
    if cfg.weights is not None and not uses_imagenet(cfg):
        state, _ = read_checkpoint(cfg.weights)
        report = load_matching(net, state, cfg.weights, skip_prefixes=() if cfg.load_head else (head,))
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
    except RuntimeError as exc:
        c, h, w = input_shape
        reason = str(exc).strip().splitlines()[0]
        raise ConfigError(f"model {name} cannot take {c}x{h}x{w} images ({reason}); "
                          f"set data.image_size larger (e.g. 64 or 224)") from None
    finally:
        net.train(was_training)


def build_autoencoder(cfg: ModelConfig, input_shape: tuple[int, int, int]) -> nn.Module:
    """AE / DAE (same network; the DAE's corruption is part of its training) or VAE.
    `cfg.name: encoder` builds the autoencoder whose encoder it re-uses."""
    from adlab.models.autoencoders import AutoEncoder, VariationalAutoEncoder

    in_channels, h, w = input_shape
    cls = VariationalAutoEncoder if cfg.name == "vae" else AutoEncoder
    return cls(in_channels, (h, w), latent_dim=cfg.latent_dim, channels=cfg.setting("conv_channels", AE_CHANNELS),
               activation=cfg.activation, batch_norm=cfg.batch_norm, dropout=cfg.conv_dropout,
               denoising=cfg.name == "dae")


def resolve_encoder_architecture(cfg: ModelConfig) -> ModelConfig:
    """`model.name: encoder` with an autoencoder checkpoint takes that autoencoder's architecture, so
    the saved config alone rebuilds the classifier."""
    if cfg.name != "encoder" or cfg.weights is None:
        return cfg
    _, meta = read_checkpoint(cfg.weights)
    if meta.get("task") != "autoencode" or "config" not in meta:
        raise ConfigError(f"model.weights: {cfg.weights} is not an autoencoder run or checkpoint "
                          "(model.name: encoder re-uses an autoencoder's encoder)")
    source = meta["config"]["model"]
    arch = {key: source[key] for key in ENCODER_ARCH}
    arch["conv_channels"] = arch["conv_channels"] or AE_CHANNELS
    return cfg.model_copy(update=arch)
