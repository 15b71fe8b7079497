"""Late fusion: combine the test predictions of several trained runs.

mean_prob  : average the class probabilities
sum_logits : sum the log-probabilities (= summing logits up to a per-model constant, so the same
             decision; the product of experts)
vote       : majority of the predicted classes, ties broken by the mean probability
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from adlab import io, ownership
from adlab.config import validate_config
from adlab.data.datamodule import ImageDataModule
from adlab.errors import AdlabError
from adlab.rundir import check_run_dir, environment, prepare_run_dir
from adlab.tasks.classify.outputs import check_metrics, read_predictions, summary_line, write_classification_result
from adlab.taskspec import fusing_task

METHODS = fusing_task().fusion_methods


def combine(probs: list[torch.Tensor], method: str) -> torch.Tensor:
    """Fused class scores [N, K], normalised to sum to one per row."""
    stack = torch.stack(probs)  # [M, N, K]
    if method == "mean_prob":
        return stack.mean(0)
    if method == "sum_logits":
        return torch.softmax(torch.log(stack.clamp_min(1e-12)).sum(0), dim=1)
    if method == "vote":
        k = stack.shape[2]
        votes = torch.nn.functional.one_hot(stack.argmax(2), k).sum(0).float()  # [N, K]
        # ties go to the higher mean probability: 1e-3 x a probability is less than one vote
        scores = votes + 1e-3 * stack.mean(0)
        return scores / scores.sum(1, keepdim=True)
    raise AdlabError(f"unknown fusion method {method!r} (valid: {', '.join(METHODS)})")


def fuse(
    runs: Sequence[str | Path],
    out: str | Path,
    method: str = "mean_prob",
    overwrite: bool = False,
    verbose: bool = True,
) -> dict:
    if len(runs) < 2:
        raise AdlabError("fuse needs at least two runs")
    members = []
    for run in runs:
        path = Path(run)
        if not os.path.lexists(path / "metrics.json"):  # a metrics.json that is not a file is refused as read
            raise AdlabError(f"{path}: not a finished run (no metrics.json)")
        metrics = io.read_json_mapping(path / "metrics.json", "metrics file")
        probs, target = read_predictions(path / "predictions.csv")
        check_metrics(path / "metrics.json", metrics, probs.shape[1])
        members.append((path, metrics, probs, target))
    first_path, first_metrics, _, first_target = members[0]
    for path, metrics, _, target in members[1:]:
        if metrics["class_names"] != first_metrics["class_names"]:
            mine, theirs = metrics["class_names"], first_metrics["class_names"]
            if len(mine) != len(theirs):
                raise AdlabError(f"{path}: classes differ from {first_path} ({len(mine)} classes vs {len(theirs)})")
            i = next(i for i, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b)
            raise AdlabError(
                f"{path}: classes differ from {first_path} (class {i}: {mine[i][:40]!r} vs {theirs[i][:40]!r})"
            )
        if len(target) != len(first_target) or not torch.equal(target, first_target):
            raise AdlabError(f"{path}: test set differs from {first_path} (not the same images in the same order)")
    if method not in METHODS:
        raise AdlabError(f"unknown fusion method {method!r} (valid: {', '.join(METHODS)})")
    out = ownership.canonical(out)
    check_run_dir(out, overwrite, kind="fused-run")  # before the slow part, and before any file is written
    fused = combine([m[2] for m in members], method)
    images = _test_images(first_path)
    out_dir = prepare_run_dir(out, overwrite, kind="fused-run")
    io.write_yaml(out_dir / "config.yaml", {"task": "fuse", "method": method, "runs": [str(m[0]) for m in members]})
    io.write_json(out_dir / "env.json", environment(seed=-1))
    extra = {"fusion_method": method, "members": {str(p): m.get("accuracy") for p, m, _, _ in members}}
    metrics = write_classification_result(
        out_dir, fused, first_target, images, first_metrics["class_names"], extra, title=f"late fusion ({method})"
    )
    if verbose:
        for path, m, _, _ in members:
            print(f"member {path}: accuracy={m.get('accuracy', float('nan')):.4f}")
        print(f"fused ({method}): {summary_line(metrics)}")
        print(f"run: {out_dir}")
    return metrics


def _test_images(run: Path) -> torch.Tensor:
    """The test images of a run, reloaded from its config (same seeds, same split)."""
    config = validate_config(
        io.read_yaml_mapping(run / "config.yaml", error=AdlabError), str(run / "config.yaml"), notices=False
    )
    data = ImageDataModule(config.data, config.train.batch_size)
    data.prepare()
    return data.test_x
