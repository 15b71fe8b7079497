"""Segmentation networks by name (task segment): adlab's U-Net and three torchvision nets.

Every one returns logits [N, K, H, W] at the input's size. The torchvision nets have the classifiers'
transfer regimes: from scratch (`weights: null`), an ImageNet backbone with a new segmentation head
(`weights: imagenet`), torchvision's whole COCO-trained net with new class layers (`weights: coco_voc`),
and `freeze: true` on top of either. Their files are found, read and recorded as models/zoo.py does
for the classifiers' ImageNet weights.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from adlab.errors import CheckpointError, ConfigError
from adlab.models.cnn import ACTIVATIONS
from adlab.models.zoo import (
    ImagenetWeights,
    _build_with_state,
    _set_submodule,
    adapt_input_conv,
    torchvision_file,
)
from adlab.settings.unet import UnetConfig


def _double_conv(cin: int, cout: int, act: type[nn.Module], batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in (cin, cout):
        layers.append(nn.Conv2d(c, cout, 3, padding=1, bias=not batch_norm))
        layers += [nn.BatchNorm2d(cout)] if batch_norm else []
        layers.append(act())
    return nn.Sequential(*layers)


def _to_size(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Pad (or crop: negative padding) an upsampled map to its skip's height and width."""
    dh, dw = like.shape[-2] - x.shape[-2], like.shape[-1] - x.shape[-1]
    if dh == dw == 0:
        return x
    return F.pad(x, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])


class UNet(nn.Module):
    """U-Net: one double conv3x3 block per level of `channels`, max-pooled between levels; the decoder
    upsamples, concatenates the encoder's map of the same level and fuses them with another double
    conv3x3; a 1x1 convolution (`head`) gives the class logits.

    Any height and width: pooling rounds up (a 1-pixel map stays 1 pixel), and each upsampled map is
    cropped or padded to its skip's size, so the logits have the input's size.

    `upsample`: "bilinear" (then a 1x1 convolution to the level's width: cheaper on a CPU) or
    "transposed" (a learned 2x2 transposed convolution, as in the paper). `dropout`: Dropout2d on
    the bottleneck, the widest and coarsest map.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels=(16, 32, 64, 128),
        activation: str = "relu",
        batch_norm: bool = True,
        dropout: float = 0.0,
        upsample: str = "bilinear",
    ):
        super().__init__()
        if not channels:
            raise ValueError("UNet needs at least one level (channels)")
        act = ACTIVATIONS[activation]
        self.down = nn.ModuleList()
        c = in_channels
        for width in channels:
            self.down.append(_double_conv(c, width, act, batch_norm))
            c = width
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.dropout = nn.Dropout2d(dropout) if dropout else nn.Identity()
        self.up = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for width in reversed(list(channels)[:-1]):
            if upsample == "bilinear":
                self.up.append(
                    nn.Sequential(
                        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), nn.Conv2d(c, width, 1)
                    )
                )
            elif upsample == "transposed":
                self.up.append(nn.ConvTranspose2d(c, width, 2, stride=2))
            else:
                raise ValueError(f"UNet upsample: {upsample!r} is not bilinear or transposed")
            self.fuse.append(_double_conv(2 * width, width, act, batch_norm))
            c = width
        self.head = nn.Conv2d(c, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, block in enumerate(self.down):
            x = block(self.pool(x) if level else x)
            skips.append(x)
        x = self.dropout(skips.pop())
        for up, fuse in zip(self.up, self.fuse, strict=True):
            skip = skips.pop()
            x = fuse(torch.cat([skip, _to_size(up(x), skip)], dim=1))
        return self.head(x)


class TorchvisionSegmenter(nn.Module):
    """A torchvision segmentation net whose forward returns its logits tensor, not {'out': ...}: the
    loss, metrics and predictions take the same tensor whichever network made it."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["out"]


@dataclass(frozen=True)
class _Net:
    backbone: str  # the torchvision classifier whose ImageNet weights start the backbone
    features: str  # where the segmentation backbone's layers sit in that classifier ("": the classifier itself)
    class_convs: tuple[str, ...]  # under the net's `classifier`: the convolutions with one output per class


