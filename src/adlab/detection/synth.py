"""Synthetic KITTI-like scenes: real Fashion-MNIST (or digits) objects pasted on wide textured backgrounds.

A data set ultralytics can train on in minutes, with labels that are exact by construction:

    out/data.yaml
    out/images/{train,val}/000000.png   out/labels/{train,val}/000000.txt
    with masks: out/classes.yaml        out/masks/{train,val}/000000.png

so with masks the same folder is also a `masks` segmentation data set (adlab.data.masks): each mask
holds 0 for the background and class id + 1 for an object's pixels, the object drawn last (on top)
where objects overlap; the pixels outside every object are exactly the background's.

Each object is a real image from the source's train split, cropped to its content, scaled (keeping
its aspect), tinted with a random colour and alpha-composited with its own intensity as the mask, so
the background shows around the garment or digit. Its label is the tight box of its mask pixels
inside the image (clipped by the border; occlusion by later objects is limited but, as in KITTI,
does not shrink the box). Objects that would be too small or mostly outside the image are not
drawn at all, so every drawn object has a label and no label lacks its object.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from adlab.classes import resolve_classes
from adlab.data.masks import write_class_names
from adlab.detection.tools import building_output, check_output_folder, check_seed
from adlab.detection.yolo_format import format_label, pixels_to_yolo, write_data_yaml
from adlab.errors import DataError

SOURCES = ("fashion_mnist", "digits")
DEFAULT_CLASSES = {"fashion_mnist": ["Trouser", "Bag", "Sneaker"], "digits": ["0", "1", "7"]}
MASK_THRESHOLD = 0.15  # object intensity above this is the object (its mask); below it, fully transparent
SOLID_INTENSITY = 0.5  # intensity at which the object becomes opaque (soft edge in between)
MIN_BOX_PX = 4  # a clipped box narrower or lower than this is dropped
MIN_VISIBLE = 0.3  # fraction of an object's mask that must lie inside the image
MAX_COVERED = 0.6  # a new object may hide at most this fraction of an earlier object's mask
HEIGHT_FRACTION = (20 / 128, 90 / 128)  # object heights relative to the image height (20-90 px at 128)
MAX_IMAGES = 1_000_000  # a typo of a few extra digits must not fill the disk


@dataclass
class ObjectPool:
    """Object images of the chosen classes, as float [0, 1] arrays [N, h, w] with class ids in `classes` order."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    source: str

    def sample(self, rng: np.random.Generator, n: int) -> list[tuple[int, np.ndarray]]:
        """n (class id, image) pairs: a uniform class, then a uniform image of that class."""
        out = []
        for _ in range(n):
            cls = int(rng.integers(len(self.classes)))
            candidates = self._by_class[cls]
            out.append((cls, self.images[candidates[rng.integers(len(candidates))]]))
        return out

    @functools.cached_property
    def _by_class(self) -> list[np.ndarray]:
        return [np.flatnonzero(self.labels == c) for c in range(len(self.classes))]


def load_pool(source: str = "auto", classes: list[str] | None = None) -> ObjectPool:
    """The object images: Fashion-MNIST if found ('auto' falls back to scikit-learn digits)."""
    if source == "auto":
        try:
            train_x, train_y, names = _load_train("fashion_mnist", False)
            source = "fashion_mnist"
        except DataError:
            train_x, train_y, names = _load_train("digits", False)
            source = "digits"
    elif source in SOURCES:
        train_x, train_y, names = _load_train(source, True)
    else:
        raise DataError(f"unknown object source {source!r} (valid: auto, {', '.join(SOURCES)})")
    wanted = classes if classes is not None else DEFAULT_CLASSES[source]
    source_ids = resolve_classes(wanted, names, f"classes (of {source})")
    chosen = [names[i] for i in source_ids]
    keep = np.isin(train_y, source_ids)
    remap = np.full(len(names), -1, dtype=np.int64)
    remap[source_ids] = np.arange(len(source_ids))
    images = train_x[keep]
    images = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
    return ObjectPool(images, remap[train_y[keep]], chosen, source)


@functools.lru_cache(maxsize=2)
def _load_train(source: str, download: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from adlab.data.sources import load_source

    data = load_source(source, None, download=download)
    return data.train_x[:, 0].numpy(), data.train_y.numpy(), list(data.class_names)


def parse_size(text: str) -> tuple[int, int]:
    """'384x128' -> (384, 128), width x height."""
    try:
        width, height = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise DataError(f"size {text!r}: expected WIDTHxHEIGHT, e.g. 384x128") from None
    return _check_size((width, height))


def _check_size(size) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in size)
        ok = all(float(v) == int(v) for v in size)
    except (TypeError, ValueError):
        raise DataError(f"size {size!r}: expected (width, height)") from None
    if not ok or not (32 <= width <= 8192 and 32 <= height <= 8192):
        raise DataError(f"size {size!r}: width and height must be whole numbers from 32 to 8192 pixels")
    return width, height


