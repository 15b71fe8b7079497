"""The YOLO data set format, read and written carefully.

Layout (what ultralytics reads):
    data.yaml                 path, train, val, names
    images/{train,val}/*.png  labels/{train,val}/*.txt   (same stem)
Label line: `class cx cy w h`, all normalised by image width/height (guide, section 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from adlab.errors import DataError
from adlab.image_formats import YOLO_IMAGE_SUFFIXES
from adlab.io import read_yaml_mapping


def yolo_to_pixels(box: np.ndarray, width: int, height: int) -> np.ndarray:
    """[..., (cx, cy, w, h)] normalised -> [..., (x1, y1, x2, y2)] pixels."""
    cx, cy, w, h = (box[..., i] for i in range(4))
    return np.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], -1)


def pixels_to_yolo(box: np.ndarray, width: int, height: int) -> np.ndarray:
    """[..., (x1, y1, x2, y2)] pixels -> [..., (cx, cy, w, h)] normalised."""
    x1, y1, x2, y2 = (box[..., i] for i in range(4))
    return np.stack([(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height], -1)


@dataclass
class SkipCounter:
    """What was skipped instead of failing, by reason (when the user asks to skip bad lines)."""

    counts: dict = field(default_factory=dict)

    def add(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1

    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        return ", ".join(f"{n} {reason}" for reason, n in sorted(self.counts.items())) or "nothing"


def read_labels(path: Path, num_classes: int, skip: SkipCounter | None = None) -> np.ndarray:
    """Rows (class, cx, cy, w, h) of one label file; a bad line is an error naming file and line,
    or, with `skip`, is dropped and counted."""
    rows = []
    if not path.is_file():
        return np.zeros((0, 5), dtype=np.float64)
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        problem, row = _parse_line(line, num_classes)
        if problem:
            if skip is None:
                raise DataError(f"{path}:{number}: {problem}")
            skip.add(problem.split(" (")[0])
            continue
        rows.append(row)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def _parse_line(line: str, num_classes: int) -> tuple[str | None, list[float] | None]:
    fields = line.split()
    if len(fields) != 5:
        return f"expected 5 fields 'class cx cy w h', found {len(fields)}", None
    try:
        values = [float(v) for v in fields]
    except ValueError:
        return f"non-numeric value in {line.strip()!r}", None
    cls = values[0]
    if not np.isfinite(cls) or cls != int(cls) or not 0 <= cls < num_classes:  # int(nan) would raise
        return f"class id out of range ({fields[0]} not in 0..{num_classes - 1})", None
    if not all(np.isfinite(values)) or any(v < 0 or v > 1 for v in values[1:]):
        return f"coordinates outside [0, 1] ({' '.join(fields[1:])})", None
    cx, cy, w, h = values[1:]
    if w <= 0 or h <= 0:
        return f"zero-size box ({w} x {h})", None
    if cx - w / 2 < -1e-6 or cx + w / 2 > 1 + 1e-6 or cy - h / 2 < -1e-6 or cy + h / 2 > 1 + 1e-6:
        return f"box extends outside the image ({' '.join(fields[1:])})", None
    return None, values


def format_label(cls: int, box: np.ndarray) -> str:
    return f"{int(cls)} " + " ".join(f"{float(v):.6f}" for v in box)


@dataclass
class YoloDataset:
    """A data.yaml and what it points to."""

    yaml_path: Path
    root: Path
    names: list[str]
    splits: dict[str, Path]  # split name -> images folder

    def images(self, split: str) -> list[Path]:
        folder = self.splits[split]
        return sorted(p for p in folder.rglob("*") if p.suffix.lower() in YOLO_IMAGE_SUFFIXES)

    def label_path(self, image: Path) -> Path:
        return label_path_for(image)


def label_path_for(image: Path) -> Path:
    """ultralytics' rule: the last 'images' folder in the path becomes 'labels', suffix .txt."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


SPLITS = ("train", "val", "test")


def read_data_yaml(path: str | Path) -> YoloDataset:
    """A YOLO data.yaml, checked: `names` a non-empty list of class names or a mapping with the keys
    0..n-1; `path` (optional) a folder; each split one folder, relative to `path` or absolute. A bad
    value is one error naming the file and the key."""
    path = Path(path)
    spec = read_yaml_mapping(path, "data.yaml", DataError)
    if "names" not in spec:
        raise DataError(f"{path}: not a YOLO data.yaml (needs 'names' and 'train')")
    names = _class_names(spec["names"], path)
    root_value = spec.get("path")
    if root_value is not None and not isinstance(root_value, str):
        raise DataError(f"{path}: path: expected the data set folder as text, got {_shown(root_value)}")
    root = Path(root_value or path.parent)
    try:
        if not root.is_absolute():
            root = (path.parent / root).resolve()
    except (OSError, ValueError):  # a NUL byte, or a link loop
        raise DataError(f"{path}: path: {_shown(root_value)} is not a usable folder") from None
    splits = {}
    for split in SPLITS:
        value = spec.get(split)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise DataError(
                f"{path}: {split}: expected one images folder (relative to path, or absolute), got {_shown(value)}"
            )
        folder = root / value
        try:
            found = folder.is_dir()
        except (OSError, ValueError):  # a name with a NUL byte, or too long for the file system
            found = False
        if not found:
            raise DataError(f"{path}: {split} folder {_shown(str(folder), 200)} not found")
        splits[split] = folder
    if "train" not in splits:
        raise DataError(f"{path}: no train split")
    return YoloDataset(path, root, names, splits)


def _shown(value: object, limit: int = 80) -> str:
    """A value for an error message: its repr (for text, the text), cut short, on one line."""
    text = value if isinstance(value, str) and value.isprintable() else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _class_name(value: object, key: str, path: Path) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # `names: [0, 1]`: YAML reads digits as numbers
    raise DataError(f"{path}: {key}: expected a class name (text), got {_shown(value)}")


def _class_names(names: object, path: Path) -> list[str]:
    """`names` as a list: a list of names, or a mapping whose keys are exactly the ids 0..n-1."""
    if isinstance(names, dict):
        if not names:
            raise DataError(f"{path}: names: no class names")
        keys = list(names)
        if any(isinstance(k, bool) or not isinstance(k, int) for k in keys) or sorted(keys) != list(range(len(keys))):
            shown = ", ".join(_shown(k, 20) for k in keys[:8]) + (", ..." if len(keys) > 8 else "")
            raise DataError(f"{path}: names: the keys must be the class ids 0..{len(keys) - 1}, got {shown}")
        return [_class_name(names[k], f"names[{k}]", path) for k in range(len(keys))]
    if isinstance(names, list):
        if not names:
            raise DataError(f"{path}: names: no class names")
        return [_class_name(n, f"names[{i}]", path) for i, n in enumerate(names)]
    if names is None:
        raise DataError(f"{path}: names: no class names")
    raise DataError(
        f"{path}: names: expected a list of class names or a mapping 0: name, 1: name, ..., got {_shown(names)}"
    )


def write_data_yaml(out: Path, names: list[str], splits: list[str]) -> Path:
    """data.yaml with a relative `path`, so the folder can be moved as a whole."""
    from adlab import io

    spec = {"path": ".", **{s: f"images/{s}" for s in splits}, "names": dict(enumerate(names))}
    if "val" not in splits:
        spec["val"] = "images/train"  # ultralytics needs a val entry; with no val split it re-scores train
    io.write_yaml(out / "data.yaml", spec)
    return out / "data.yaml"
