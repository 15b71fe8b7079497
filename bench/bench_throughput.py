"""Training throughput: adlab against a plain PyTorch loop, same model and batch size.

The plain loop is what a course notebook does: torchvision's FashionMNIST with ToTensor and
Normalize, a DataLoader (tried with 0 and 2 workers; the faster one is the baseline), and
forward/backward/step. adlab trains the same network through `adlab.run.train` (Lightning,
uint8 tensors in memory, batched preprocessing, channels-last), in fp32 and in bf16-mixed.
Both see the full 60,000 training images; the second epoch is timed (the first warms up).

Also: the machine's fp32 and bf16 matmul peak, and the fraction of it that training reaches
(training FLOPs counted by torch.utils.flop_counter for one forward and backward).
"""

from __future__ import annotations

import gzip
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import matmul_peak, record  # noqa: E402

from adlab.models.cnn import VGGNet  # noqa: E402

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
BATCH = 128
# The "two-convolution CNN" of the course: conv-pool, conv-pool, one hidden layer.
MODEL = {"name": "cnn", "conv_channels": [32, 64], "convs_per_block": 1, "hidden": [128], "dropout": 0.3}


def make_model() -> torch.nn.Module:
    return VGGNet(1, 10, (28, 28), MODEL["conv_channels"], MODEL["convs_per_block"], hidden=MODEL["hidden"],
                  dropout=MODEL["dropout"])


def torchvision_root(tmp: Path) -> Path:
    """The layout torchvision's FashionMNIST expects after its own download: raw/*-ubyte."""
    raw = tmp / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in DEBIAN.glob("*.gz"):
        with gzip.open(gz) as src, open(raw / gz.stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return tmp


def plain_loop(root: Path, workers: int, epochs: int = 2) -> float:
    """Images per second of the last epoch of a textbook loop."""
    from torchvision import datasets, transforms

    torch.manual_seed(0)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.2860,), (0.3530,))])
    data = datasets.FashionMNIST(root, train=True, transform=tf, download=False)
    loader = torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=True, num_workers=workers,
                                         persistent_workers=workers > 0)
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rate = 0.0
    for _ in range(epochs):
        start, seen = time.perf_counter(), 0
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(y)
        rate = seen / (time.perf_counter() - start)
    return rate


def adlab_rate(precision: str, out: Path) -> float:
    from adlab.run.train import train
    from adlab.rundir import read_history

    config = {"data": {"name": "fashion_mnist", "val_fraction": 0.0}, "model": MODEL,
              "train": {"epochs": 2, "batch_size": BATCH, "optimizer": "adam", "lr": 1e-3, "precision": precision,
                        "progress_bar": False}}
    run = train(config, out=out, overwrite=True, verbose=False)
    rows = read_history(out / "history.csv")
    return run.metrics["num_train"] / rows[-1]["seconds"]


def train_flops_per_image() -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model = make_model()
    x, y = torch.randn(BATCH, 1, 28, 28), torch.randint(0, 10, (BATCH,))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / BATCH


def main() -> None:
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    with tempfile.TemporaryDirectory() as tmp:
        root = torchvision_root(Path(tmp) / "tv")
        plain = {w: plain_loop(root, w) for w in (0, 2)}
        fp32 = adlab_rate("32-true", Path(tmp) / "fp32")
        bf16 = adlab_rate("bf16-mixed", Path(tmp) / "bf16")
    baseline = max(plain.values())
    flops = train_flops_per_image()
    rows = [
        {"measure": "matmul peak fp32 (2048x2048)", "value": peak32, "unit": "GFLOP/s", "goal": "~180", "met": None},
        {"measure": "matmul peak bf16 (2048x2048)", "value": peak16, "unit": "GFLOP/s", "goal": "-", "met": None},
        {"measure": "plain loop, DataLoader 0 workers", "value": plain[0], "unit": "img/s", "goal": "~3000", "met": None},
        {"measure": "plain loop, DataLoader 2 workers", "value": plain[2], "unit": "img/s", "goal": "~3000", "met": None},
        {"measure": "adlab fp32 (channels-last)", "value": fp32, "unit": "img/s", "goal": "-", "met": None},
        {"measure": "adlab bf16-mixed (channels-last)", "value": bf16, "unit": "img/s", "goal": "-", "met": None},
        {"measure": "speed-up fp32 / best plain loop", "value": fp32 / baseline, "unit": "x", "goal": ">= 1.5",
         "met": fp32 / baseline >= 1.5},
        {"measure": "speed-up bf16 / best plain loop", "value": bf16 / baseline, "unit": "x", "goal": ">= 1.5",
         "met": bf16 / baseline >= 1.5},
        {"measure": "training FLOPs per image", "value": flops / 1e6, "unit": "MFLOP", "goal": "-", "met": None},
        {"measure": "adlab fp32: share of fp32 matmul peak", "value": fp32 * flops / 1e9 / peak32, "unit": "",
         "goal": "-", "met": None},
        {"measure": "adlab bf16: share of bf16 matmul peak", "value": bf16 * flops / 1e9 / peak16, "unit": "",
         "goal": "-", "met": None},
    ]
    record("throughput", rows)


if __name__ == "__main__":
    main()
