"""Paths in config and study files are relative to the file that holds them.

Only `data.root` and `model.weights` name files. `{out}` (a study's folder) is left for the study
runner; `model.weights` may also be a name (imagenet, an ultralytics checkpoint such as yolov8n.pt),
kept as written when no such file is next to the config. Configs written before this rule named
paths relative to the working directory: such a path, when it exists only there, is still used,
with a one-line notice.
"""

from __future__ import annotations

import os
from pathlib import Path

from adlab import io

PATH_KEYS = (("data", "root"), ("model", "weights"))
WEIGHT_NAMES = ("imagenet",)


def resolve_paths(raw: dict, folder: Path, origin: str) -> dict:
    """`raw` (a config mapping) with its relative paths made absolute against `folder`, in place."""
    for section, key in PATH_KEYS:
        node = raw.get(section)
        if not isinstance(node, dict) or not isinstance(node.get(key), str):
            continue
        node[key] = resolve(node[key], folder, f"{origin}: {section}.{key}", is_weights=key == "weights")
    return raw


def resolve(value: str, folder: Path, where: str, is_weights: bool = False) -> str:
    if "{out}" in value or not value.strip() or (is_weights and value in WEIGHT_NAMES):
        return value
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    beside = Path(os.path.normpath(Path(folder).absolute() / path))
    if beside.exists():
        return str(beside)
    if is_weights and len(path.parts) == 1:
        return value  # a name for the model's own loader (an ultralytics checkpoint, downloaded on first use)
    if path.exists() and Path(folder).absolute() != Path.cwd():  # the rule before: the working directory
        io.notice(
            f"{where}: {value} read from the working directory; paths in a config file are relative to "
            "the file now (write it as seen from the file, or as an absolute path)"
        )
        return os.path.normpath(path.absolute())
    return str(beside)
