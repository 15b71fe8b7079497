"""Semantic segmentation data: images with one class id per pixel, each file decoded once into uint8 tensors.

Three sources (data.name):

- `masks`: a folder of images and single-channel index-PNG masks named by classes.yaml (the layout
  `adlab data synth-scenes --masks` writes, beside its YOLO labels):

      root/classes.yaml                 names: [background, Trouser, Bag]  (index = pixel value)
      root/images/{train,val,test}/*.png|jpg|jpeg   root/masks/{train,val,test}/<same stem>.png
      or flat: root/images/*.png|jpg|jpeg + root/masks/*.png (train only; the caller carves val and test)

- `kitti_semantic`: KITTI's semantic segmentation benchmark (root holds training/image_2 and
  training/semantic), its Cityscapes label ids mapped to the 19 Cityscapes train ids. KITTI's images
  differ by a pixel or two (1242x375, 1241x376, ...), so it needs data.image_size (256, say).
- `oxford_pet`: the Oxford-IIIT Pet trimaps through torchvision: pet, background, the border ignored.

Pixels of value IGNORE are neither trained on nor scored. Everything read is untrusted input: a broken
file is one DataError naming it, never a silent omission.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from adlab.data.images import as_array, is_grey, unreadable
from adlab.data.sources import _download, default_root
from adlab.errors import DataError
from adlab.io import read_yaml_mapping

IGNORE = 255
MASK_SETS = ("masks", "kitti_semantic", "oxford_pet")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # images of a `masks` folder or KITTI (compared lower-case)
MASK_SUFFIX = ".png"  # lossless: a JPEG would blur class ids at every edge
MASK_MODES = ("L", "P", "1")  # one 8-bit (or 1-bit) channel; P is read as its indices, not its palette colours
SPLITS = ("train", "val", "test")
MAX_CLASSES = 255  # ids 0..254; 255 is IGNORE
OXFORD_PET_SIZE = 128  # oxford_pet's images vary in size: this side when data.image_size is unset

# Cityscapes label id -> train id, from cityscapesScripts' labels.py (cityscapesscripts/helpers/labels.py,
# the `trainId` column); every id not listed (unlabeled, ego vehicle, ..., license plate) is IGNORE.
CITYSCAPES_TRAIN_IDS = {
    7: 0,  # road
    8: 1,  # sidewalk
    11: 2,  # building
    12: 3,  # wall
    13: 4,  # fence
    17: 5,  # pole
    19: 6,  # traffic light
    20: 7,  # traffic sign
    21: 8,  # vegetation
    22: 9,  # terrain
    23: 10,  # sky
    24: 11,  # person
    25: 12,  # rider
    26: 13,  # car
    27: 14,  # truck
    28: 15,  # bus
    31: 16,  # train
    32: 17,  # motorcycle
    33: 18,  # bicycle
}
CITYSCAPES_CLASSES = [
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
]


@dataclass
class MaskSource:
    """Images with one class index per pixel (IGNORE = 255: not scored, not trained on)."""

    train_x: torch.Tensor  # uint8 [N, C, H, W]
    train_m: torch.Tensor  # uint8 [N, H, W], class ids 0..K-1 or IGNORE
    val_x: torch.Tensor | None  # None: the caller carves val from train
    val_m: torch.Tensor | None
    test_x: torch.Tensor | None  # None: the caller carves test from train
    test_m: torch.Tensor | None
    class_names: list[str]
    description: str  # e.g. "masks folder /x/y (3 classes)"


def load_masks(name: str, root: str | None, image_size: int | None, download: bool = True) -> MaskSource:
    """One segmentation data set (see the module docstring). `image_size`: every image and mask is
    resized to that square (images bilinear, masks nearest: a class id is never interpolated); unset,
    all images must share one size (oxford_pet then uses OXFORD_PET_SIZE). `download` applies to oxford_pet."""
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise DataError(f"data.image_size: need a whole number of pixels >= 1, got {image_size!r}")
    if name == "masks":
        return _masks_folder(_root(root, "masks", "a folder with classes.yaml, images/ and masks/"), image_size)
    if name == "kitti_semantic":
        return _kitti_semantic(_root(root, "kitti_semantic", "the KITTI semantics folder"), image_size)
    if name == "oxford_pet":
        return _oxford_pet(root, image_size, download)
    raise DataError(f"unknown segmentation data set {name!r} (valid: {', '.join(MASK_SETS)})")


def _root(root: str | None, name: str, what: str) -> Path:
    if root is None:
        raise DataError(f"data.root: the {name} data set needs a root ({what})")
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"{base}: data folder not found")
    return base


def read_class_names(path: Path) -> list[str]:
    """classes.yaml's `names`: a list, or a mapping {0: name, 1: name, ...}; index = pixel value."""
    spec = read_yaml_mapping(path, "classes.yaml", DataError)
    names = spec.get("names")
    if isinstance(names, dict):
        keys = list(names)
        if any(isinstance(k, bool) or not isinstance(k, int) for k in keys) or sorted(keys) != list(range(len(keys))):
            shown = ", ".join(repr(k)[:20] for k in keys[:8]) + (", ..." if len(keys) > 8 else "")
            raise DataError(f"{path}: names: the keys must be the pixel values 0..{len(keys) - 1}, got {shown}")
        names = [names[k] for k in range(len(keys))]
    if not isinstance(names, list):
        got = "nothing" if names is None else type(names).__name__
        raise DataError(
            f"{path}: names: expected a list of class names (index = pixel value) or a mapping 0: name, 1: name, "
            f"..., got {got}"
        )
    result: list[str] = []
    for i, value in enumerate(names):
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # `names: [0, 1]`: YAML reads digits as numbers
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{path}: names[{i}]: expected a class name (text), got {repr(value)[:40]}")
        if value in result:
            raise DataError(f"{path}: names: {value[:60]!r} given twice (names[{result.index(value)}] and names[{i}])")
        result.append(value)
    if len(result) < 2:
        raise DataError(f"{path}: names: {len(result)} class, need at least 2 (background and one more)")
    if len(result) > MAX_CLASSES:
        raise DataError(f"{path}: names: {len(result)} classes, at most {MAX_CLASSES} (pixel value 255 is ignore)")
    return result