SEGMENTATION_NETS = {
    "lraspp_mobilenet_v3_large": _Net("mobilenet_v3_large", "features", ("low_classifier", "high_classifier")),
    "deeplabv3_mobilenet_v3_large": _Net("mobilenet_v3_large", "features", ("4",)),
    "fcn_resnet50": _Net("resnet50", "", ("4",)),
}
SEGMENTATION_NAMES = ("unet", *SEGMENTATION_NETS)
REGIMES = {"imagenet": "ImageNet", "coco_voc": "COCO-with-VOC-labels"}  # model.weights by name -> said as
HEAD = "net.classifier"  # a torchvision net's segmentation head, under TorchvisionSegmenter


@dataclass
class SegmenterBuilt:
    net: nn.Module  # forward: logits [N, K, H, W]
    head: str  # qualified name of the segmentation head: the part that trains with freeze
    weights: dict | None  # which file the weights came from (its sha256, torchvision's enum); None otherwise
    line: str | None = None  # what the run says once about those weights


def check_segmenter_name(name: str) -> None:
    if name not in SEGMENTATION_NAMES:
        close = difflib.get_close_matches(name, SEGMENTATION_NAMES, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(
            f"model.name: unknown segmentation model {name!r} ({hint}valid: {', '.join(SEGMENTATION_NAMES)})"
        )


def weights_regime(weights: str | None) -> str | None:
    """'imagenet' or 'coco_voc' (any case); None for no weights or a checkpoint path (the caller's)."""
    if weights is not None and weights.lower() in REGIMES:
        return weights.lower()
    return None


def check_segmenter(name: str, weights: str | None) -> str | None:
    """The name exists and has the weights asked for; returns their regime (see weights_regime)."""
    check_segmenter_name(name)
    regime = weights_regime(weights)
    if name == "unet" and regime is not None:
        raise ConfigError(
            f"model.weights: there are no {REGIMES[regime]} weights for 'unet'; use a torchvision segmentation "
            f"net ({', '.join(SEGMENTATION_NETS)}) or a checkpoint path"
        )
    return regime


def segmenter_head(name: str) -> str:
    """Qualified name of the part `freeze: true` leaves trainable: the U-Net's 1x1 `head`, a torchvision
    net's whole segmentation head (new with ImageNet weights, so it must train)."""
    check_segmenter_name(name)
    return "head" if name == "unet" else HEAD


def freeze_backbone(net: nn.Module, head: str) -> None:
    """Every parameter but the head's stops training (requires_grad False)."""
    for name, param in net.named_parameters():
        param.requires_grad = name == head or name.startswith(head + ".")


def segmentation_normalization(name: str, weights: str | None) -> tuple[list[float], list[float]] | None:
    """(mean, std) the weights were trained with (ImageNet's for imagenet and coco_voc); None without
    them (a checkpoint path: the caller reads its own)."""
    regime = check_segmenter(name, weights)
    if regime is None:
        return None
    transforms = _weights_enum(name, regime).transforms()
    return list(transforms.mean), list(transforms.std)


def build_segmenter(
    name: str, in_channels: int, num_classes: int, weights: str | None, unet: UnetConfig | None = None
) -> SegmenterBuilt:
    """The network `name` for `in_channels` and `num_classes`. `weights`: None (from scratch), imagenet,
    coco_voc, or a path to an adlab checkpoint: then the network is built from scratch and the caller
    loads the checkpoint into it (as models/factory does for the classifiers). `unet`: model.unet's
    settings (None: the U-Net's defaults)."""
    regime = check_segmenter(name, weights)
    if name == "unet":
        cfg = unet or UnetConfig()
        kwargs: dict[str, Any] = {
            key: getattr(cfg, key) for key in UnetConfig.model_fields if getattr(cfg, key) is not None
        }
        return SegmenterBuilt(UNet(in_channels, num_classes, **kwargs), "head", None)
    spec = SEGMENTATION_NETS[name]
    record: ImagenetWeights | None = None
    if regime == "imagenet":
        net, record = _imagenet_backbone(name, spec, num_classes)
        new = [HEAD]
    elif regime == "coco_voc":
        net, record = _coco_voc(name, spec, num_classes)
        new = [f"{HEAD}.{conv}" for conv in spec.class_convs]
    else:
        net, new = _scratch(name, num_classes), []
    adapt_input_conv(net, in_channels)
    built = SegmenterBuilt(TorchvisionSegmenter(net), HEAD, None)
    if record is not None and regime is not None:
        built.weights = {**record.to_dict(), "source": regime, "new": new}
        said = record.line().replace("weights: ImageNet", f"weights: {REGIMES[regime]}", 1)
        built.line = said + (
            "; segmentation head new" if regime == "imagenet" else f"; class layers new ({num_classes} classes)"
        )
    return built


def _scratch(name: str, num_classes: int) -> nn.Module:
    import torchvision

    # weights_backbone=None: torchvision's builders default to ImageNet backbone weights (a download)
    return torchvision.models.get_model(
        name, weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False
    )


def library_weights(name: str, regime: str):
    """torchvision's weights enum `weights: <regime>` loads for segmentation net `name` (what --plan looks for)."""
    return _weights_enum(name, regime)


def _weights_enum(name: str, regime: str):
    """The backbone's ImageNet weights torchvision's own builder starts `name` from (IMAGENET1K_V1, not
    the classifier's DEFAULT), or the whole net's COCO-with-VOC-labels weights."""
    import torchvision

    if regime == "imagenet":
        builder = torchvision.models.get_model_builder(name)
        return inspect.signature(builder).parameters["weights_backbone"].default
    return torchvision.models.get_model_weights(name).COCO_WITH_VOC_LABELS_V1


def _torchvision_file(weights, name: str, what: str) -> tuple[dict, ImagenetWeights]:
    """torchvision's file for `weights`, as zoo finds and reads the classifiers' ImageNet weights:
    torch.hub's cache (drop it there to work offline), else downloaded and checked against the sha256
    prefix in its name; read with weights_only; a problem is one line naming the file."""
    try:
        return torchvision_file(weights, name)
    except CheckpointError as exc:  # zoo's messages say "ImageNet weights for <name>"
        raise CheckpointError(str(exc).replace("ImageNet weights", what, 1)) from None


def _imagenet_backbone(name: str, spec: _Net, num_classes: int) -> tuple[nn.Module, ImagenetWeights]:
    """The net with a new head on the backbone torchvision's ImageNet classifier gives: that classifier
    is built by zoo from the file (its architecture checked), then its layers copied into the backbone
    (the same tensors; the segmentation nets only dilate some of them)."""
    weights = _weights_enum(name, "imagenet")
    state, record = _torchvision_file(weights, f"{name}'s backbone ({spec.backbone})", "ImageNet weights")
    classifier = _build_with_state(spec.backbone, weights, state, Path(record.file))
    source = classifier.get_submodule(spec.features).state_dict()
    net = _scratch(name, num_classes)
    backbone = net.get_submodule("backbone")
    backbone.load_state_dict({key: source[key] for key in backbone.state_dict()})
    return net, record


def _coco_voc(name: str, spec: _Net, num_classes: int) -> tuple[nn.Module, ImagenetWeights]:
    """torchvision's whole net trained on COCO's VOC classes (21), its class convolutions new for
    `num_classes` and its auxiliary head dropped (adlab trains the main output only)."""
    weights = _weights_enum(name, "coco_voc")
    state, record = _torchvision_file(weights, name, f"{REGIMES['coco_voc']} weights")
    net = _build_with_state(name, weights, state, Path(record.file))
    if getattr(net, "aux_classifier", None) is not None:
        # the module's forward skips a None aux_classifier; torch types the attribute as a module
        net.aux_classifier = None  # type: ignore[assignment]
    head = net.get_submodule("classifier")
    for conv_name in spec.class_convs:
        conv = cast(nn.Conv2d, head.get_submodule(conv_name))
        new = nn.Conv2d(conv.in_channels, num_classes, 1, bias=conv.bias is not None)
        _set_submodule(head, conv_name, new)
    return net, record
