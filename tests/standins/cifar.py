"""CIFAR-10's python batches, as `cifar-10-python.tar.gz` extracts them (Python 2 pickles of dicts)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def images(rng, labels: np.ndarray) -> np.ndarray:
    """32x32 RGB rows (N, 3072) whose colour and a stripe depend on the class: learnable in a few steps."""
    n = len(labels)
    data = rng.integers(0, 60, size=(n, 3, 32, 32), dtype=np.uint8)
    for i, label in enumerate(labels):
        data[i, label % 3] += np.uint8(120 + 10 * (label // 3))
        data[i, :, (label * 3) % 32 : (label * 3) % 32 + 3, :] = 255
    return data.reshape(n, -1)


def write_cifar10(root: Path, per_batch: int = 20, seed: int = 0, protocol: int = 2) -> Path:
    """root/cifar-10-batches-py/ with data_batch_1..5, test_batch and batches.meta, byte-different from
    the originals (so a test needs data.verify: false, as a user's faithful copy does)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = np.arange(per_batch) % 10
        rng.shuffle(labels)
        record = {
            b"batch_label": name.encode(),
            b"labels": labels.tolist(),
            b"data": images(rng, labels),
            b"filenames": [f"{i}.png".encode() for i in range(per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(record, protocol=protocol))
    meta = {b"num_cases_per_batch": per_batch, b"label_names": [n.encode() for n in NAMES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return folder
