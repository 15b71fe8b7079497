"""Autoencoder throughput: assignment F's 16-32-32 autoencoder trained by adlab against a plain PyTorch loop of
the same network, side by side on the same 10,000 real Fashion-MNIST images (Debian's package).

The plain loop is the network's own module (adlab.models.autoencoders.AutoEncoder: 3 stride-2 convolutions
16-32-32 with batch norm and Dropout2d 0.2, a linear code of 10, the mirrored transposed-convolution decoder)
trained with MSE summed per image and Adam at batch 256, the images already in memory as float tensors: the
fastest a notebook gets. It is timed in four ways (fp32 or bf16 autocast; the network and its inputs
contiguous or channels-last) over 30 steps after 5 of warm-up (the median step). adlab trains the study's
config through `adlab.train` on the same images (val_fraction 0: the training steps only), and its second and
third epochs are timed from history.csv. The plain loop's best fp32 figure is the machine-speed reference: a
time goal stated per unit of it holds on a slower or busier machine.

    python bench/bench_ae_throughput.py            # writes results/ae_throughput.json
"""

from __future__ import annotations

import csv
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import plain_ae_loop, record  # noqa: E402

import adlab  # noqa: E402

IMAGES, BATCH, THREADS = 10_000, 256, 2
NET = {"channels": (16, 32, 32), "latent_dim": 10, "dropout": 0.2}


def images() -> torch.Tensor:
    from adlab.data.idx import read_idx

    raw = read_idx(Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"))
    return torch.from_numpy(raw[:IMAGES].copy()).unsqueeze(1).float().div(255.0)


def adlab_loop(precision: str) -> float:
    """Images per second of adlab's second and third epochs (the training steps: no validation split)."""
    config = {
        "task": "autoencode",
        "data": {"name": "fashion_mnist", "val_fraction": 0.0, "train_per_class": IMAGES // 10},
        "model": {"name": "ae", "autoencoder": {"latent_dim": NET["latent_dim"], "conv_channels": list(NET["channels"]),
                                                 "conv_dropout": NET["dropout"], "reconstruction_loss": "mse"}},
        "train": {"epochs": 3, "batch_size": BATCH, "lr": 0.001, "weight_decay": 0.00001, "precision": precision,
                  "num_threads": THREADS, "progress_bar": False},
    }
    with tempfile.TemporaryDirectory() as tmp:
        run = adlab.train(config, out=Path(tmp) / "run", verbose=False)
        rows = list(csv.DictReader(open(run.path / "history.csv")))
    return IMAGES / statistics.mean(float(row["seconds"]) for row in rows[1:])


def main() -> None:
    torch.set_num_threads(THREADS)
    x = images()
    plain = {(cl, bf): plain_ae_loop(x, cl, bf) for cl in (False, True) for bf in (False, True)}
    ours = {"32-true": adlab_loop("32-true"), "bf16-mixed": adlab_loop("bf16-mixed")}
    reference = max(plain[(False, False)], plain[(True, False)])
    rows = [
        {"measure": f"plain loop, {'channels-last' if cl else 'contiguous'}, {'bf16' if bf else 'fp32'}",
         "value": plain[(cl, bf)], "unit": "img/s", "goal": "-", "met": None}
        for cl in (False, True) for bf in (False, True)
    ]
    for precision, value in ours.items():
        best_plain = plain[(True, precision.startswith("bf16"))]
        rows.append({"measure": f"adlab {precision} (epochs 2-3, no validation)", "value": value, "unit": "img/s",
                     "goal": f">= plain / 1.5 ({best_plain / 1.5:.0f})", "met": value >= best_plain / 1.5})
    rows.append({"measure": "machine speed: plain loop's best fp32", "value": reference, "unit": "img/s",
                 "goal": "-", "met": None})
    record("ae_throughput", rows)


if __name__ == "__main__":
    main()
