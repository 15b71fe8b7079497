"""torchvision classifiers by name, adapted to any number of input channels and classes."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast
from urllib.parse import urlparse

import torch
from torch import nn

from adlab.errors import CheckpointError, ConfigError
from adlab.models.checkpoints import sha256_file, torch_load_quietly


def torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def check_torchvision_name(name: str) -> None:
    names = torchvision_names()
    if name not in names:
        close = difflib.get_close_matches(name, names + ["cnn"], n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(
            f"model.name: unknown model {name!r} ({hint}valid: cnn or a torchvision classifier "
            f"such as resnet18, mobilenet_v2, alexnet, vgg11_bn, efficientnet_b0)"
        )


def build_torchvision(name: str, in_channels: int, num_classes: int, imagenet: bool) -> tuple[nn.Module, str]:
    """(model, qualified name of its new head). With `imagenet`, loads torchvision's DEFAULT weights."""
    import torchvision

    check_torchvision_name(name)
    if imagenet:
        model = _imagenet_model(name)
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


@dataclass(frozen=True)
class ImagenetWeights:
    """What `model.weights: imagenet` loaded: said once by the run and kept in its env.json."""

    enum: str  # torchvision's name for them, e.g. ResNet18_Weights.IMAGENET1K_V1
    url: str
    file: str
    sha256: str
    matches_torchvision: bool  # the sha256 starts with the prefix torchvision puts in the file name
    downloaded: bool  # by this run (checked against that prefix), not found in torch.hub's cache

    def line(self) -> str:
        prefix = _hash_prefix(self.url)
        shown = self.sha256[: max(8, len(prefix))]
        text = f"weights: ImageNet (torchvision {self.enum}) from {self.file}, sha256 {shown}…"
        if self.downloaded:
            text += " (downloaded now)"
        if not self.matches_torchvision:
            text += (
                f"; not torchvision's own file (its sha256 does not start with {prefix} as torchvision's "
                f"does): a converted or edited copy?"
            )
        return text

    def to_dict(self) -> dict:
        return {
            "source": "imagenet",
            "weights": self.enum,
            "url": self.url,
            "file": self.file,
            "sha256": self.sha256,
            "matches_torchvision": self.matches_torchvision,
            "downloaded": self.downloaded,
        }


class LoadedWeights(Protocol):
    """What a run says (line) and records (to_dict) of the pretrained weights it loaded: torchvision's
    ImagenetWeights, or timm's TimmWeights (models/timm_zoo.py)."""

    def line(self) -> str: ...

    def to_dict(self) -> dict: ...


# the ImageNet weights last loaded in this process, by model name: the run that built the model says
# which file it was and records it (tasks/lightning reads it right after building)
LOADED: dict[str, LoadedWeights] = {}


def loaded_imagenet_weights(name: str) -> LoadedWeights | None:
    return LOADED.get(name)


def imagenet_cache_path(weights) -> Path:
    """Where torch.hub keeps (and looks for) this file: <torch.hub.get_dir()>/checkpoints/<its name>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def _hash_prefix(url: str) -> str:
    # torchvision names its files <name>-<first hex digits of the sha256>.pth (torch.hub's convention)
    found = re.search(r"-([a-f0-9]{6,})\.", Path(urlparse(url).path).name)
    return found.group(1) if found else ""


def _imagenet_model(name: str) -> nn.Module:
    """torchvision's network `name` with its DEFAULT ImageNet weights: the file in torch.hub's cache
    (drop it there to work offline), else downloaded and checked against the sha256 prefix in its
    name. Either way read with weights_only (tensors, never code); LOADED records what was read."""
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    state, record = torchvision_file(weights, name)
    model = _build_with_state(name, weights, state, Path(record.file))
    LOADED[name] = record
    return model


def torchvision_file(weights, name: str) -> tuple[dict, ImagenetWeights]:
    """The state dict of torchvision's file for `weights` and what was read: torch.hub's cache (drop it there to
    work offline), else downloaded and checked against the sha256 prefix in its name; read with weights_only; a
    problem is one line naming the file."""
    path = imagenet_cache_path(weights)
    downloaded = not path.is_file()
    state = _download_imagenet(weights, name, path) if downloaded else _read_imagenet(path, weights)
    sha256 = sha256_file(path)
    return state, ImagenetWeights(
        enum=f"{type(weights).__name__}.{weights.name}",
        url=weights.url,
        file=str(path),
        sha256=sha256,
        matches_torchvision=sha256.startswith(_hash_prefix(weights.url)),
        downloaded=downloaded,
    )


def _corrupt(path: Path, weights, reason: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: not a readable state dict ({reason}); delete it and run again online, or replace "
        f"it with torchvision's file from {weights.url}"
    )


def _download_imagenet(weights, name: str, path: Path) -> dict:
    """torch.hub's download (into `path`; check_hash: the sha256 must start with the prefix in the file
    name, else the file is not kept), read with weights_only."""
    try:
        return weights.get_state_dict(progress=False, check_hash=True, weights_only=True, map_location="cpu")
    except Exception as exc:  # URLError, HTTPError, OSError: no internet; RuntimeError: a bad transfer
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if path.is_file():  # downloaded and kept, then unreadable
            raise _corrupt(path, weights, reason) from None
        if "invalid hash value" in reason:  # torch.hub did not keep it
            raise CheckpointError(
                f"ImageNet weights for {name}: the file downloaded from {weights.url} does not match "
                f"the sha256 prefix in its name ({reason}); run again, or put torchvision's file "
                f"at {path}"
            ) from None
        raise CheckpointError(
            f"ImageNet weights for {name} could not be downloaded from {weights.url} ({reason}); "
            f"without internet, put that file at {path}"
        ) from None


def _read_imagenet(path: Path, weights) -> dict:
    """A file found in torch.hub's cache: whatever put it there, it is read as untrusted input."""
    try:
        state = torch_load_quietly(path, path)  # torch's warnings: one-line notices, or none on failure
    except Exception as exc:  # truncated, random bytes, or pickled code that weights_only refuses
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # torch colours its messages
        refused = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        lines = text.strip().splitlines()
        # torch's advice to allow-list a global would run the file's code: not repeated
        refused_text = (
            re.split(r"\.?\s+Please use `torch\.serialization", refused.group(1).strip())[0] if refused else ""
        )
        reason = (
            f"refused by weights_only: {refused_text.rstrip('.')}"
            if refused
            else f"{type(exc).__name__}: {lines[0].split('. ')[0][:160]}"
            if lines
            else type(exc).__name__
        )
        raise _corrupt(path, weights, reason) from None
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        raise _corrupt(path, weights, f"a {type(state).__name__}, not a mapping of names to tensors")
    return state


