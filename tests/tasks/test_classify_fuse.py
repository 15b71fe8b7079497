import json

import numpy as np
import pytest
import torch

import adlab
from adlab.errors import AdlabError
from adlab.tasks.classify.fuse import combine


def test_combine_methods_by_hand():
    a = torch.tensor([[0.6, 0.4], [0.2, 0.8], [0.5, 0.5]])
    b = torch.tensor([[0.3, 0.7], [0.4, 0.6], [0.9, 0.1]])
    c = torch.tensor([[0.2, 0.8], [0.9, 0.1], [0.6, 0.4]])
    mean = combine([a, b], "mean_prob")
    assert torch.allclose(mean, (a + b) / 2)
    product = combine([a, b], "sum_logits")
    expected = a * b / (a * b).sum(1, keepdim=True)  # softmax of summed log-probs = normalised product
    assert torch.allclose(product, expected, atol=1e-6)
    votes = combine([a, b, c], "vote")
    assert votes.argmax(1).tolist() == [1, 1, 0]  # majorities: (0,1,1) (1,1,0) (0,0,0)
    assert torch.allclose(votes.sum(1), torch.ones(3))
    tie = combine([a, b], "vote")  # row 0: one vote each; mean prob favours class 1 (0.55)
    assert tie[0].argmax().item() == 1


def test_fuse_two_runs(digits_run, digits_run_b, tmp_path):
    out = tmp_path / "fused"
    metrics = adlab.fuse([digits_run.path, digits_run_b.path], out=out, method="mean_prob", verbose=False)
    for name in (
        "metrics.json",
        "predictions.csv",
        "figures/confusion_matrix.png",
        "figures/misclassified.png",
        "config.yaml",
    ):
        assert (out / name).is_file(), name
    a = np.loadtxt(digits_run.path / "predictions.csv", delimiter=",", skiprows=1)[:, 3:]
    b = np.loadtxt(digits_run_b.path / "predictions.csv", delimiter=",", skiprows=1)[:, 3:]
    y = np.loadtxt(digits_run.path / "predictions.csv", delimiter=",", skiprows=1)[:, 1]
    expected = ((a + b) / 2).argmax(1)
    assert metrics["accuracy"] == pytest.approx((expected == y).mean(), abs=1e-6)
    assert json.loads((out / "metrics.json").read_text())["fusion_method"] == "mean_prob"
    assert set(metrics["members"]) == {str(digits_run.path), str(digits_run_b.path)}


def test_fuse_refuses_different_test_sets(digits_run, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    text = (digits_run.path / "predictions.csv").read_text().splitlines()
    (other / "predictions.csv").write_text("\n".join(text[:-5]) + "\n")
    (other / "metrics.json").write_text((digits_run.path / "metrics.json").read_text())
    with pytest.raises(AdlabError, match="test set differs"):
        adlab.fuse([digits_run.path, other], out=tmp_path / "f", verbose=False)
    assert not (tmp_path / "f").exists()


def test_fuse_needs_finished_runs(digits_run, tmp_path):
    with pytest.raises(AdlabError, match="not a finished run"):
        adlab.fuse([digits_run.path, tmp_path], out=tmp_path / "f", verbose=False)
