"""MNIST's four gzipped IDX files, as torchvision leaves them in MNIST/raw/."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX format: magic (0, 0, type 0x08 = uint8, dims), big-endian sizes, then the data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def digit_images(rng, labels: np.ndarray) -> np.ndarray:
    """28x28 grey images with a bright bar whose place depends on the class, on faint noise."""
    images = rng.integers(0, 40, size=(len(labels), 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i, 2 + 2 * label : 5 + 2 * label, 4:24] = 250
    return images


def write_mnist(root: Path, train: int = 200, test: int = 50, seed: int = 0, kind: str = "MNIST") -> Path:
    """root/<kind>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / kind / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("t10k", test)):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(digit_images(rng, labels))))
        (folder / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    return folder
