"""What makes a run resumable with the same result: checkpoints that are never half-written, and
the random-number state saved with them.

Lightning already saves the weights, optimizer, scheduler, epoch counters and stateful callbacks
(checkpointing, early stopping, our history) in `last.ckpt` after every epoch. Two things it does
not do: write the file atomically (a `kill -9` during the write would leave a truncated
checkpoint), and save the global random generators, so a resumed run would shuffle and augment
differently from an uninterrupted one. `AtomicCheckpointIO` and `RandomState` add those.
"""

from __future__ import annotations

import random
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from adlab import io, ownership
from adlab.errors import ConfigError


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to a temporary file in the same folder, then rename over the old checkpoint."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        with io.atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
            writer = _ErrorKeepingFile(f)
            try:
                torch.save(checkpoint, writer)
            except RuntimeError:
                if writer.error is None:
                    raise
                # torch reports a failed write as "unexpected pos"; a full disk should say so
                raise OSError(writer.error.errno, writer.error.strerror, str(path)) from None


class _ErrorKeepingFile:
    """A file whose write errors are kept: torch.save replaces them with a RuntimeError of its own."""

    def __init__(self, file):
        self.file = file
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        try:
            self.file.flush()
        except OSError as exc:
            self.error = exc
            raise


class RandomState(L.Callback):
    """Saves torch's, NumPy's and Python's global generators with each checkpoint and restores them
    on resume. The checkpoint is written at the end of an epoch, after the last random draw of that
    epoch, so the next epoch's shuffle and augmentation are the ones an uninterrupted run makes.
    Stored as tensors and plain numbers, so the checkpoint still loads with weights_only=True."""

    def state_dict(self) -> dict:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        return {"torch": torch.get_rng_state(),
                "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                          "has_gauss": int(has_gauss), "cached": float(cached)},
                "python": random.getstate()}

    def load_state_dict(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))


def last_checkpoint(run_dir: Path) -> Path | None:
    path = Path(run_dir) / "checkpoints" / "last.ckpt"
    return path if path.is_file() else None


def remove_partial_files(run_dir: Path) -> None:
    """Temporary files a killed process left behind (they never replaced a finished file)."""
    for tmp in Path(run_dir).rglob(".*.tmp"):
        tmp.unlink()


def check_config_unchanged(run_dir: Path, config: dict) -> None:
    """A resumed run continues as it started: its config.yaml must still be the config its
    checkpoints were made with (recorded in the run's ownership marker when it started)."""
    record = ownership.read_marker(run_dir) or {}
    started = record.get("config")
    if not isinstance(started, dict):
        return  # a run made before adlab recorded its config: nothing to compare with
    differ = changed_keys(started, config)
    if differ:
        shown = "; ".join(f"{key}: {_short(a)} -> {_short(b)}" for key, a, b in differ[:3])
        more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
        raise ConfigError(f"{Path(run_dir) / 'config.yaml'}: edited since the run started ({shown}{more}); "
                          "--resume continues a run as it started: undo the edit, or train a new run with it")


def changed_keys(old: dict, new: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """(dotted key, old value, new value) for every setting that differs."""
    out = []
    for key in sorted(old.keys() | new.keys(), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append((f"{prefix}{key}", a, b))
    return out


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
