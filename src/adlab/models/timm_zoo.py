"""timm's classifiers by `model.name: timm/<name>` (e.g. timm/resnet18, timm/convnext_nano.in12k_ft_in1k),
beside torchvision's (models/zoo.py); needs the optional extra: pip install 'adlab[timm]'.

The network is timm's own `create_model(name, in_chans=..., num_classes=...)`; its head is the module
`get_classifier()` returns, so the three transfer regimes work as for torchvision. `model.weights: imagenet`
is timm's pretrained weights (the default tag's unless the name has one): the file Hugging Face keeps in its
cache (<HF_HUB_CACHE>/models--timm--<name.tag>/snapshots/<revision>/model.safetensors), found the way
huggingface_hub finds it offline and read as untrusted input (safetensors, or torch with weights_only). A file
in the cache is used without asking the network; a missing one is downloaded by huggingface_hub as timm
does, unless HF_HUB_OFFLINE is set (then one line says which file to put where). What was loaded is said
and recorded like torchvision's weights (zoo.LOADED): the file, its sha256, the tag.
"""

from __future__ import annotations

import difflib
import os
import re
import traceback
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from adlab.errors import CheckpointError, ConfigError
from adlab.models.checkpoints import sha256_file
from adlab.models.zoo import LOADED

PREFIX = "timm/"
HUB = "https://huggingface.co"
SAFE_WEIGHTS = "model.safetensors"
WEIGHTS = "pytorch_model.bin"
PROBE_TIMEOUT_S = 10  # one HEAD request, no retries, before huggingface_hub's own download (which retries)


def is_timm_name(name: str) -> bool:
    return name.startswith(PREFIX)


def _timm():
    try:
        import timm
    except ImportError:
        raise ConfigError("model.name: timm models need timm: pip install 'adlab[timm]'") from None
    return timm


def timm_model_name(name: str) -> str:
    """`timm/resnet18.a1_in1k` -> `resnet18.a1_in1k`, the name timm.create_model takes; checked against
    timm's registry (close names suggested)."""
    timm = _timm()
    from timm.models import split_model_name_tag

    model = name[len(PREFIX) :]
    arch, tag = split_model_name_tag(model)
    if timm.is_model(arch) and (not tag or model in timm.list_pretrained(f"{arch}.*")):
        return model
    if timm.is_model(arch):
        tags = [f"{PREFIX}{n}" for n in timm.list_pretrained(f"{arch}.*")]
        known = f"{PREFIX}{arch} has the pretrained tags {', '.join(tags)}" if tags else f"{arch} has no tags"
        raise ConfigError(f"model.name: unknown timm tag {name!r} ({known})")
    names = timm.list_models() + timm.list_pretrained()
    close = [PREFIX + n for n in difflib.get_close_matches(model, names, n=3)]
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ConfigError(
        f"model.name: unknown timm model {name!r} ({hint}timm.list_models() names them all, e.g. "
        f"timm/resnet18, timm/convnext_nano, timm/efficientnet_b0)"
    )


def pretrained_cfg(name: str):
    """timm's PretrainedCfg of `timm/<name>` (its default tag's when the name has none), checked to have
    weights on the Hugging Face Hub."""
    from timm.models import get_pretrained_cfg

    model = timm_model_name(name)
    cfg = get_pretrained_cfg(model)
    if cfg is None or not cfg.has_weights:
        raise ConfigError(f"model.weights: timm has no pretrained weights for {name!r}; use weights: null")
    if not cfg.hf_hub_id:
        raise ConfigError(
            f"model.weights: timm's weights for {name!r} ({cfg.architecture}.{cfg.tag}) are not on the Hugging "
            f"Face Hub (only at {cfg.url}); adlab reads timm's weights from the Hub's cache only"
        )
    return cfg


def check_timm_name(name: str, imagenet: bool) -> None:
    if imagenet:
        pretrained_cfg(name)
    else:
        timm_model_name(name)


def timm_input(name: str) -> tuple[int, tuple[list[float], list[float]]]:
    """Input channels and (mean, std) of the images timm's pretrained weights for `name` were trained on."""
    cfg = pretrained_cfg(name)
    return cfg.input_size[0], (list(cfg.mean), list(cfg.std))


def tag(cfg) -> str:
    return f"{cfg.architecture}.{cfg.tag}" if cfg.tag else cfg.architecture


