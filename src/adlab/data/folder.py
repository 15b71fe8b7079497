"""ImageFolder trees (class subfolders, grey or RGB) decoded once into in-memory tensors."""

from __future__ import annotations

import os
import stat
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from adlab.data.images import as_array, is_grey, unreadable
from adlab.errors import DataError
from adlab.image_formats import CLASS_FOLDER_SUFFIXES
from adlab.names import name_problem


def index_folder(
    root: Path, class_names: list[str] | None = None, allow_empty: bool = False, owners: dict | None = None
) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names and (path, class id) pairs, following torchvision's ImageFolder conventions:
    class folders sorted by name, files with an image extension (hidden ones too), in the order of
    torchvision's `make_dataset` (folders sorted by path, files by name), paths as the tree shows them.

    Unlike torchvision, links are walked safely: a folder link is followed unless its real target is
    the folder holding it or one of that folder's ancestors (a loop), no real folder is walked twice,
    and each real image file counts once per class; one file in two classes is an error, and so is
    one file in two trees indexed with the same `owners` dict (a train/ and a test/ tree).
    """
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    if class_names is None:
        class_names = find_class_folders(root)
    else:
        for name in class_names:
            _check_class_name(root, name)
    top = str(root)
    owners = {} if owners is None else owners  # real path -> (tree, class name, path shown)
    samples: list[tuple[str, int]] = []
    empty = []
    for idx, name in enumerate(class_names):
        if not os.path.isdir(os.path.join(top, name)):
            empty.append(name)
            continue
        count = len(samples)
        for shown, real in _class_images(root, name):
            other = owners.setdefault(real, (top, name, shown))
            if other[1] != name or other[0] != top:
                _same_file(root, real, other, (top, name, shown))
            samples.append((shown, idx))
        if len(samples) == count:
            empty.append(name)
    if empty and not allow_empty:
        raise DataError(f"{root}: class folder {empty[0]!r} has no images ({', '.join(CLASS_FOLDER_SUFFIXES)})")
    return list(class_names), samples


def _same_file(root: Path, real: str, first: tuple[str, str, str], second: tuple[str, str, str]):
    note = "" if real in (first[2], second[2]) else f" ({real})"
    if first[0] != second[0]:
        raise DataError(
            f"{first[0]}: {first[2]} and {second[2]} are the same file{note}, so it would be both "
            "trained on and tested; keep it in one tree only"
        )
    raise DataError(
        f"{root}: {first[2]} (class {first[1]!r}) and {second[2]} (class {second[1]!r}) are the same "
        f"file{note}; an image can belong to one class only"
    )


def find_class_folders(root: Path) -> list[str]:
    """The class folder names of an ImageFolder tree, sorted; a name that cannot be a class name
    (not UTF-8, hidden, with separators or control characters: names.name_problem) is an error."""
    try:
        with os.scandir(root) as entries:
            names = sorted(entry.name for entry in entries if entry.is_dir())
    except OSError as exc:
        raise DataError(f"{root}: cannot list the data folder ({type(exc).__name__})") from None
    if not names:
        raise DataError(f"{root}: no class folders (an image folder data set has one subfolder of images per class)")
    for name in names:
        _check_class_name(root, name)
    return names


def _check_class_name(root: Path, name: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.scandir decodes undecodable bytes to lone surrogates
        raise DataError(
            f"{root}: class folder name {os.fsencode(name)!r} is not valid UTF-8; rename the folder"
        ) from None
    problem = name_problem(name)
    if problem:
        shown = repr(name[:60])
        problem = problem[len(shown) :].lstrip() if problem.startswith(shown) else f"is not a usable name: {problem}"
        raise DataError(f"{root}: class folder {shown} {problem}; rename the folder")


def _is_within(path: str, folder: str) -> bool:
    """Whether real path `path` is `folder` or lies inside it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _class_images(root: Path, name: str) -> list[tuple[str, str]]:
    """(path shown, real path) of each image file under one class folder, each real file once.

    Real subfolders are walked first, then folder links (skipping loops and folders already
    walked), so a file found both directly and through a link is shown by its direct path. Order:
    by folder path, then by file name, as torchvision's `sorted(os.walk(...))`.
    """
    top = os.path.join(str(root), name)
    top_real = os.path.realpath(top)
    if _is_within(os.path.realpath(root), top_real):
        raise DataError(f"{root}: class folder {name!r} is a link to {top_real}, which holds the data folder itself")
    visited = {top_real}
    pending = [(top, top_real, False)]  # folders to list: (path shown, real path, reached through a link)
    links: deque[tuple[str, str]] = deque()  # folder links met: (path shown, real path of the folder holding it)
    folders = []  # (path shown, real path, through a link, image file names, {name: real path} of file links)
    any_link = False
    real_folders: dict[str, str] = {}  # folder -> its real path, for file links (a data set may be all links)
    while pending or links:
        if not pending:
            link, holder = links.popleft()
            real = os.path.realpath(link)
            if _is_within(holder, real) or real in visited:
                continue  # a loop (the link leads back up) or a folder already walked
            visited.add(real)
            pending.append((link, real, True))
            any_link = True
            continue
        path, real, linked = pending.pop()
        images: list[str] = []
        file_links: dict[str, str] = {}
        prefix = real.rstrip(os.sep) + os.sep
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    if entry.is_dir():
                        if entry.is_symlink():
                            links.append((entry.path, real))
                        elif prefix + entry.name not in visited:
                            visited.add(prefix + entry.name)
                            pending.append((entry.path, prefix + entry.name, linked))
                    elif entry.name.lower().endswith(CLASS_FOLDER_SUFFIXES):
                        if not entry.is_file() and (not entry.is_symlink() or os.path.exists(entry.path)):
                            # a FIFO or a device would block or never end when read (a broken link is
                            # kept: decoding names it)
                            raise DataError(f"{entry.path}: not a regular file; remove it from the data folder")
                        if entry.is_symlink():
                            file_links[entry.name] = _link_target(entry.path, real, real_folders)
                        images.append(entry.name)
        except OSError as exc:
            raise DataError(f"{path}: cannot list folder ({type(exc).__name__})") from None
        if images:
            images.sort()
            folders.append((path, real, linked, images, file_links))
            any_link = any_link or bool(file_links)
    folders.sort(key=lambda folder: folder[0])
    found: list[tuple[str, str]] = []
    direct: dict[str, str] = {}  # real path -> path shown, for files reached without any link
    for path, real, linked, images, file_links in folders:
        shown, prefix = path + os.sep, real.rstrip(os.sep) + os.sep
        found += [(shown + n, file_links[n] if n in file_links else prefix + n) for n in images]
        if any_link and not linked:
            direct.update((prefix + n, shown + n) for n in images if n not in file_links)
    if not any_link:
        return found  # no link followed: every file has its own real path
    # a real file reached more than once: its direct path if it has one, else the first in order
    kept, seen = [], set()
    for shown, real in found:
        if real in seen or direct.get(real, shown) != shown:
            continue
        seen.add(real)
        kept.append((shown, real))
    return kept


