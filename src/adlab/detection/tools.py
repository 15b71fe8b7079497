"""Tools on YOLO data sets: keep some classes (`filter_classes`), cut every box out as an
ImageFolder of crops (`make_crops`), and the output-folder rule every data tool shares (these two,
the KITTI converter and the synthetic scenes).

Output-folder rule: a tool never writes into its output folder piece by piece. It builds the whole
result in a temporary sibling folder and renames it into place at the end, so an error or an
interrupt leaves either nothing or the previous result. The result carries adlab's ownership marker
(`.adlab.json`, kind "data", with the tool's name). An existing output folder is replaced only when
it is empty, or when it holds an earlier data-tool output (that marker, or the `.adlab-output.json`
of earlier adlab versions) and the user asked for it (`overwrite`, the `--overwrite` flag). A
folder without the marker is the user's: it is never written into. Never `.`, a parent of the
working directory or the home folder; never a folder that overlaps the input.
"""

from __future__ import annotations

import math
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from adlab import io, ownership
from adlab.classes import resolve_classes
from adlab.detection.yolo_format import (
    SkipCounter,
    YoloDataset,
    format_label,
    label_path_for,
    read_data_yaml,
    read_labels,
    write_data_yaml,
    yolo_to_pixels,
)
from adlab.errors import AdlabError, DataError
from adlab.names import check_name

MARKER = ownership.MARKER  # the marker every data-tool output carries (kind "data")
LEGACY_MARKER = ".adlab-output.json"  # earlier adlab versions' data-tool marker, still recognised
KIND = "data"
MAX_SEED = 2**32 - 1
MAX_CROP_SIZE = 8192
MANIFEST_COLUMNS = ("crop", "source_image", "split", "class", "x1", "y1", "x2", "y2")


# --- arguments -----------------------------------------------------------------------------------


