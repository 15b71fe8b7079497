"""Reading checkpoints safely and loading the tensors that fit a model."""

from __future__ import annotations

import hashlib
import pickle
import re
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from adlab import io
from adlab.errors import CheckpointError

MODEL_PREFIX = "model."  # the Lightning modules keep its network in `self.model`


def sha256_file(path: str | Path) -> str:
    """The file's sha256 (hex), read in chunks: what a run records of the weights it started from."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory: the checkpoint its test set was scored with
    (train.test_checkpoint), else its best, else its last. Only a regular file is opened (os.stat
    first): a FIFO would block the open for ever, a device never ends."""
    path = Path(path)
    if path.is_dir():
        scored = path / "checkpoints" / _scored_name(path)
        if (scored.exists() or scored.is_symlink()) and not scored.is_file():
            # never another checkpoint in its place: its numbers would not be the run's
            raise CheckpointError(
                f"{scored}: not a checkpoint file (a link, folder or device); the run's test set was scored with it"
            )
        for name in (scored.name, "best.ckpt", "last.ckpt"):
            candidate = path / "checkpoints" / name
            if candidate.is_file():
                if candidate != scored:
                    io.notice(
                        f"{scored}: missing; using {candidate} (not the weights the run's test set was scored with)"
                    )
                return candidate
        raise CheckpointError(f"{path}: no checkpoints/best.ckpt or checkpoints/last.ckpt in this run directory")
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except OSError as exc:  # a symlink loop, a path through a file
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"{path}: not a regular file (a FIFO, device or socket), not a checkpoint")
    return path


def _scored_name(run_dir: Path) -> str:
    import json

    try:
        scored = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8")).get("scored_checkpoint")
    except (OSError, ValueError, AttributeError):
        scored = None
    return "last.ckpt" if scored == "last" else "best.ckpt"


# What a finished run's best.ckpt keeps: the weights and what adlab and Lightning need to load them.
WEIGHTS_KEYS = ("state_dict", "adlab", "hyper_parameters", "epoch", "global_step", "pytorch-lightning_version")


def weights_only_copy(path: Path) -> None:
    """Rewrite a Lightning checkpoint without its optimizer, scheduler, loop and callback states."""
    if not Path(path).is_file():
        return
    ckpt = load_untrusted(path)
    if set(ckpt) <= set(WEIGHTS_KEYS):
        return
    with io.atomic_path(path) as tmp:
        torch.save({k: v for k, v in ckpt.items() if k in WEIGHTS_KEYS}, tmp)


def load_untrusted(path: Path) -> dict:
    """A checkpoint file's top-level dict, loaded `weights_only=True`: a checkpoint from elsewhere
    can hold tensors and plain data, never code that runs on load. Anything else is one error."""
    return _load_untrusted(Path(path), None)


def load_untrusted_with_sha256(path: Path) -> tuple[dict, str]:
    """`load_untrusted`, and the sha256 of the very file it read (one open file: loaded, then hashed)."""
    digest = hashlib.sha256()
    return _load_untrusted(Path(path), digest), digest.hexdigest()


def torch_load_quietly(source, path: Path):
    """torch.load(weights_only=True) of `source` (a path or an open file) with torch's own warnings held
    back: a file that loads has each said as a one-line notice naming `path`; a file that fails to
    load has only its error (the caller's one line), never torch's lines on top."""
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        loaded = torch.load(source, map_location="cpu", weights_only=True)
    for warning in said:
        text = str(warning.message).strip()
        if text:
            io.notice(f"{path}: torch: {text.splitlines()[0][:200]}")
    return loaded


def _load_untrusted(path: Path, digest) -> dict:
    try:
        with open(path, "rb") as handle:
            ckpt = torch_load_quietly(handle, path)
            if digest is not None:  # the file just loaded (same open file), hashed once it has passed
                handle.seek(0)
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    except pickle.UnpicklingError as exc:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # torch colours its message
        refused = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        if refused:
            # torch's advice to allow-list the global would run the file's code: not repeated
            reason = re.split(r"\.?\s+Please use `torch\.serialization", refused.group(1).strip())[0].rstrip(".")
            if reason.startswith("Unsupported operand"):
                if not _starts_like_a_pickle(path):
                    raise CheckpointError(
                        f"{path}: not a checkpoint (neither torch.save's zip file nor a pickle)"
                    ) from None
                reason = f"a plain pickle, not a file torch.save wrote ({reason[0].lower()}{reason[1:]})"
            raise CheckpointError(
                f"{path}: refused: {reason[0].lower()}{reason[1:]} (checkpoints load with "
                "weights_only: tensors and plain data, never code)"
            ) from None
        raise CheckpointError(f"{path}: not a checkpoint (cannot be unpickled)") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: a folder, not a checkpoint file") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    except Exception as exc:  # truncated zip, random bytes, ...
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}; damaged or cut short?)"
        ) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a checkpoint (expected a dict of tensors)")
    return ckpt