def _link_target(link: str, holder: str, real_folders: dict[str, str]) -> str:
    """os.path.realpath(link) for a file link in the real folder `holder`, resolving each folder the
    links point into once (a tree of thousands of links into one pool folder stays fast)."""
    try:
        target = os.readlink(link)
    except OSError:
        return os.path.realpath(link)
    folder, _, base = (target if target.startswith(os.sep) else f"{holder}{os.sep}{target}").rpartition(os.sep)
    if base in ("", ".", ".."):
        return os.path.realpath(link)
    real_folder = real_folders.get(folder)
    if real_folder is None:
        real_folder = real_folders[folder] = os.path.realpath(folder or os.sep).rstrip(os.sep)
    real = f"{real_folder}{os.sep}{base}"
    try:
        chained = stat.S_ISLNK(os.lstat(real).st_mode)
    except OSError:  # broken: decoding names it
        chained = False
    return os.path.realpath(real) if chained else real  # a link to a link: resolve the whole chain


def decode_images(
    paths: list[str], image_size: int | None, on_corrupt: str = "fail"
) -> tuple[torch.Tensor, str, list[str]]:
    """Decode image files into a uint8 tensor [N, C, H, W]; C is 1 if every image is grey, else 3.

    Without `image_size` all images must share one size; with it they are resized on decode so
    memory stays proportional to the target size, not the files' size. A file that cannot be
    decoded (truncated, corrupt, not an image, too large: a decompression bomb) is an error naming
    it, or with on_corrupt="skip" is left out and returned in the list of skipped paths.
    """
    from PIL import Image

    hw = None if image_size is None else (image_size, image_size)

    def load(path: str):
        try:
            with Image.open(path) as img:
                img.load()
                grey = is_grey(img)
                return as_array(img, 1 if grey else 3, hw), grey
        except Exception as exc:  # see `unreadable`: PIL raises more than OSError for bad files
            if on_corrupt == "skip":
                return None
            raise DataError(f"{unreadable(path, exc)}; set data.on_corrupt: skip to leave such files out") from None

    if not paths:
        raise DataError("no images to decode")
    workers = min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(load, paths))
    skipped = [p for p, r in zip(paths, results, strict=True) if r is None]
    paths = [p for p, r in zip(paths, results, strict=True) if r is not None]
    decoded = [r for r in results if r is not None]
    if not decoded:
        raise DataError(f"{os.path.dirname(skipped[0])}: none of the {len(skipped)} images could be read")
    sizes = Counter(arr.shape[:2] for arr, _ in decoded)
    if len(sizes) > 1:
        (common, _), (other, _) = sizes.most_common(2)
        odd = next(p for p, (arr, _) in zip(paths, decoded, strict=True) if arr.shape[:2] == other)
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


def load_folder(
    root: Path,
    image_size: int | None,
    class_names: list[str] | None = None,
    on_corrupt: str = "fail",
    storage: str = "memory",
    memory_budget_gb: float = 4.0,
    index: tuple[list[str], list[tuple[str, int]]] | None = None,
):
    """One ImageFolder tree: (images [N,C,H,W], labels int64 [N], class names, skipped paths).

    The images are a uint8 tensor, or with storage "disk" (or "auto" when their decoded size is
    over the budget) a `DiskImages` that decodes a batch at a time. `index`: the tree's
    `index_folder` result when the caller has it already.
    """
    if index is None:
        index = index_folder(root, class_names, allow_empty=class_names is not None)
    class_names, samples = index
    if not samples:
        raise DataError(f"{root}: no images found")
    paths = [p for p, _ in samples]
    if storage != "memory":
        from adlab.data.stream import DiskImages

        lazy = DiskImages.open(paths, image_size)
        decoded_bytes = int(np.prod(lazy.shape))
        if storage == "disk" or decoded_bytes > memory_budget_gb * 2**30:
            if on_corrupt == "skip":
                raise DataError(
                    f"{root}: data.on_corrupt: skip needs the images in memory (data.storage: memory); "
                    "streamed images are checked as they are read"
                )
            return lazy, torch.tensor([c for _, c in samples], dtype=torch.long), class_names, []
    images, _, skipped = decode_images(paths, image_size, on_corrupt)
    dropped = set(skipped)
    labels = torch.tensor([c for p, c in samples if p not in dropped], dtype=torch.long)
    return images, labels, class_names, skipped
