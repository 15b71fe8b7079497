"""KITTI object labels (devkit format) -> a YOLO data set with a seeded train/val split.

KITTI label line (guide, section 4), boxes in pixels:
    type truncated occluded alpha x1 y1 x2 y2 h w l x y z ry [score]
Only the type and the 2-D box (x1 y1 x2 y2) are used; every other field must still be a number.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adlab.detection.tools import building_output, check_output_folder, check_seed, image_size, link_or_copy
from adlab.detection.yolo_format import SkipCounter, format_label, pixels_to_yolo, write_data_yaml
from adlab.errors import DataError
from adlab.image_formats import YOLO_IMAGE_SUFFIXES

DEGENERATE_PX = 1.0  # boxes this narrow or low (or less) after clipping are dropped


def parse_kitti_line(line: str) -> tuple[str | None, tuple[str, np.ndarray] | None]:
    """(problem, None) for a malformed line, else (None, (type, [x1, y1, x2, y2]))."""
    fields = line.split()
    if len(fields) not in (15, 16):
        return (
            f"expected 15 or 16 fields (type truncated occluded alpha x1 y1 x2 y2 h w l x y z ry [score]), "
            f"found {len(fields)}"
        ), None
    try:
        values = np.array([float(v) for v in fields[1:]], dtype=np.float64)
    except ValueError:
        return f"non-numeric value ({line.strip()!r})", None
    if not np.isfinite(values).all():
        return f"non-finite value ({line.strip()!r})", None
    x1, y1, x2, y2 = values[3:7]
    if x2 < x1 or y2 < y1:
        return f"box corners out of order (x2 < x1 or y2 < y1: x1 y1 x2 y2 = {' '.join(fields[4:8])})", None
    return None, (fields[0], values[3:7].copy())


def _class_map(classes: list[str], rename: dict[str, str] | None) -> tuple[list[str], dict[str, int], dict[str, str]]:
    """Output names, KITTI type (case-folded) -> output id, and case-folded type -> spelling in `classes`."""
    classes = [str(c).strip() for c in classes]
    if not classes or not all(classes):
        raise DataError("classes: name at least one KITTI type to keep (e.g. Car,Pedestrian,Cyclist)")
    folded = [c.casefold() for c in classes]
    repeated = sorted({c for c, f in zip(classes, folded, strict=True) if folded.count(f) > 1})
    if repeated:
        raise DataError(f"classes: {', '.join(repeated)} named more than once")
    spelled = dict(zip(folded, classes, strict=True))
    renamed: dict[str, str] = {}
    for source, target in (rename or {}).items():
        key = str(source).strip().casefold()
        if key not in spelled:
            raise DataError(f"rename: {source!r} is not one of the classes ({', '.join(classes)})")
        if not str(target).strip():
            raise DataError(f"rename: empty new name for {source!r}")
        renamed[key] = str(target).strip()
    names: list[str] = []
    type_to_id: dict[str, int] = {}
    for key, original in spelled.items():
        name = renamed.get(key, original)
        if name not in names:
            names.append(name)
        type_to_id[key] = names.index(name)
    return names, type_to_id, spelled


def _split(count: int, val_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask over `count` images (sorted by name): True = val."""
    is_val = np.zeros(count, dtype=bool)
    n_val = int(round(count * val_fraction))
    if val_fraction > 0 and count > 1:
        n_val = min(max(n_val, 1), count - 1)  # a val fraction > 0 gives a val split, never an empty train
    else:
        n_val = 0
    if n_val:
        is_val[np.random.default_rng(seed).permutation(count)[:n_val]] = True
    return is_val