@dataclass(frozen=True)
class TimmWeights:
    """What `model.weights: imagenet` loaded for a timm model: said once by the run and kept in its env.json
    (the same place and keys as torchvision's zoo.ImagenetWeights)."""

    tag: str  # timm's name for them, e.g. resnet18.a1_in1k
    repo: str  # their Hugging Face Hub repository, e.g. timm/resnet18.a1_in1k
    revision: str  # the snapshot (commit) of that repository they came from
    file: str
    sha256: str
    matches_hub: bool | None  # the sha256 is the one the cache names the file by (None: not linked to a blob)
    downloaded: bool  # by this run, not found in the Hugging Face cache

    @property
    def url(self) -> str:
        return f"{HUB}/{self.repo}"

    def line(self) -> str:
        text = f"weights: timm {self.tag} ({self.url}) from {self.file}, sha256 {self.sha256[:12]}…"
        if self.downloaded:
            text += " (downloaded now)"
        if self.matches_hub is False:
            text += (
                "; not the Hub's file (the Hugging Face cache links it to a blob named by another sha256): "
                "a converted or edited copy?"
            )
        return text

    def to_dict(self) -> dict:
        return {
            "source": f"timm {self.tag}",
            "weights": self.tag,
            "url": self.url,
            "revision": self.revision,
            "file": self.file,
            "sha256": self.sha256,
            "matches_hub": self.matches_hub,
            "downloaded": self.downloaded,
        }


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache as huggingface_hub resolves it (HF_HUB_CACHE, else HF_HOME/hub, else
    XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub), read now rather than at its import."""
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(hub)))


def hf_offline() -> bool:
    from huggingface_hub import constants

    said = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return said.upper() in ("1", "ON", "YES", "TRUE") or bool(constants.HF_HUB_OFFLINE)


def _split(hub_id: str) -> tuple[str, str]:
    repo, _, revision = hub_id.partition("@")
    return repo, revision or "main"


def _filenames(cfg) -> list[str]:
    """The files timm reads from the repository, in its order: the safetensors one first."""
    name = cfg.hf_hub_filename or WEIGHTS
    if name.endswith(".safetensors"):
        return [name]
    safe = SAFE_WEIGHTS if name == WEIGHTS else name.removesuffix(".bin") + ".safetensors"
    return [safe, name] if name.endswith(".bin") else [name]


def _cached(repo: str, revision: str, filenames: list[str]) -> Path | None:
    """The file huggingface_hub returns offline: refs/<revision> names the snapshot, the file is in it."""
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        found = try_to_load_from_cache(repo, filename, cache_dir=hf_cache_dir(), revision=revision)
        if isinstance(found, str):
            return Path(found)
    return None


def _where(repo: str, revision: str, filename: str) -> str:
    from huggingface_hub.file_download import repo_folder_name

    folder = hf_cache_dir() / repo_folder_name(repo_id=repo, repo_type="model")
    ref = folder / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else ""
    if commit:
        return str(folder / "snapshots" / commit / filename)
    return f"{folder / 'snapshots' / '<commit>' / filename}, with <commit> written in {ref}"


def weights_location(name: str) -> tuple[Path | None, str, str]:
    """(the cached file or None, where it goes, its URL) of timm's pretrained weights for `name`: what
    `weights: imagenet` would read, without reading it (`adlab study --plan`)."""
    cfg = pretrained_cfg(name)
    repo, revision = _split(cfg.hf_hub_id)
    filenames = _filenames(cfg)
    return _cached(repo, revision, filenames), _where(repo, revision, filenames[0]), f"{HUB}/{repo}"


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _download(name: str, cfg) -> Path:
    """huggingface_hub's download of timm's file into the cache, after one quick HEAD request: without a
    network that request fails at once, where the download itself retries for minutes."""
    import timm
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError

    repo, revision = _split(cfg.hf_hub_id)
    filenames = _filenames(cfg)
    where = _where(repo, revision, filenames[0])
    if hf_offline():
        raise CheckpointError(
            f"ImageNet weights for {name} (timm {tag(cfg)}): {filenames[0]} of {HUB}/{repo} is not in the Hugging "
            f"Face cache ({hf_cache_dir()}) and HF_HUB_OFFLINE is set, so it was not downloaded; put it at {where} "
            f"(as `hf download {repo} {filenames[0]}` does online), or unset HF_HUB_OFFLINE"
        )
    for filename in filenames:
        url = hf_hub_url(repo, filename, revision=revision)
        try:
            get_hf_file_metadata(url, timeout=PROBE_TIMEOUT_S, library_name="timm", library_version=timm.__version__)
        except EntryNotFoundError:
            continue  # an older repository without the safetensors file: timm reads pytorch_model.bin
        except Exception as exc:  # no network (a connection error), a gated or missing repository (HTTP 401/404)
            raise CheckpointError(
                f"ImageNet weights for {name} (timm {tag(cfg)}) could not be downloaded from {url} "
                f"({_reason(exc)}); without internet, put {filename} at {where} (HF_HUB_OFFLINE=1 skips the attempt)"
            ) from None
        try:
            return Path(
                hf_hub_download(
                    repo,
                    filename,
                    revision=revision,
                    cache_dir=hf_cache_dir(),
                    library_name="timm",
                    library_version=timm.__version__,
                )
            )
        except Exception as exc:  # the connection lost part-way, a full disk
            raise CheckpointError(
                f"ImageNet weights for {name} (timm {tag(cfg)}): downloading {url} failed ({_reason(exc)}); "
                f"run again, or put {filename} at {where}"
            ) from None
    raise CheckpointError(f"ImageNet weights for {name}: {HUB}/{repo} has none of {', '.join(filenames)}")


def _matches_hub(path: Path, sha256: str) -> bool | None:
    """huggingface_hub links snapshots/<revision>/<file> to blobs/<etag>; a large (LFS) file's etag is its
    sha256. None where the file is not such a link (placed by hand, or a cache without symlinks)."""
    if not path.is_symlink():
        return None
    blob = Path(os.readlink(path)).name
    return blob == sha256 if re.fullmatch(r"[0-9a-f]{64}", blob) else None


def _corrupt(path: Path, cfg, reason: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: not a readable state dict ({reason}); delete it and run again online, or replace it with "
        f"timm's file from {HUB}/{_split(cfg.hf_hub_id)[0]}"
    )


def _pretrained(name: str, model: str, in_chans: int, kwargs: dict) -> nn.Module:
    """timm's network with its pretrained weights read from the cached file (pretrained_cfg_overlay's
    `file`: timm reads it, adapts the first convolution to `in_chans` and loads it strictly, its own head
    included); LOADED records which file it was."""
    timm = _timm()
    cfg = pretrained_cfg(name)
    repo, revision = _split(cfg.hf_hub_id)
    path = _cached(repo, revision, _filenames(cfg))
    downloaded = path is None
    if path is None:
        path = _download(name, cfg)
    try:
        net = timm.create_model(
            model,
            pretrained=True,
            pretrained_cfg_overlay={"file": str(path), "custom_load": False},
            in_chans=in_chans,
            num_classes=cfg.num_classes,
            **kwargs,
        )
    except Exception as exc:
        if not any(frame.f_code.co_name == "load_pretrained" for frame, _ in traceback.walk_tb(exc.__traceback__)):
            raise  # building the network failed, not reading the file (build_timm says so)
        text = " ".join(str(exc).split())
        if "Error(s) in loading state_dict" in text:  # another network's tensors: timm loads strictly
            raise _corrupt(path, cfg, f"not {tag(cfg)}'s tensors: {text[:200]}") from None
        raise _corrupt(path, cfg, _reason(exc)) from None  # truncated, not safetensors, or pickled code
    sha256 = sha256_file(path)
    LOADED[name] = TimmWeights(
        tag=tag(cfg),
        repo=repo,
        revision=path.parent.name,
        file=str(path),
        sha256=sha256,
        matches_hub=_matches_hub(path, sha256),
        downloaded=downloaded,
    )
    return net


def head_name(net: nn.Module, name: str) -> str:
    """Qualified name of the module timm's get_classifier() returns."""
    head = net.get_classifier()  # type: ignore[operator]
    if isinstance(head, (tuple, list)):  # a distilled network's two heads
        raise ConfigError(f"model.name: {name} has {len(head)} classifier heads; adlab trains networks with one")
    found = next((n for n, m in net.named_modules() if m is head and n), None)
    if found is None:
        raise ConfigError(f"model.name: {name} has no classifier head to adapt")
    return found


def build_timm(name: str, input_shape: tuple[int, int, int], num_classes: int, imagenet: bool) -> tuple[nn.Module, str]:
    """(timm's network `name` for these images and classes, qualified name of its head). With `imagenet`,
    timm's pretrained weights and a new head (reset_classifier) for `num_classes`."""
    timm = _timm()
    model = timm_model_name(name)
    in_chans, h, w = input_shape
    kwargs: dict = {}
    cfg = timm.models.get_pretrained_cfg(model)
    if cfg is not None and cfg.fixed_input_size:  # a ViT's position embeddings are made (or resampled) for it
        kwargs["img_size"] = (h, w)
    try:
        if imagenet:
            net = _pretrained(name, model, in_chans, kwargs)
            net.reset_classifier(num_classes)  # type: ignore[operator]
        else:
            net = timm.create_model(model, pretrained=False, in_chans=in_chans, num_classes=num_classes, **kwargs)
    except (TypeError, ValueError, AssertionError) as exc:  # settings this network cannot take
        shape = f"{in_chans}x{h}x{w}"
        raise ConfigError(f"model.name: timm cannot build {name} for {shape} images ({_reason(exc)})") from None
    return net, head_name(net, name)
