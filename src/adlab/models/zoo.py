"""torchvision classifiers by name, adapted to any number of input channels and classes."""

from __future__ import annotations

import difflib

import torch
from torch import nn

from adlab.errors import CheckpointError, ConfigError


def torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def check_torchvision_name(name: str) -> None:
    names = torchvision_names()
    if name not in names:
        close = difflib.get_close_matches(name, names + ["cnn"], n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(f"model.name: unknown model {name!r} ({hint}valid: cnn or a torchvision classifier "
                          f"such as resnet18, mobilenet_v2, alexnet, vgg11_bn, efficientnet_b0)")


def build_torchvision(name: str, in_channels: int, num_classes: int, imagenet: bool) -> tuple[nn.Module, str]:
    """(model, qualified name of its new head). With `imagenet`, loads torchvision's DEFAULT weights."""
    import torchvision

    check_torchvision_name(name)
    if imagenet:
        weights = torchvision.models.get_model_weights(name).DEFAULT
        model = torchvision.models.get_model(name)
        model.load_state_dict(_fetch_imagenet_state(weights, name))
    else:
        kwargs = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
        model = torchvision.models.get_model(name, weights=None, **kwargs)
    _drop_aux_heads(model)
    adapt_input_conv(model, in_channels)
    head = replace_head(model, num_classes)
    return model, head


def imagenet_normalization(name: str) -> tuple[list[float], list[float]]:
    import torchvision

    transforms = torchvision.models.get_model_weights(name).DEFAULT.transforms()
    return list(transforms.mean), list(transforms.std)


def _fetch_imagenet_state(weights, name: str) -> dict:
    """torch.hub's cache first (drop the file there to work offline), then the download."""
    from pathlib import Path

    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        return weights.get_state_dict(progress=False, check_hash=False)
    except Exception as exc:  # URLError, HTTPError, OSError: no internet or a broken file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"ImageNet weights for {name} could not be downloaded from {weights.url} ({reason}); "
                              f"without internet, put that file at {cached}") from None


def _drop_aux_heads(model: nn.Module) -> None:
    # GoogLeNet / Inception return extra logits in training mode; adlab trains the main head only.
    if hasattr(model, "aux_logits"):
        model.aux_logits = False
        for attr in ("aux1", "aux2", "AuxLogits"):
            if hasattr(model, attr):
                setattr(model, attr, None)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def adapt_input_conv(model: nn.Module, in_channels: int) -> None:
    """Give the first convolution `in_channels` inputs; pretrained filters are summed (grey) or
    tiled and rescaled (more channels), as timm does, so their responses keep their scale."""
    name, conv = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), (None, None))
    if conv is None or conv.in_channels == in_channels:
        return
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode)
    with torch.no_grad():
        old = conv.weight
        if in_channels == 1:
            new.weight.copy_(old.sum(dim=1, keepdim=True))
        else:
            reps = -(-in_channels // old.shape[1])
            new.weight.copy_(old.repeat(1, reps, 1, 1)[:, :in_channels] * (old.shape[1] / in_channels))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    _set_submodule(model, name, new)


def replace_head(model: nn.Module, num_classes: int) -> str:
    """Swap the last Linear layer for a fresh one with `num_classes` outputs; return its name."""
    name, linear = None, None
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear):
            name, linear = n, m
    if linear is None:
        raise ConfigError(f"model.name: {type(model).__name__} has no linear classifier head to adapt")
    _set_submodule(model, name, nn.Linear(linear.in_features, num_classes, bias=linear.bias is not None))
    return name