# ----------------------------------------------------------------------------------------- rendering


def _smooth_noise(rng: np.random.Generator, cells: tuple[int, int], width: int, height: int) -> np.ndarray:
    """Low-frequency noise [height, width], about unit variance: a small random grid, bilinearly upscaled."""
    grid = rng.standard_normal(cells).astype(np.float32)
    return np.asarray(Image.fromarray(grid, mode="F").resize((width, height), Image.Resampling.BILINEAR))


def make_background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A wide road scene [H, W, 3] uint8: sky gradient, noisy treeline at a random horizon, road gradient,
    smooth colour blotches and fine grain; colours random per image."""
    width, height = size
    y = np.arange(height, dtype=np.float32)[:, None, None]
    horizon = int(rng.uniform(0.3, 0.6) * height)
    sky_top, sky_low = rng.uniform(60, 240, 3), rng.uniform(120, 255, 3)
    road_far, road_near = rng.uniform(50, 170, 3), rng.uniform(20, 140, 3)
    t_sky = np.clip(y / max(horizon, 1), 0, 1)
    t_road = np.clip((y - horizon) / max(height - horizon, 1), 0, 1)
    image = np.where(y < horizon, sky_top * (1 - t_sky) + sky_low * t_sky, road_far * (1 - t_road) + road_near * t_road)
    image = np.broadcast_to(image, (height, width, 3)).astype(np.float32)
    # treeline / buildings: a band above the horizon with a noisy top edge
    band_height = height * rng.uniform(0.04, 0.15) * (1 + 0.6 * _smooth_noise(rng, (1, 16), width, 1)[0])
    band = (y[:, :, 0] < horizon) & (y[:, :, 0] >= horizon - band_height[None, :])
    band_colour = rng.uniform(20, 120, 3)
    shade = 0.8 + 0.4 * rng.random((height, width, 1), dtype=np.float32)
    image = np.where(band[:, :, None], band_colour.astype(np.float32) * shade, image)
    # smooth blotches, per channel, then fine grain
    cells = (max(2, height // 32), max(2, width // 32))
    blotches = np.stack([_smooth_noise(rng, cells, width, height) for _ in range(3)], -1)
    image = image + np.float32(rng.uniform(5, 25)) * blotches
    grain = rng.uniform(2, 8) * rng.standard_normal((height, width, 1), dtype=np.float32)
    image = image + grain + 2 * rng.standard_normal((height, width, 3), dtype=np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _scaled(
    image: np.ndarray, rng: np.random.Generator, size: tuple[int, int], heights: tuple[float, float] | None
) -> np.ndarray | None:
    """The object cropped to its content and resized to a random height (keeping aspect)."""
    width, height = size
    rows, cols = np.flatnonzero((image > MASK_THRESHOLD).any(1)), np.flatnonzero((image > MASK_THRESHOLD).any(0))
    if len(rows) == 0:
        return None
    crop = image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    lo, hi = heights if heights is not None else (HEIGHT_FRACTION[0] * height, HEIGHT_FRACTION[1] * height)
    target_h = rng.uniform(max(lo, 6), max(hi, lo, 6))
    target_h = min(target_h, 0.9 * width * crop.shape[0] / crop.shape[1])  # never wider than the image
    target_w = max(1, int(round(target_h * crop.shape[1] / crop.shape[0])))
    target_h = max(1, int(round(target_h)))
    resized = Image.fromarray(np.ascontiguousarray(crop, dtype=np.float32), mode="F").resize(
        (target_w, target_h), Image.Resampling.BILINEAR
    )
    return np.clip(np.asarray(resized, dtype=np.float32), 0, 1)


def _tint(rng: np.random.Generator) -> np.ndarray:
    """A random, fairly saturated colour (RGB floats 0-255)."""
    colour = rng.uniform(0, 1, 3)
    colour[rng.integers(3)] = rng.uniform(0.7, 1.0)  # one strong channel
    return (40 + 215 * colour).astype(np.float32)


def render_scene(
    rng: np.random.Generator,
    objects: list[tuple[int, np.ndarray]],
    size: tuple[int, int],
    background: np.ndarray | None = None,
    heights: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Composite `objects` ((class id, float [0, 1] intensity image) pairs) onto a wide background.

    size is (width, height); background, if given, is [H, W, 3] uint8 (otherwise make_background);
    heights, if given, is the (min, max) object height in pixels (default 16%-70% of the image height).
    Returns (image [H, W, 3] uint8, boxes [K, 5] float (class, x1, y1, x2, y2) in pixels with x2, y2
    exclusive, masks: K bool arrays [H, W], each drawn object's mask inside the image). Each box is the
    tight box of its mask; objects are drawn in order, later on top. Only kept objects are drawn: an
    object is dropped when its box is under MIN_BOX_PX, when under MIN_VISIBLE of it lies in the image,
    or when no position (8 tries) leaves every earlier object at least 1 - MAX_COVERED visible.
    Pixels outside all masks are exactly the background.
    """
    width, height = _check_size(size)
    if background is None:
        background = make_background(rng, (width, height))
    if background.shape != (height, width, 3):
        raise DataError(f"background is {background.shape}, expected {(height, width, 3)}")
    canvas = background.astype(np.float32)
    boxes: list[tuple] = []
    masks: list[np.ndarray] = []
    centres: list[tuple[float, float]] = []
    for cls, source_image in objects:
        obj = _scaled(np.asarray(source_image, dtype=np.float32), rng, (width, height), heights)
        if obj is None:
            continue
        oh, ow = obj.shape
        alpha = np.clip((obj - MASK_THRESHOLD) / (SOLID_INTENSITY - MASK_THRESHOLD), 0, 1)
        full_area = int((alpha > 0).sum())
        colour, shade = _tint(rng), 0.45 + 0.55 * obj
        placed = None
        for _ in range(8):
            if centres and rng.random() < 0.35:  # next to an earlier object: overlaps and occlusions
                ref = centres[rng.integers(len(centres))]
                cx, cy = ref[0] + rng.normal(0, 0.5 * ow), ref[1] + rng.normal(0, 0.15 * oh)
            else:  # anywhere, centres up to a third of the object past the left, right or bottom edge
                cx, cy = rng.uniform(-ow / 3, width + ow / 3), rng.uniform(0.15 * height, height + oh / 3)
            x0, y0 = int(round(cx - ow / 2)), int(round(cy - oh / 2))
            # the part of the object inside the image
            ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + ow, width), min(y0 + oh, height)
            if ix1 <= ix0 or iy1 <= iy0:
                continue
            sub_alpha = alpha[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
            mask = np.zeros((height, width), dtype=bool)
            mask[iy0:iy1, ix0:ix1] = sub_alpha > 0
            if mask.sum() < MIN_VISIBLE * full_area:
                continue
            ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            box = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
            if box[2] - box[0] < MIN_BOX_PX or box[3] - box[1] < MIN_BOX_PX:
                continue
            if any((m & mask).sum() > MAX_COVERED * m.sum() for m in masks):
                continue
            placed = (ix0, iy0, ix1, iy1, x0, y0, mask, box)
            break
        if placed is None:
            continue
        ix0, iy0, ix1, iy1, x0, y0, mask, box = placed
        a = alpha[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0, None]
        paint = colour * shade[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0, None]
        region = canvas[iy0:iy1, ix0:ix1]
        canvas[iy0:iy1, ix0:ix1] = region * (1 - a) + paint * a
        boxes.append((cls, *box))
        masks.append(mask)
        centres.append(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    # exactly the background where no object is drawn (rounding of float copies cannot drift)
    drawn = np.logical_or.reduce(masks) if masks else np.zeros((height, width), dtype=bool)
    image[~drawn] = background[~drawn]
    return image, np.asarray(boxes, dtype=np.float64).reshape(-1, 5), masks


# ------------------------------------------------------------------------------------------ data set


def synth_scenes(
    out: str | Path,
    images: int,
    classes: list[str] | None = None,
    size: tuple[int, int] = (384, 128),
    seed: int = 0,
    source: str = "auto",
    val_fraction: float = 0.2,
    objects: tuple[int, int] = (1, 6),
    overwrite: bool = False,
    masks: bool = False,
) -> dict:
    """Write a YOLO data set of `images` synthetic wide scenes to `out` (see the module docstring).

    classes: class names (or ids) of the source, matched by adlab.classes.resolve_classes (default
    DEFAULT_CLASSES[source]); label ids follow their order.
    size: (width, height) or 'WxH'. source: 'auto' (Fashion-MNIST, else digits), 'fashion_mnist', 'digits'.
    val_fraction: share of images in images/val (0: train only; data.yaml then validates on train).
    objects: (min, max) objects tried per image (some may be dropped: too small, outside, hidden).
    seed: 0 to 2**32 - 1.
    overwrite: replace an earlier data-tool output in `out` (a folder adlab did not make is never
    written into).
    masks: also write masks/ and classes.yaml (see the module docstring); the images and labels are
    the same bytes with or without them (the masks draw no random numbers).
    Every argument, the classes and the object pool are checked before anything is
    written; the data set is built in a temporary sibling folder and swapped in whole (see
    adlab.detection.tools), so an error leaves `out` as it was.
    Same seed, same arguments: byte-identical files. Returns {"images": {split: n}, "objects":
    {class: boxes}, "source": ..., "data_yaml": path, "masks": masks folder or None}.
    """
    if isinstance(images, bool) or not isinstance(images, (int, np.integer)) or images < 1:
        raise DataError(f"images: need a whole number >= 1, got {images!r}")
    if images > MAX_IMAGES:
        raise DataError(f"images: at most {MAX_IMAGES}, got {images}")
    size = parse_size(size) if isinstance(size, str) else _check_size(size)
    seed = check_seed(seed)
    try:
        val_fraction = float(val_fraction)
    except (TypeError, ValueError):
        raise DataError(f"val_fraction: need a number in [0, 1), got {val_fraction!r}") from None
    if not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction: need a number in [0, 1), got {val_fraction}")
    try:
        lo, hi = (int(v) for v in objects)
    except (TypeError, ValueError):
        raise DataError(f"objects: need (min, max), got {objects!r}") from None
    if not 0 <= lo <= hi <= 100:
        raise DataError(f"objects: need 0 <= min <= max <= 100, got {objects!r}")
    check_output_folder(out, (), overwrite)
    pool = load_pool(source, classes)
    if masks and len(pool.classes) > 254:  # ids 1..254 (0 background, 255 ignore); the sources have 10 classes
        raise DataError(f"classes: {len(pool.classes)} with masks, at most 254")

    n_val = 0 if val_fraction == 0 or images < 2 else min(images - 1, max(1, int(round(images * val_fraction))))
    splits = ["train", "val"] if n_val else ["train"]
    width, height = size
    rng = np.random.default_rng(seed)
    counts = {name: 0 for name in pool.classes}
    per_split = {"train": 0, "val": 0}
    with building_output(out, "synth-scenes", (), overwrite) as tmp:
        for split in splits:
            (tmp / "images" / split).mkdir(parents=True, exist_ok=True)
            (tmp / "labels" / split).mkdir(parents=True, exist_ok=True)
            if masks:
                (tmp / "masks" / split).mkdir(parents=True, exist_ok=True)
        for index in range(images):
            split = "val" if index >= images - n_val else "train"
            image, boxes, drawn = render_scene(rng, pool.sample(rng, int(rng.integers(lo, hi + 1))), size)
            stem = f"{index:06d}"
            Image.fromarray(image).save(tmp / "images" / split / f"{stem}.png", format="PNG", compress_level=1)
            if masks:
                Image.fromarray(class_mask(boxes, drawn, size), mode="L").save(
                    tmp / "masks" / split / f"{stem}.png", format="PNG", compress_level=1
                )
            yolo = pixels_to_yolo(boxes[:, 1:], width, height)
            lines = [format_label(int(cls), box) for cls, box in zip(boxes[:, 0], yolo, strict=True)]
            (tmp / "labels" / split / f"{stem}.txt").write_text(
                "".join(line + "\n" for line in lines), encoding="utf-8"
            )
            for cls in boxes[:, 0]:
                counts[pool.classes[int(cls)]] += 1
            per_split[split] += 1
        write_data_yaml(tmp, pool.classes, splits)
        if masks:
            write_class_names(tmp, ["background", *pool.classes])
    data_yaml = Path(out).expanduser() / "data.yaml"
    masks_folder = str(Path(out).expanduser() / "masks") if masks else None
    return {
        "images": per_split,
        "objects": counts,
        "source": pool.source,
        "data_yaml": str(data_yaml),
        "masks": masks_folder,
    }


def class_mask(boxes: np.ndarray, masks: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """One class id per pixel [H, W] uint8 from render_scene's boxes and masks: 0 background, class
    id + 1 inside an object's mask, a later object (drawn on top) overwriting an earlier one."""
    width, height = size
    ids = np.zeros((height, width), dtype=np.uint8)
    for cls, mask in zip(boxes[:, 0], masks, strict=True):
        ids[mask] = int(cls) + 1
    return ids