def write_class_names(folder: Path, names: list[str]) -> Path:
    """folder/classes.yaml for `names` (the read side is read_class_names)."""
    from adlab import io

    path = Path(folder) / "classes.yaml"
    io.write_yaml(path, {"names": list(names)})
    return path


# --------------------------------------------------------------------------------- finding the pairs


@dataclass
class _Seen:
    """Files already paired, by (device, inode): a link or hard link to a file used before is caught."""

    images: dict[tuple[int, int], str]
    masks: dict[tuple[int, int], tuple[str, str]]  # mask identity -> (image shown, mask path)


def _listing(folder: Path, suffixes: tuple[str, ...]) -> list[tuple[str, str, tuple[int, int]]]:
    """(name, path, file identity) of the files in `folder` whose name ends in one of `suffixes`, by name."""
    found = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if not entry.name.lower().endswith(suffixes):
                    continue
                try:
                    st = entry.stat()
                except OSError as exc:  # a broken link, a link loop
                    raise DataError(f"{entry.path}: cannot read ({exc.strerror or type(exc).__name__})") from None
                if not entry.is_file():  # a folder named x.png, a FIFO that would block the read
                    raise DataError(f"{entry.path}: not a regular file; remove it from the data folder")
                found.append((entry.name, entry.path, (st.st_dev, st.st_ino)))
    except OSError as exc:
        raise DataError(f"{folder}: cannot list folder ({exc.strerror or type(exc).__name__})") from None
    return sorted(found)