def kitti_to_yolo(
    images: Path,
    labels: Path,
    out: Path,
    classes: list[str],
    rename: dict[str, str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    skip_bad: bool = False,
    overwrite: bool = False,
) -> dict:
    """Convert a KITTI image folder + label folder into a YOLO data set at `out`.

    Types are matched to `classes` case-insensitively; ids follow the order of `classes`, and
    `rename` (KITTI type -> output name) may merge types into one output class. `overwrite`:
    replace an earlier data-tool output in `out` (a folder adlab did not make is never replaced;
    see adlab.detection.tools).

    Returns {"names", "images": {split: n}, "objects": {name: n}, "dropped": {kitti type: n},
    "degenerate", "clipped", "skipped", "skipped_reasons", "images_without_labels",
    "data_yaml", "out"}.
    """
    images, labels = Path(images), Path(labels)
    for what, folder in (("images", images), ("labels", labels)):
        if not folder.is_dir():
            raise DataError(f"{folder}: KITTI {what} folder not found")
    if not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction must be in [0, 1), not {val_fraction}")
    seed = check_seed(seed)
    names, type_to_id, _ = _class_map(classes, rename)
    protected = [images, labels]
    check_output_folder(out, protected, overwrite)  # before the work, not only at its end
    skip = SkipCounter() if skip_bad else None

    image_files: dict[str, Path] = {}
    for path in sorted(p for p in images.iterdir() if p.is_file() and p.suffix.lower() in YOLO_IMAGE_SUFFIXES):
        if path.stem in image_files:
            raise DataError(f"{path}: same name as {image_files[path.stem]} (one label file cannot serve both)")
        image_files[path.stem] = path
    label_files = {p.stem: p for p in sorted(labels.iterdir()) if p.is_file() and p.suffix.lower() == ".txt"}
    for stem, path in label_files.items():
        if stem not in image_files:
            if skip is None:
                raise DataError(f"{path}: label file without an image (no {stem}.png, .jpg, ... in {images})")
            skip.add("label file without image")

    objects = {name: 0 for name in names}
    dropped: dict[str, int] = {}
    degenerate = clipped = 0
    converted: list[tuple[Path, list[str]]] = []  # (image, YOLO lines), sorted by name
    for stem, image_path in image_files.items():
        size = image_size(image_path, skip)  # reads the header only, not the pixels
        if size is None:
            continue
        width, height = size
        label_path = label_files.get(stem)
        lines = []
        text = label_path.read_text(encoding="utf-8", errors="replace") if label_path else ""
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            problem, parsed = parse_kitti_line(line)
            if problem:
                if skip is None:
                    raise DataError(f"{label_path}:{number}: {problem}")
                skip.add(problem.split(" (")[0])
                continue
            assert parsed is not None  # no problem: the line parsed
            kitti_type, box = parsed
            cls = type_to_id.get(kitti_type.casefold())
            if cls is None:
                dropped[kitti_type] = dropped.get(kitti_type, 0) + 1
                continue
            inside = np.clip(box, 0, [width, height, width, height])
            if inside[2] - inside[0] <= DEGENERATE_PX or inside[3] - inside[1] <= DEGENERATE_PX:
                degenerate += 1
                continue
            if not np.array_equal(inside, box):
                clipped += 1
            lines.append(format_label(cls, pixels_to_yolo(inside, width, height)))
            objects[names[cls]] += 1
        converted.append((image_path, lines))
    if not converted:
        raise DataError(f"{images}: no images ({', '.join(YOLO_IMAGE_SUFFIXES)}) to convert")

    is_val = _split(len(converted), val_fraction, seed)
    splits = ["train", "val"] if is_val.any() else ["train"]
    counts = {split: 0 for split in splits}
    final = Path(out).expanduser().resolve()
    with building_output(out, "kitti-to-yolo", protected, overwrite) as tmp:
        for (image_path, lines), val in zip(converted, is_val, strict=True):
            split = "val" if val else "train"
            link_or_copy(image_path, tmp / "images" / split / image_path.name)
            label = tmp / "labels" / split / f"{image_path.stem}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            counts[split] += 1
        write_data_yaml(tmp, names, splits)
    return {
        "names": names,
        "images": counts,
        "objects": objects,
        "dropped": dict(sorted(dropped.items())),
        "degenerate": degenerate,
        "clipped": clipped,
        "skipped": skip.total() if skip else 0,
        "skipped_reasons": dict(sorted(skip.counts.items())) if skip else {},
        "images_without_labels": sum(1 for stem in image_files if stem not in label_files),
        "data_yaml": str(final / "data.yaml"),
        "out": str(final),
    }
