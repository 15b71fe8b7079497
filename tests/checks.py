"""Helpers shared by tests in several folders (imported as `checks`: tests/ is on sys.path)."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import time

# `adlab train` overrides that make a digits run take seconds: one epoch of a one-layer CNN, no progress bar.
FAST_SETTINGS = (
    "train.epochs=1",
    "train.progress_bar=false",
    "train.batch_size=64",
    "model.cnn.conv_channels=[8]",
    "model.cnn.convs_per_block=1",
    "model.cnn.hidden=[16]",
)
FAST = [arg for setting in FAST_SETTINGS for arg in ("--set", setting)]


def chromium() -> str | None:
    """Debian's Chromium, under either of its names."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_command(virtual_ms: int) -> list[str]:
    """Headless Chromium that stays off the network and gives a page `virtual_ms` of virtual time to load."""
    return [
        str(chromium()),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--virtual-time-budget={virtual_ms}",
        "--dump-dom",
    ]


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


def frozen_mid_run(out, storage: str | None = None):
    """(trial, worker pid) of a run frozen (SIGSTOP of its worker) past its first checkpoint, before its
    metrics.json, in the study queue of OUT (or `storage`); None when no run is there yet. Checked again once
    frozen, so that what follows lands mid-run."""
    from adlab.errors import AdlabError
    from adlab.study import queue as queue_module

    if storage is None and not (out / queue_module.JOURNAL).is_file():
        return None
    try:
        queue = queue_module.open_queue(out, storage, create=False)
    except AdlabError:  # the first worker has not made the queue yet
        return None
    for trial in queue.get_trials(deepcopy=False):
        run_dir = out / "runs" / str(trial.user_attrs.get("run"))
        worker = trial.user_attrs.get("worker")
        if trial.state.name != "RUNNING" or not worker or not (run_dir / "checkpoints" / "last.ckpt").is_file():
            continue
        pid = int(worker.rsplit(":", 1)[1])
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            continue
        time.sleep(0.2)
        again = {t.number: t for t in queue_module.open_queue(out, storage, create=False).get_trials(deepcopy=False)}[
            trial.number
        ]
        if again.state.name == "RUNNING" and not (run_dir / "metrics.json").is_file():
            return again, pid
        os.kill(pid, signal.SIGCONT)
    return None