def _pair_files(images: Path, masks: Path, prefix: str, seen: _Seen) -> list[tuple[str, str]]:
    """(image path, mask path) for every image in `images`, by file name; its mask is masks/<stem>.png.
    An image without a mask, a mask without an image and a file used twice are errors; `prefix` is how
    the images are shown in them (the split folder)."""
    listed = _listing(images, IMAGE_SUFFIXES)
    if not listed:
        raise DataError(f"{images}: no images ({', '.join(IMAGE_SUFFIXES)})")
    if not masks.is_dir():
        raise DataError(f"{masks}: masks folder not found (each image in {images} needs its mask there)")
    by_stem: dict[str, tuple[str, str, tuple[int, int]]] = {}
    for name, path, identity in _listing(masks, (MASK_SUFFIX,)):
        stem = name[: -len(MASK_SUFFIX)]
        if stem in by_stem:
            raise DataError(f"{path}: a second mask for stem {stem!r} (the first is {by_stem[stem][0]})")
        by_stem[stem] = (name, path, identity)
    pairs, used = [], set()
    for name, path, identity in listed:
        shown = prefix + name
        if identity in seen.images:
            raise DataError(f"{path}: the same file as {seen.images[identity]} (each image once, in one split)")
        seen.images[identity] = shown
        stem = os.path.splitext(name)[0]
        if stem not in by_stem:
            raise DataError(f"{path}: no mask {masks / (stem + MASK_SUFFIX)}")
        _, mask_path, mask_identity = by_stem[stem]
        if mask_identity in seen.masks:
            first_image, first_mask = seen.masks[mask_identity]
            same = "" if first_mask == mask_path else f"; it is the same file as {first_mask}"
            raise DataError(f"{mask_path}: reached by {first_image} and {shown} (one mask per image{same})")
        seen.masks[mask_identity] = (shown, mask_path)
        used.add(stem)
        pairs.append((path, mask_path))
    for stem, (_, mask_path, _) in sorted(by_stem.items()):
        if stem not in used:
            raise DataError(f"{mask_path}: no image with stem {stem!r} in {images} ({', '.join(IMAGE_SUFFIXES)})")
    return pairs


# ------------------------------------------------------------------------------------------ decoding


@dataclass
class _Decoded:
    image: np.ndarray  # uint8 [H, W] (grey) or [H, W, 3]
    grey: bool
    mask: np.ndarray  # uint8 [H, W], class ids or IGNORE
    size: tuple[int, int]  # the image file's (width, height), before any resize
    path: str


class _MaskRule:
    """How a mask file's pixel values become class ids: `lut` maps each byte value to its id, IGNORE,
    or -1 for a value that is an error, which `problem(path, value)` words."""

    def __init__(self, lut: np.ndarray, problem: Callable[[str, int], str]):
        self.lut = lut
        self.problem = problem

    def apply(self, path: str, values: np.ndarray) -> np.ndarray:
        mapped = self.lut[values]
        bad = mapped < 0
        if bad.any():
            raise DataError(self.problem(path, int(values[bad].min())))
        return mapped.astype(np.uint8)


def _class_rule(num_classes: int) -> _MaskRule:
    lut = np.full(256, -1, dtype=np.int16)
    lut[:num_classes] = np.arange(num_classes)
    lut[IGNORE] = IGNORE
    return _MaskRule(
        lut, lambda path, v: f"{path}: pixel value {v} is not a class (0..{num_classes - 1}) nor {IGNORE} (ignore)"
    )


