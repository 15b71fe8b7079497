"""ImageFolder trees (class subfolders, grey or RGB) decoded once into in-memory tensors."""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from adlab.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def index_folder(
    root: Path, class_names: list[str] | None = None, allow_empty: bool = False
) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names and (path, class id) pairs, using torchvision's ImageFolder conventions."""
    from torchvision.datasets.folder import find_classes, make_dataset

    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    try:
        if class_names is None:
            class_names, _ = find_classes(str(root))
        class_to_idx = {name: i for i, name in enumerate(class_names)}
        samples = make_dataset(str(root), class_to_idx, extensions=IMAGE_EXTENSIONS, allow_empty=allow_empty)
    except FileNotFoundError as exc:
        message = str(exc).split("\n")[0].rstrip(".")
        empty = _empty_class_folders(root, class_names or [])
        if empty:
            message = f"class folder '{empty[0]}' has no images ({', '.join(IMAGE_EXTENSIONS)})"
        raise DataError(f"{root}: {message}") from None
    for name in class_names:
        if name in ("..", ".") or "/" in name or "\\" in name:
            raise DataError(f"{root}: unsafe class folder name {name!r}")
    return class_names, samples


def _empty_class_folders(root: Path, class_names: list[str]) -> list[str]:
    return [
        name
        for name in class_names
        if (root / name).is_dir()
        and not any(f.lower().endswith(IMAGE_EXTENSIONS) for _, _, files in os.walk(root / name) for f in files)
    ]


def read_image(path: str | Path, channels: int, hw: tuple[int, int] | None = None) -> np.ndarray:
    """One image file as uint8 [H, W] (channels 1) or [H, W, 3], resized to hw = (height, width)
    when given. PIL's errors propagate: each caller says what they mean there."""
    from PIL import Image

    with Image.open(path) as img:
        return _as_array(img, channels, hw)


def _as_array(img, channels: int, hw: tuple[int, int] | None) -> np.ndarray:
    """An open PIL image converted to grey (channels 1) or RGB and resized to hw when given."""
    from PIL import Image

    img = img.convert("L" if channels == 1 else "RGB")
    if hw is not None and img.size != (hw[1], hw[0]):
        img = img.resize((hw[1], hw[0]), Image.BILINEAR)
    return np.asarray(img)


def decode_images(paths: list[str], image_size: int | None, on_corrupt: str = "fail") -> tuple[torch.Tensor, str, list[str]]:
    """Decode image files into a uint8 tensor [N, C, H, W]; C is 1 if every image is grey, else 3.

    Without `image_size` all images must share one size; with it they are resized on decode so
    memory stays proportional to the target size, not the files' size. A file that cannot be
    decoded (truncated, corrupt, not an image) is an error naming it, or with on_corrupt="skip"
    is left out and returned in the list of skipped paths.
    """
    from PIL import Image, UnidentifiedImageError

    hw = None if image_size is None else (image_size, image_size)

    def load(path: str):
        try:
            with Image.open(path) as img:
                img.load()
                grey = is_grey(img)
                return _as_array(img, 1 if grey else 3, hw), grey
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            if on_corrupt == "skip":
                return None
            reason = (str(exc).splitlines() or [""])[0]
            raise DataError(f"{path}: cannot read image ({type(exc).__name__}: {reason}); "
                            "set data.on_corrupt: skip to leave such files out") from None

    if not paths:
        raise DataError("no images to decode")
    workers = min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(load, paths))
    skipped = [p for p, r in zip(paths, results) if r is None]
    paths = [p for p, r in zip(paths, results) if r is not None]
    decoded = [r for r in results if r is not None]
    if not decoded:
        raise DataError(f"{os.path.dirname(skipped[0])}: none of the {len(skipped)} images could be read")
    sizes = Counter(arr.shape[:2] for arr, _ in decoded)
    if len(sizes) > 1:
        (common, _), (other, _) = sizes.most_common(2)
        odd = next(p for p, (arr, _) in zip(paths, decoded) if arr.shape[:2] == other)
        raise DataError(
            f"{odd}: image is {other[1]}x{other[0]} but most are {common[1]}x{common[0]}; "
            "set data.image_size to resize them all"
        )
    all_grey = all(grey for _, grey in decoded)
    arrays = [arr if all_grey else _to_rgb(arr) for arr, _ in decoded]
    stacked = np.stack(arrays)
    tensor = torch.from_numpy(stacked)
    tensor = tensor.unsqueeze(1) if all_grey else tensor.permute(0, 3, 1, 2)
    return tensor.contiguous(), ("grey" if all_grey else "RGB"), skipped


def _to_rgb(arr: np.ndarray) -> np.ndarray:
    return np.repeat(arr[..., None], 3, axis=2) if arr.ndim == 2 else arr


def is_grey(img) -> bool:
    """Whether an open PIL image is grey: a grey mode, or a palette of grey entries only."""
    return img.mode in ("1", "L", "I", "I;16", "F") or (img.mode == "P" and _palette_is_grey(img))


def _palette_is_grey(img) -> bool:
    palette = img.getpalette() or []
    triples = [palette[i : i + 3] for i in range(0, len(palette), 3)]
    return all(r == g == b for r, g, b in triples)


def load_folder(root: Path, image_size: int | None, class_names: list[str] | None = None, on_corrupt: str = "fail",
                storage: str = "memory", memory_budget_gb: float = 4.0):
    """One ImageFolder tree: (images [N,C,H,W], labels int64 [N], class names, skipped paths).

    The images are a uint8 tensor, or with storage "disk" (or "auto" when their decoded size is
    over the budget) a `DiskImages` that decodes a batch at a time.
    """
    class_names, samples = index_folder(root, class_names, allow_empty=class_names is not None)
    if not samples:
        raise DataError(f"{root}: no images found")
    paths = [p for p, _ in samples]
    if storage != "memory":
        from adlab.data.stream import DiskImages

        lazy = DiskImages.open(paths, image_size)
        decoded_bytes = int(np.prod(lazy.shape))
        if storage == "disk" or decoded_bytes > memory_budget_gb * 2**30:
            if on_corrupt == "skip":
                raise DataError(f"{root}: data.on_corrupt: skip needs the images in memory (data.storage: memory); "
                                "streamed images are checked as they are read")
            return lazy, torch.tensor([c for _, c in samples], dtype=torch.long), class_names, []
    images, _, skipped = decode_images(paths, image_size, on_corrupt)
    dropped = set(skipped)
    labels = torch.tensor([c for p, c in samples if p not in dropped], dtype=torch.long)
    return images, labels, class_names, skipped
