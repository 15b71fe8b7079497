"""What a run's outputs cost on this machine, for `--plan`: a figure drawn and saved, an autoencoder's t-SNE
map and latent probes. Each is timed once per process on synthetic inputs (blobs of codes, a made-up
history) and scaled to the run's sizes, so a short run's estimate is not its network passes alone (a
2-epoch autoencoder run spent more time on its t-SNE map and figures than on training)."""

from __future__ import annotations

import functools
import math
import tempfile
import time
from pathlib import Path

import numpy as np

TIMED_POINTS = 500  # t-SNE is timed on this many codes and scaled (Barnes-Hut: n log n)
TIMED_TRAIN = 5000  # the probes are timed on this many training codes and scaled linearly


def _timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


@functools.cache
def figure_seconds() -> float:
    """One figure drawn and saved as a run draws them (a two-panel loss curve of 20 epochs)."""
    from adlab.tasks.curves import loss_curves

    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "val_score": 1 - 1 / e} for e in range(1, 21)]
    with tempfile.TemporaryDirectory() as tmp:
        draw = functools.partial(loss_curves, history, Path(tmp) / "curves.png", "plan", [("val_score", "score")])
        draw()  # the first figure of a process pays matplotlib's set-up, once
        return _timed(draw)


def _blobs(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ten classes of codes around their own centres: what a trained encoder's codes look like to t-SNE."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    centres = rng.normal(scale=2.0, size=(10, dim))
    return (centres[labels] + rng.normal(size=(n, dim))).astype(np.float32), labels


@functools.cache
def _tsne_seconds_timed(dim: int) -> float:
    from adlab.tasks.autoencode.latent import tsne_2d

    tsne_2d(_blobs(50, dim)[0])  # scikit-learn's first map in a process pays its set-up
    return _timed(lambda: tsne_2d(_blobs(TIMED_POINTS, dim)[0]))


def tsne_seconds(points: int, dim: int) -> float:
    """A t-SNE map of `points` codes of `dim` numbers (none for 2-D codes: they are their own map)."""
    if dim <= 2 or points < 2:
        return 0.0
    scale = points * math.log(points) / (TIMED_POINTS * math.log(TIMED_POINTS))
    return _tsne_seconds_timed(dim) * scale


@functools.cache
def _probe_seconds_timed(dim: int) -> float:
    from adlab.tasks.autoencode.latent import knn_accuracy, linear_probe_predictions

    train_z, train_y = _blobs(TIMED_TRAIN, dim, seed=1)
    test_z, test_y = _blobs(TIMED_TRAIN // 5, dim, seed=2)
    return _timed(
        lambda: (linear_probe_predictions(train_z, train_y, test_z), knn_accuracy(train_z, train_y, test_z, test_y))
    )


def probe_seconds(train: int, test: int, dim: int) -> float:
    """The linear and k-NN probes, fit on `train` codes and scored on `test` codes."""
    return _probe_seconds_timed(dim) * (train + test) / (TIMED_TRAIN + TIMED_TRAIN // 5)


CHECKPOINT_PROBE_MAX = 256 * 2**20  # bytes written to time a checkpoint: larger files are scaled from this


@functools.cache
def _write_seconds_timed(nbytes: int) -> float:
    import torch

    state = {"state_dict": {"w": torch.zeros(nbytes // 4, dtype=torch.float32)}}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / "probe.ckpt"
            torch.save({"w": torch.zeros(1)}, Path(tmp) / "first.ckpt")  # the first save sets up the writer
            return _timed(lambda: torch.save(state, target))
    except (OSError, RuntimeError):  # no room in the temporary folder (torch reports a failed write as a
        return 0.0  # RuntimeError): the estimate leaves the checkpoints out rather than stop the plan


def checkpoint_seconds(nbytes: int) -> float:
    """One checkpoint of `nbytes` written with torch.save (a run writes best.ckpt and last.ckpt each epoch:
    AlexNet's, with Adam's two moments, are about 700 MB each). Timed once per power-of-two size up to
    CHECKPOINT_PROBE_MAX, so a large file meets the disk's write-back as it will, and scaled linearly."""
    if nbytes <= 0:
        return 0.0
    probe = min(1 << max(nbytes - 1, 1).bit_length(), CHECKPOINT_PROBE_MAX)
    return _write_seconds_timed(probe) * nbytes / probe