def _decode_pair(image_path: str, mask_path: str, hw: tuple[int, int] | None, rule: _MaskRule) -> _Decoded:
    from PIL import Image

    try:
        with Image.open(image_path) as img:
            img.load()
            grey = is_grey(img)
            size = img.size
            image = as_array(img, 1 if grey else 3, hw)
    except Exception as exc:  # see `unreadable`: PIL raises more than OSError for bad files
        raise DataError(unreadable(image_path, exc)) from None
    try:
        with Image.open(mask_path) as msk:
            mode, mask_size = msk.mode, msk.size
            values = np.asarray(msk).astype(np.uint8) if mode in MASK_MODES else None  # P: the indices
    except Exception as exc:
        raise DataError(unreadable(mask_path, exc)) from None
    if values is None:
        raise DataError(f"{mask_path}: {mode}, a mask is one channel of class ids (an 8-bit grey or palette PNG)")
    if mask_size != size:
        raise DataError(f"{mask_path}: {mask_size[0]}x{mask_size[1]}, its image is {size[0]}x{size[1]}")
    mask = rule.apply(mask_path, values)
    if hw is not None and mask_size != (hw[1], hw[0]):
        mask = np.asarray(Image.fromarray(mask, mode="L").resize((hw[1], hw[0]), Image.Resampling.NEAREST))
    return _Decoded(image, grey, mask, size, image_path)