def _build_with_state(name: str, weights, state: dict, path: Path) -> nn.Module:
    """torchvision's own builder with `weights`, served the state dict read here instead of reading
    the file itself (it would unpickle with weights_only=False). The builder knows what each set of
    weights needs: DenseNet's old key names, GoogLeNet's transform_input, ViT-H's 518-pixel input."""
    import torchvision
    from torchvision.models import _api

    def serve(url, *args, **kwargs):
        if url != weights.url:
            raise CheckpointError(f"torchvision asked for {url} while building {name} from {weights.url}")
        return state

    original = getattr(_api, "load_state_dict_from_url", None)
    try:
        if original is None:  # a torchvision without this hook: the plain network and its state dict
            model = torchvision.models.get_model(name)
            model.load_state_dict(state)
            return model
        _api.load_state_dict_from_url = serve
        return torchvision.models.get_model(name, weights=weights)
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:  # another architecture's tensors
        reason = " ".join(str(exc).split())
        raise _corrupt(path, weights, f"not {name}'s tensors: {reason[:160]}") from None
    finally:
        if original is not None:
            _api.load_state_dict_from_url = original


def _drop_aux_heads(model: nn.Module) -> None:
    # GoogLeNet / Inception return extra logits in training mode; adlab trains the main head only.
    if hasattr(model, "aux_logits"):
        # torch types Module.__setattr__ for tensors and modules only; a plain flag is set as any attribute
        model.aux_logits = False  # type: ignore[assignment]
        for attr in ("aux1", "aux2", "AuxLogits"):
            if hasattr(model, attr):
                setattr(model, attr, None)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def adapt_input_conv(model: nn.Module, in_channels: int) -> None:
    """Give the first convolution `in_channels` inputs; pretrained filters are summed (grey) or
    tiled and rescaled (more channels), as timm does, so their responses keep their scale."""
    first = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if first is None or first[1].in_channels == in_channels:
        return
    name, conv = first
    # torch types a Conv2d's kernel_size, stride, padding and dilation tuple[int, ...]: they are pairs
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        cast("tuple[int, int]", conv.kernel_size),
        cast("tuple[int, int]", conv.stride),
        cast("str | tuple[int, int]", conv.padding),
        cast("tuple[int, int]", conv.dilation),
        conv.groups,
        conv.bias is not None,
        conv.padding_mode,
    )
    with torch.no_grad():
        old = conv.weight
        if in_channels == 1:
            new.weight.copy_(old.sum(dim=1, keepdim=True))
        else:
            reps = -(-in_channels // old.shape[1])
            new.weight.copy_(old.repeat(1, reps, 1, 1)[:, :in_channels] * (old.shape[1] / in_channels))
        if conv.bias is not None and new.bias is not None:  # new has a bias exactly when conv has one
            new.bias.copy_(conv.bias)
    _set_submodule(model, name, new)


def replace_head(model: nn.Module, num_classes: int) -> str:
    """Swap the last Linear layer for a fresh one with `num_classes` outputs; return its name."""
    head: tuple[str, nn.Linear] | None = None
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear):
            head = (n, m)
    if head is None:
        raise ConfigError(f"model.name: {type(model).__name__} has no linear classifier head to adapt")
    name, linear = head
    _set_submodule(model, name, nn.Linear(linear.in_features, num_classes, bias=linear.bias is not None))
    return name
