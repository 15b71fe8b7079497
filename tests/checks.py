"""Helpers shared by tests in several folders (imported as `checks`: tests/ is on sys.path)."""

from __future__ import annotations

import os
import stat


def snapshot(root) -> dict:
    """Every entry under `root`: files by content hash and mode, links by target, folders by name."""
    entries = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                entries[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                entries[rel] = ("dir",)
            elif not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block a read, a device never end
                entries[rel] = ("special", stat.S_IFMT(os.stat(path).st_mode))
            else:
                entries[rel] = ("file", _digest(path), os.stat(path).st_mode)
    return entries


def _digest(path, whole: int = 64 << 20) -> str:
    """The file's sha256; of a file over `whole` bytes (a test's 6 GB sparse file), its size, mtime
    and first and last MiB, so a listing never reads gigabytes."""
    import hashlib

    info = os.stat(path)
    with open(path, "rb") as f:
        if info.st_size <= whole:
            return hashlib.sha256(f.read()).hexdigest()
        head = f.read(1 << 20)
        f.seek(-(1 << 20), os.SEEK_END)
        tail = f.read()
    return hashlib.sha256(f"{info.st_size}:{info.st_mtime_ns}:".encode() + head + tail).hexdigest()


def grey_png(path, value=0, size=(8, 8)):
    """A small grey PNG whose pixels depend on `value` (distinct images per class)."""
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (np.arange(size[0] * size[1]).reshape(size[1], size[0]) + value) % 256
    Image.fromarray(arr.astype(np.uint8), mode="L").save(path)


def image_tree(root, classes=("a", "b"), per_class=12, digits=1):
    """An ImageFolder tree of grey PNGs: root/<class>/<i>.png (i zero-padded to `digits`)."""
    for c, name in enumerate(classes):
        for i in range(per_class):
            grey_png(root / name / f"{i:0{digits}d}.png", 40 * c + i)