def _decode_splits(
    splits: list[list[tuple[str, str]]], image_size: int | None, rule: _MaskRule
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(images uint8 [N, C, H, W], masks uint8 [N, H, W]) per split. C is 1 when every image of every
    split is grey, else 3; without `image_size` every image must have the first one's size."""
    hw = None if image_size is None else (image_size, image_size)
    workers = min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(workers) as pool:
        try:
            decoded = [list(pool.map(lambda pair: _decode_pair(pair[0], pair[1], hw, rule), pairs)) for pairs in splits]
        except BaseException:  # a bad file (or Ctrl-C): the files still queued are not decoded for nothing
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    if image_size is None:
        first = decoded[0][0].size
        for item in (d for split in decoded for d in split):
            if item.size != first:
                raise DataError(
                    f"{item.path}: {item.size[0]}x{item.size[1]}, but the first image is {first[0]}x{first[1]}; "
                    "set data.image_size"
                )
    grey = all(d.grey for split in decoded for d in split)
    out = []
    for split in decoded:
        height, width = split[0].mask.shape
        images = np.empty((len(split), 1 if grey else 3, height, width), dtype=np.uint8)
        masks = np.empty((len(split), height, width), dtype=np.uint8)
        for i in range(len(split) - 1, -1, -1):
            item = split.pop()  # each decoded array freed once copied: memory stays about one data set
            images[i] = item.image[None] if item.image.ndim == 2 else item.image.transpose(2, 0, 1)
            masks[i] = item.mask
        out.append((torch.from_numpy(images), torch.from_numpy(masks)))
    return out


def _size_note(image_size: int | None) -> str:
    return "" if image_size is None else f", resized to {image_size}x{image_size}"


# ------------------------------------------------------------------------------------------- sources


def _masks_folder(base: Path, image_size: int | None) -> MaskSource:
    names = read_class_names(base / "classes.yaml")
    images, masks = base / "images", base / "masks"
    if not images.is_dir():
        raise DataError(f"{images}: images folder not found (a masks data set has classes.yaml, images/ and masks/)")
    present = [s for s in SPLITS if (images / s).is_dir()]
    seen = _Seen({}, {})
    if present:
        if "train" not in present:
            raise DataError(f"{images / 'train'}: not found (images/{present[0]} needs images/train beside it)")
        loose = _listing(images, IMAGE_SUFFIXES)
        if loose:
            raise DataError(
                f"{loose[0][1]}: an image beside the split folders; put every image in train/, val/ or test/"
            )
        pairs = [_pair_files(images / s, masks / s, f"{s}/", seen) for s in present]
        if masks.is_dir():  # masks of a split without images are masks without an image too
            for split in SPLITS:
                if split not in present and (masks / split).is_dir():
                    stray = _listing(masks / split, (MASK_SUFFIX,))
                    if stray:
                        raise DataError(f"{stray[0][1]}: no image with its stem ({images / split} not found)")
    else:
        present = ["train"]
        pairs = [_pair_files(images, masks, "", seen)]
    decoded = dict(zip(present, _decode_splits(pairs, image_size, _class_rule(len(names))), strict=True))
    none = (None, None)
    (train_x, train_m), (val_x, val_m), (test_x, test_m) = (decoded.get(s, none) for s in SPLITS)
    assert train_x is not None and train_m is not None  # train is always there
    splits = ", ".join(f"{s} {len(decoded[s][0])}" for s in present)
    return MaskSource(
        train_x,
        train_m,
        val_x,
        val_m,
        test_x,
        test_m,
        names,
        f"masks folder {base} ({len(names)} classes; {splits} images{_size_note(image_size)})",
    )


def _kitti_semantic(base: Path, image_size: int | None) -> MaskSource:
    """KITTI semantics' training split (its testing/ has no labels): Cityscapes label ids -> train ids."""
    images, masks = base / "training" / "image_2", base / "training" / "semantic"
    if not images.is_dir():
        raise DataError(
            f"{images}: not found (data.root is the KITTI semantics folder: training/image_2, training/semantic)"
        )
    lut = np.full(256, IGNORE, dtype=np.int16)
    lut[list(CITYSCAPES_TRAIN_IDS)] = list(CITYSCAPES_TRAIN_IDS.values())
    rule = _MaskRule(lut, lambda path, v: f"{path}: pixel value {v}")  # every byte maps: never raised
    ((train_x, train_m),) = _decode_splits([_pair_files(images, masks, "", _Seen({}, {}))], image_size, rule)
    return MaskSource(
        train_x,
        train_m,
        None,
        None,
        None,
        None,
        CITYSCAPES_CLASSES.copy(),
        f"KITTI semantics {base} (19 Cityscapes classes, other labels ignored; {len(train_x)} training images"
        f"{_size_note(image_size)})",
    )


def _oxford_pet(root: str | None, image_size: int | None, download: bool) -> MaskSource:
    """Oxford-IIIT Pet through torchvision: trimap 1 (pet) -> 1, 2 (background) -> 0, 3 (the border
    between them, ambiguous) -> IGNORE. trainval is train (val carved by the caller), test is test.
    Its images vary in size: unset data.image_size means OXFORD_PET_SIZE."""
    import torchvision.datasets as tvd

    target = Path(root) if root is not None else default_root()
    size = OXFORD_PET_SIZE if image_size is None else image_size
    trainval, test = _download(
        lambda: tuple(
            tvd.OxfordIIITPet(str(target), split, target_types="segmentation", download=download)
            for split in ("trainval", "test")
        ),
        "Oxford-IIIT Pet",
        target / "oxford-iiit-pet",
        "images/ and annotations/ (images.tar.gz and annotations.tar.gz, extracted)",
        download,
    )
    lut = np.full(256, -1, dtype=np.int16)
    lut[[1, 2, 3]] = [1, 0, IGNORE]
    rule = _MaskRule(
        lut, lambda path, v: f"{path}: pixel value {v} is not a trimap value (1 pet, 2 background, 3 border)"
    )
    # torchvision lists each split's files (from annotations/<split>.txt) but opens them one item at a
    # time; the lists are read here so each file is decoded once, in parallel, and a bad one is named
    splits = [[(str(i), str(m)) for i, m in zip(ds._images, ds._segs, strict=True)] for ds in (trainval, test)]
    for ds, pairs in zip(("trainval", "test"), splits, strict=True):
        if not pairs:
            raise DataError(f"{target / 'oxford-iiit-pet' / 'annotations' / ds}.txt: no images listed")
    (train_x, train_m), (test_x, test_m) = _decode_splits(splits, size, rule)
    default = " (data.image_size unset)" if image_size is None else ""
    return MaskSource(
        train_x,
        train_m,
        None,
        None,
        test_x,
        test_m,
        ["background", "pet"],
        f"Oxford-IIIT Pet trimaps from {target} (pet and background, border ignored; {len(train_x)} trainval and "
        f"{len(test_x)} test images, resized to {size}x{size}{default})",
    )
