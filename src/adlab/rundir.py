"""The run directory: the contract other tools, studies and reports read.

    config.yaml  env.json  history.csv  metrics.json  predictions.csv  checkpoints/  figures/

`metrics.json` is written last: a run directory without it is unfinished.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adlab import io, ownership
from adlab.config import Config


@dataclass
class Run:
    """A finished run: where it is, how it was configured, what it measured."""

    path: Path
    config: Config
    metrics: dict = field(default_factory=dict)


def default_run_dir(config: Config, config_path: str | None) -> Path:
    name = config.name or (Path(config_path).stem if config_path else config.task)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / name / stamp


def check_run_dir(path: Path, overwrite: bool, kind: str = "run") -> bool:
    """Whether `path` holds an earlier adlab run to replace (only with `overwrite`); an error if it
    must not be touched: a folder adlab did not make is never replaced (see ownership)."""
    return ownership.check_output(Path(path), kind, overwrite)


def prepare_run_dir(path: Path, overwrite: bool, kind: str = "run", config: dict | None = None) -> Path:
    """Create the run folder with its ownership marker (which records the run's config, so a
    resume can tell whether config.yaml was edited since); replace an earlier run only if allowed."""
    path = Path(path)
    record: dict[str, Any] = {"config": config} if config is not None else {}
    ownership.prepare_output(path, kind, overwrite, **record)
    (path / "checkpoints").mkdir(parents=True, exist_ok=True)
    (path / "figures").mkdir(parents=True, exist_ok=True)
    return path


def environment(seed: int, extra: dict | None = None) -> dict:
    import lightning as L
    import numpy
    import torch
    import torchmetrics
    import torchvision

    from adlab import __version__

    return {
        "adlab": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": L.__version__,
        "torchmetrics": torchmetrics.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "seed": seed,
        "git_revision": git_revision(),
        "command": " ".join(sys.argv),
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        **(extra or {}),
    }


def git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).resolve().parent
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


MAX_HISTORY_COLUMNS = 1000  # a history has epoch, losses, a few validation metrics, lr and seconds


def read_history(path: Path) -> list[dict]:
    """history.csv as one dict per epoch ({} of none when the run wrote no history), read as untrusted
    input: bounded in size and columns, numbers only (inf and nan stay: a diverged run has them)."""
    from adlab.errors import DataError

    path = Path(path)
    if not os.path.lexists(path):
        return []
    table = io.bounded_csv(path, io.MAX_HISTORY_BYTES, "history", max_columns=MAX_HISTORY_COLUMNS)
    if not table:
        return []
    header, body = table[0], [row for row in table[1:] if row]
    if len(set(header)) != len(header) or any(len(row) != len(header) for row in body):
        raise DataError(f"{path}: malformed history (repeated column names, or rows of different lengths)")
    try:
        rows = [{k: (float(v) if v != "" else None) for k, v in zip(header, row, strict=True)} for row in body]
    except ValueError:
        raise DataError(f"{path}: malformed history (expected a header and numeric columns)") from None
    if any((epoch := row.get("epoch")) is None or not math.isfinite(epoch) for row in rows):
        raise DataError(f"{path}: malformed history (a row without its epoch)")
    return rows


def flat_metrics(metrics: dict) -> dict[str, float | None]:
    """metrics.json as one level of named numbers: a per-class mapping becomes one key per class,
    `per_class_accuracy.Car`; lists (confusion matrix) and names are left out."""
    flat: dict[str, float | None] = {}
    for key, value in metrics.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) or (value is None and not key.endswith("names")):
            flat[key] = value
        elif isinstance(value, dict):
            for name, inner in value.items():
                if inner is None or (isinstance(inner, (int, float)) and not isinstance(inner, bool)):
                    flat[f"{key}.{name}"] = inner
    return flat