def check_seed(seed, key: str = "seed") -> int:
    """A random seed: a whole number from 0 to 2**32 - 1 (what every random generator accepts)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        shown = repr(seed) if not isinstance(seed, int) or abs(seed) < 10**30 else f"a {len(str(seed))}-digit number"
        raise DataError(f"{key}: need a whole number from 0 to {MAX_SEED}, got {shown}")
    return int(seed)


# --- output folders ------------------------------------------------------------------------------


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def check_output_folder(out: str | Path, protected: Iterable[Path] = (), overwrite: bool = False) -> Path:
    """The absolute output folder, after refusing one that would destroy the user's files (see the
    module docstring). Writes nothing; an error (DataError) names the folder."""
    given = Path(out).expanduser()
    try:
        resolved = given.resolve()
        for path in protected:  # first: the most precise reason when --out is (inside) the input
            path = Path(path).expanduser().resolve()
            if _overlaps(resolved, path):
                raise DataError(f"{out}: output folder overlaps the input {path}; choose a separate folder")
        ownership.check_output(given, KIND, overwrite)
    except DataError:
        raise
    except AdlabError as exc:
        raise DataError(str(exc)) from None
    except (OSError, ValueError) as exc:  # a NUL byte or an over-long name in the path
        raise DataError(f"{out}: cannot be an output folder ({exc})") from None
    return resolved


@contextmanager
def building_output(
    out: str | Path, kind: str, protected: Iterable[Path] = (), overwrite: bool = False
) -> Iterator[Path]:
    """Yield a temporary sibling of `out` to build into; on success it gets the data marker
    (recording the tool `kind`) and becomes `out` (replacing an empty folder, or an earlier data-tool
    output when `overwrite`); on any error it is removed, with any parent folders made for it, and
    `out` is left untouched."""
    given = Path(out).expanduser()
    out = check_output_folder(given, protected, overwrite)
    created: list[Path] = []
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        _make_parents(out.parent, created)
        tmp.mkdir()  # not mkdtemp: its 0700 folder would become the output; this one follows the umask
    except OSError as exc:
        _remove_empty(created)
        raise DataError(f"{given}: cannot create the output folder ({exc.strerror or exc})") from None
    try:
        yield tmp
        ownership.write_marker(tmp, KIND, tool=kind)
        check_output_folder(given, (), overwrite)  # again: something may have appeared there while we worked
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        raise


def _make_parents(folder: Path, created: list[Path]) -> None:
    """mkdir -p `folder`, adding each folder it makes to `created`, deepest first."""
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir()
        created.insert(0, path)


def _remove_empty(folders: list[Path]) -> None:
    for path in folders:
        try:
            path.rmdir()
        except OSError:
            break


def _swap_into_place(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.rename(tmp, out)
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def image_size(path: Path, skip: SkipCounter | None = None) -> tuple[int, int] | None:
    """(width, height) from the image's header (its pixels are not decoded): an unreadable image,
    or one too large to decode safely (Pillow's decompression-bomb limit), is an error naming the
    file, or, with `skip`, None and counted."""
    from PIL import Image

    try:
        with Image.open(path) as opened:
            return opened.size
    except image_errors() as exc:
        _bad_image(path, exc, skip)
        return None


def load_rgb(path: Path, skip: SkipCounter | None = None):
    """The image decoded as RGB (a PIL image), with the same errors as `image_size`."""
    from PIL import Image

    try:
        with Image.open(path) as opened:
            return opened.convert("RGB")
    except image_errors() as exc:
        _bad_image(path, exc, skip)
        return None


def image_errors() -> tuple[type[BaseException], ...]:
    """What Pillow raises for a file it cannot (or must not) decode."""
    from PIL import Image

    return (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def _bad_image(path: Path, exc: BaseException, skip: SkipCounter | None) -> None:
    from PIL import Image

    if skip is None:
        from adlab.data.images import unreadable

        raise DataError(unreadable(path, exc)) from None  # the same words as for training images
    skip.add(
        "image too large to decode safely" if isinstance(exc, Image.DecompressionBombError) else "unreadable image"
    )
    return None


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link `src` to `dst` (cheap for large data sets), or copy where links are not possible."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def dataset_splits(ds: YoloDataset) -> dict[str, Path]:
    """The splits of a data set, each folder once: a data.yaml without a val split names the train
    folder as val (ultralytics needs a val entry), which must not be processed twice."""
    seen: set[Path] = set()
    splits = {}
    for split, folder in ds.splits.items():
        key = folder.resolve()
        if key not in seen:
            seen.add(key)
            splits[split] = folder
    return splits


def _protected(ds: YoloDataset) -> list[Path]:
    return [ds.root, ds.yaml_path, *ds.splits.values()]


# --- filter --------------------------------------------------------------------------------------


def filter_classes(
    data_yaml: Path, keep: list[str], out: Path, drop_empty: bool = False, overwrite: bool = False
) -> dict:
    """Copy a YOLO data set keeping only the classes `keep`, names or ids matched by
    adlab.classes.resolve_classes (new ids are 0..k-1 in the order of `keep`).
    Every image's header is read (an unreadable image is an error naming it), its pixels are not.
    `overwrite`: replace an earlier data-tool output in `out` (see the module docstring).

    Returns {"names", "images": {split: n}, "objects": {name: n}, "removed_objects",
    "dropped_images", "data_yaml", "out"}.
    """
    ds = read_data_yaml(data_yaml)
    old_ids = resolve_classes(list(keep), ds.names, f"{ds.yaml_path}: keep")
    new_names = [ds.names[i] for i in old_ids]
    remap = {old: new for new, old in enumerate(old_ids)}
    splits = dataset_splits(ds)
    check_output_folder(out, _protected(ds), overwrite)  # before the work, not only at its end
    images = {split: 0 for split in splits}
    objects = {name: 0 for name in new_names}
    removed = dropped = 0
    with building_output(out, "filter", _protected(ds), overwrite) as tmp:
        for split, folder in splits.items():
            for image in ds.images(split):
                rows = read_labels(ds.label_path(image), len(ds.names))
                kept = [row for row in rows if int(row[0]) in remap]
                removed += len(rows) - len(kept)
                if drop_empty and not kept:
                    dropped += 1
                    continue
                image_size(image)  # a file ultralytics could not (or must not) decode fails here, named
                target = tmp / "images" / split / image.relative_to(folder)
                link_or_copy(image, target)
                lines = [format_label(remap[int(row[0])], row[1:5]) for row in kept]
                label = label_path_for(target)
                label.parent.mkdir(parents=True, exist_ok=True)
                label.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
                for row in kept:
                    objects[new_names[remap[int(row[0])]]] += 1
                images[split] += 1
        if not images.get("train"):
            raise DataError(f"{ds.yaml_path}: no training images left after keeping {', '.join(new_names)}")
        # a split left without images is not named in data.yaml (its folder does not exist)
        write_data_yaml(tmp, new_names, [split for split in splits if images[split]])
    final = Path(out).expanduser().resolve()
    return {
        "names": new_names,
        "images": images,
        "objects": objects,
        "removed_objects": removed,
        "dropped_images": dropped,
        "data_yaml": str(final / "data.yaml"),
        "out": str(final),
    }


# --- crops ---------------------------------------------------------------------------------------


def check_class_folder_names(names: list[str], source: Path) -> None:
    """Class names become folder names: each must pass the one name sanitiser, and none may repeat."""
    for name in names:
        check_name(name, key=f"{source}: class name", error=DataError)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"{source}: class name(s) {', '.join(repeated)} appear more than once")


def crop_box(box: np.ndarray, width: int, height: int, pad: float) -> tuple[tuple[int, int, int, int], float, float]:
    """Integer crop region (x1, y1, x2, y2) of one normalised (cx, cy, w, h) box, and the box's own
    width and height in pixels after clipping to the image (what min_size is compared with).

    The box is enlarged by `pad` times its width/height on each side, clipped to the image, then
    rounded outwards (floor x1, y1; ceil x2, y2). A tolerance of 1e-6 of the image size absorbs the
    rounding of the 6-decimal label text, so an exact pixel edge is not rounded out by one pixel.
    """
    x1, y1, x2, y2 = (float(v) for v in yolo_to_pixels(np.asarray(box, dtype=np.float64), width, height))
    own_w = min(x2, width) - max(x1, 0.0)
    own_h = min(y2, height) - max(y1, 0.0)
    bw, bh = x2 - x1, y2 - y1
    x1, x2 = max(x1 - pad * bw, 0.0), min(x2 + pad * bw, float(width))
    y1, y2 = max(y1 - pad * bh, 0.0), min(y2 + pad * bh, float(height))
    eps = 1e-6 * max(width, height)
    region = (
        max(math.floor(x1 + eps), 0),
        max(math.floor(y1 + eps), 0),
        min(math.ceil(x2 - eps), width),
        min(math.ceil(y2 - eps), height),
    )
    return region, own_w, own_h


def make_crops(
    data_yaml: Path,
    out: Path,
    size: int = 128,
    pad: float = 0.0,
    min_size: int = 8,
    skip_bad: bool = False,
    overwrite: bool = False,
) -> dict:
    """Cut every box of every split out of its image into out/<split>/<class>/<stem>_<index>.png
    (an ImageFolder per split), resized to size x size, plus out/manifest.csv. `skip_bad`: a bad
    label line or an unreadable image is skipped and counted instead of stopping. `overwrite`:
    replace an earlier data-tool output in `out` (see the module docstring).

    Returns {"crops": {split: {class: n}}, "total", "skipped_small", "skipped_bad",
    "skipped_reasons", "manifest", "out"}.
    """
    from PIL import Image

    try:
        whole = not isinstance(size, bool) and float(size) == int(size)
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole or not 1 <= size <= MAX_CROP_SIZE:
        raise DataError(f"crop size must be a whole number of pixels from 1 to {MAX_CROP_SIZE}, not {size}")
    if not (isinstance(pad, (int, float)) and math.isfinite(pad) and pad >= 0):
        raise DataError(f"pad must be a fraction >= 0, not {pad}")
    if not (isinstance(min_size, (int, float)) and math.isfinite(min_size) and min_size >= 0):
        raise DataError(f"min_size must be >= 0, not {min_size}")
    ds = read_data_yaml(data_yaml)
    check_class_folder_names(ds.names, ds.yaml_path)
    splits = dataset_splits(ds)
    check_output_folder(out, _protected(ds), overwrite)  # before the work, not only at its end
    skip = SkipCounter() if skip_bad else None
    counts: dict[str, dict[str, int]] = {split: {} for split in splits}
    skipped_small = 0
    rows_out = []
    final = Path(out).expanduser().resolve()
    with building_output(out, "crops", _protected(ds), overwrite) as tmp:
        for split, folder in splits.items():
            used: dict[str, Path] = {}
            for image_path in ds.images(split):
                boxes = read_labels(ds.label_path(image_path), len(ds.names), skip)
                if not len(boxes):
                    continue
                image = load_rgb(image_path, skip)
                if image is None:
                    continue
                width, height = image.size
                stem = image_path.relative_to(folder).with_suffix("").as_posix().replace("/", "__")
                if stem in used:
                    raise DataError(f"{image_path}: same crop names as {used[stem]} (same file stem)")
                used[stem] = image_path
                for index, row in enumerate(boxes):
                    (x1, y1, x2, y2), own_w, own_h = crop_box(row[1:5], width, height, pad)
                    if own_w < min_size or own_h < min_size or x2 <= x1 or y2 <= y1:
                        skipped_small += 1
                        continue
                    name = ds.names[int(row[0])]
                    crop = image.crop((x1, y1, x2, y2)).resize((int(size), int(size)), Image.Resampling.BILINEAR)
                    relative = Path(split) / name / f"{stem}_{index}.png"
                    (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
                    crop.save(tmp / relative)
                    counts[split][name] = counts[split].get(name, 0) + 1
                    source = Path(os.path.relpath(image_path.resolve(), final))
                    rows_out.append((relative.as_posix(), source.as_posix(), split, name, x1, y1, x2, y2))
        if not rows_out:
            raise DataError(
                f"{ds.yaml_path}: no boxes to crop"
                + (f" ({skipped_small} smaller than {min_size} px)" if skipped_small else "")
            )
        io.write_csv(tmp / "manifest.csv", MANIFEST_COLUMNS, rows_out)
    counts = {split: dict(sorted(c.items())) for split, c in counts.items() if c}
    return {
        "crops": counts,
        "total": len(rows_out),
        "skipped_small": skipped_small,
        "skipped_bad": skip.total() if skip else 0,
        "skipped_reasons": dict(skip.counts) if skip else {},
        "manifest": str(final / "manifest.csv"),
        "out": str(final),
    }
