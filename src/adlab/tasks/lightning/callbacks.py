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
import time
from pathlib import Path
from typing import cast

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn

from adlab import io


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to a temporary file in the same folder, then rename over the old checkpoint."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        with io.atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
            writer = _ErrorKeepingFile(f)
            try:
                torch.save(checkpoint, writer)  # type: ignore[arg-type]  # torch writes to any object with write()
            except RuntimeError as exc:
                # torch reports a failed write as "unexpected pos" (its zip writer's exit after the write
                # raised): what interrupted the write is what the user must see, a Ctrl-C or a full disk.
                # A Ctrl-C that lands in torch's pickling rather than in a write is the error's context.
                if isinstance(writer.error, KeyboardInterrupt) or _interrupted(exc):
                    raise KeyboardInterrupt from None
                if writer.error is None:
                    raise
                raise OSError(writer.error.errno, writer.error.strerror, str(path)) from None


def _interrupted(exc: BaseException) -> bool:
    """Whether a Ctrl-C is among the exceptions `exc` was raised while handling."""
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__context__
    return False


class _ErrorKeepingFile:
    """A file whose write errors (and a Ctrl-C during a write) are kept: torch.save replaces them with a
    RuntimeError of its own."""

    def __init__(self, file):
        self.file = file
        self.error: OSError | KeyboardInterrupt | None = None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except (OSError, KeyboardInterrupt) as exc:
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
        # numpy's stub types this call as legacy=False's dict; the default (legacy) state of the global
        # MT19937 generator is this tuple
        state = cast("tuple[str, np.ndarray, int, int, float]", np.random.get_state())
        kind, keys, pos, has_gauss, cached = state
        return {
            "torch": torch.get_rng_state(),
            "numpy": {
                "kind": kind,
                "keys": torch.from_numpy(keys.astype(np.int64)),
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "cached": float(cached),
            },
            "python": random.getstate(),
        }

    def load_state_dict(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))


def keep_frozen_norms_frozen(model: nn.Module) -> None:
    """A frozen feature extractor keeps its batch-norm statistics too, not just its weights. Called at each
    training epoch's start: Lightning restores the train/eval modes after each validation."""
    for module in model.modules():
        params = list(module.parameters(recurse=False))
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and params and not any(p.requires_grad for p in params):
            module.eval()


def last_checkpoint(run_dir: Path) -> Path | None:
    path = Path(run_dir) / "checkpoints" / "last.ckpt"
    return path if path.is_file() else None


def remove_partial_files(run_dir: Path) -> None:
    """Temporary files a killed process left behind (they never replaced a finished file)."""
    for tmp in Path(run_dir).rglob(".*.tmp"):
        tmp.unlink()


class HistoryWriter(L.Callback):
    """One row per epoch in history.csv, rewritten atomically after every epoch."""

    def __init__(self, path: Path, val_columns: list[str]):
        self.path = Path(path)
        self.columns = ["epoch", "train_loss", "val_loss", *val_columns, "lr", "seconds"]
        self.rows: list[dict] = []
        self._start = 0.0
        self._lr = None

    def state_dict(self) -> dict:  # saved in each checkpoint: a resumed run continues the same table
        return {"rows": self.rows}

    def load_state_dict(self, state: dict) -> None:
        self.rows = [dict(row) for row in state["rows"]]

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = time.perf_counter()
        self._lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None

    def on_train_epoch_end(self, trainer, pl_module):
        metrics = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch + 1}
        for key in self.columns[1:-2]:
            row[key] = float(metrics[key]) if key in metrics else None
        row["lr"] = self._lr
        row["seconds"] = round(time.perf_counter() - self._start, 3)
        self.rows.append(row)
        if trainer.is_global_zero:
            io.write_csv(
                self.path, self.columns, ([r[c] if r[c] is not None else "" for c in self.columns] for r in self.rows)
            )


class EpochPrinter(L.Callback):
    """One line per epoch where a progress bar would flood a log file (CI, pipes, nohup)."""

    def __init__(self, keys: list[str]):
        self.keys = keys

    def on_train_epoch_end(self, trainer, pl_module):
        m = trainer.callback_metrics
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        for key in self.keys:
            if key in m:
                parts.append(f"{key} {float(m[key]):.4f}")
        if trainer.is_global_zero:
            print("  ".join(parts), flush=True)
