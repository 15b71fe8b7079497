"""Fused validation accuracy of trained Fashion-MNIST runs (issue 19's exploration).

The runs train on 54,000 images with a 6,000-image validation split (data.val_fraction 0.1); this
script predicts each run's validation images the way its test images are predicted (the run's own
test-time views and precision), then fuses the first 1, 2, ... runs by mean probability and prints
validation and test accuracy for each count. Choices for the shipped recipe are made on the
validation column; the test column is printed for the record only.

    python bench/ensemble/fuse_val.py runs/ensemble/fast_val/runs/*/ --tag fast8 \
        --log bench/results/ensemble.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from adlab.data.datamodule import ImageDataModule
from adlab.tasks.classify.fuse import combine
from adlab.tasks.classify.loading import load_trained
from adlab.tasks.classify.outputs import predict_probs, read_predictions, tta_settings


def member_probs(run: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(validation probabilities, validation labels, test probabilities, test labels) of one run."""
    trained = load_trained(run)
    config = trained.config
    data = ImageDataModule(config.data, config.train.batch_size, channels=trained.info.channels,
                           normalization=(trained.info.mean, trained.info.std))
    data.prepare()
    val = predict_probs(trained.net, trained.transform(), data.val_x, **tta_settings(config.train))
    test, test_y = read_predictions(run / "predictions.csv")
    return val, data.val_y, test, test_y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--tag", required=True, help="name of this set of members in the log")
    parser.add_argument("--log", type=Path, help="append one JSON line per ensemble size")
    args = parser.parse_args()
    members = []
    for run in args.runs:
        start = time.perf_counter()
        members.append(member_probs(run))
        val, val_y, test, test_y = members[-1]
        print(f"{run}: val {(val.argmax(1) == val_y).float().mean():.4f}  test {(test.argmax(1) == test_y).float().mean():.4f}"
              f"  ({time.perf_counter() - start:.1f} s)")
    for count in range(1, len(members) + 1):
        chosen = members[:count]
        val_y, test_y = chosen[0][1], chosen[0][3]
        val_acc = (combine([m[0] for m in chosen], "mean_prob").argmax(1) == val_y).float().mean().item()
        test_acc = (combine([m[2] for m in chosen], "mean_prob").argmax(1) == test_y).float().mean().item()
        print(f"{args.tag}: {count} member(s) fused: val {val_acc:.4f}  test {test_acc:.4f}")
        if args.log:
            with args.log.open("a") as f:
                f.write(json.dumps({"tag": args.tag, "members": count, "runs": [str(r) for r in args.runs[:count]],
                                    "val_accuracy": round(val_acc, 4), "test_accuracy": round(test_acc, 4)}) + "\n")


if __name__ == "__main__":
    main()