def _starts_like_a_pickle(path: Path) -> bool:
    """A pickle of protocol 2 or later starts with its PROTO opcode."""
    try:
        with open(path, "rb") as handle:
            return handle.read(1) == pickle.PROTO
    except OSError:
        return False


def checkpoint_input(path: str | Path) -> tuple[int | None, tuple[list[float], list[float]] | None]:
    """The input channels and normalisation an adlab checkpoint (or run folder) records for the data it was
    trained on: what a network started from it must be fed."""
    _, meta = read_checkpoint(path)
    data = meta.get("data") or {}
    normalization = (data["mean"], data["std"]) if "mean" in data and "std" in data else None
    return data.get("channels"), normalization


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict without the task prefix, adlab metadata or {}), read with `load_untrusted`."""
    state, meta, _ = read_weights(path)
    return state, meta


@dataclass(frozen=True)
class WeightsFile:
    """Which file a run's weights came from: the checkpoint itself (a run folder resolved to it) and
    the sha256 of the bytes that were loaded."""

    file: str
    sha256: str


def read_weights(
    path: str | Path, with_sha256: bool = False
) -> tuple[dict[str, torch.Tensor], dict, WeightsFile | None]:
    """`read_checkpoint`, and with `with_sha256` which file it read and that file's sha256."""
    path = resolve_checkpoint(path)
    if with_sha256:
        ckpt, sha256 = load_untrusted_with_sha256(path)
        source = WeightsFile(str(path.resolve()), sha256)
    else:
        ckpt, source = load_untrusted(path), None
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{path}: not a checkpoint (its state_dict is a {type(state).__name__}, not a mapping of tensors)"
        )
    state = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(f"{path}: checkpoint holds no tensors")
    if all(k.startswith(MODEL_PREFIX) for k in state):
        state = {k[len(MODEL_PREFIX) :]: v for k, v in state.items()}
    meta = ckpt.get("adlab", {}) if isinstance(ckpt.get("adlab", {}), dict) else {}
    return state, meta, source


@dataclass
class LoadReport:
    source: str
    loaded: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    file: WeightsFile | None = None  # the checkpoint file read, and its sha256

    def summary(self) -> str:
        where = self.source
        if self.file is not None:
            if Path(self.file.file) != Path(self.source).resolve():
                where += f" ({self.file.file})"
            where += f", sha256 {self.file.sha256[:12]}…"
        lines = [f"weights: loaded {len(self.loaded)} of {len(self.loaded) + len(self.new)} tensors from {where}"]
        if self.new:
            lines.append(f"weights: left new ({len(self.new)}): {_short(self.new)}")
        if self.shape_mismatch:
            lines.append(f"weights: shape differs, not loaded: {_short(self.shape_mismatch)}")
        if self.unused:
            lines.append(f"weights: in checkpoint but unused ({len(self.unused)}): {_short(self.unused)}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        record = {
            "source": self.source,
            "loaded": len(self.loaded),
            "new": self.new,
            "shape_mismatch": self.shape_mismatch,
            "unused": len(self.unused),
        }
        if self.file is not None:
            record.update(file=self.file.file, sha256=self.file.sha256)
        return record


def _short(names: list[str], limit: int = 8) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def load_matching(
    model: nn.Module, state: dict[str, torch.Tensor], source: str, skip_prefixes: tuple[str, ...] = ()
) -> LoadReport:
    """Copy every checkpoint tensor whose name and shape match; report the rest."""
    report = LoadReport(source)
    own = model.state_dict()
    matched = {}
    for name, tensor in own.items():
        skip = any(name == p or name.startswith(p + ".") for p in skip_prefixes)
        if name in state and not skip and state[name].shape == tensor.shape:
            matched[name] = state[name]
            report.loaded.append(name)
        else:
            if name in state and not skip:
                report.shape_mismatch.append(f"{name} {list(state[name].shape)}->{list(tensor.shape)}")
            if not name.endswith("num_batches_tracked"):
                report.new.append(name)
    report.unused = [k for k in state if k not in own]
    learnable = [n for n, _ in model.named_parameters()]
    if not any(n in matched for n in learnable):
        if report.shape_mismatch:  # the same names: the same network with other settings
            raise CheckpointError(
                f"{source}: no tensor of the checkpoint fits this model: the same layers with "
                f"other shapes (e.g. {report.shape_mismatch[0]}, checkpoint->model); the "
                "checkpoint's network was built with other model.* settings"
            )
        raise CheckpointError(
            f"{source}: no tensor of the checkpoint fits this model "
            f"(another architecture? e.g. model has {learnable[0]}, checkpoint has "
            f"{next(iter(state))})"
        )
    model.load_state_dict(matched, strict=False)
    return report
