import numpy as np
import pytest
import torch
from sklearn import metrics as skm
from tests.conftest import assert_matches_scikit_learn

from adlab.tasks.classify.metrics import classification_metrics


def _random_case(n=300, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, k, (n,), generator=g)
    logits = torch.randn(n, k, generator=g) + 2.0 * torch.nn.functional.one_hot(target, k)
    return torch.softmax(logits, 1), target


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_scikit_learn(seed):
    probs, target = _random_case(seed=seed)
    names = ["a", "b", "c", "d"]
    m = classification_metrics(probs, target, names)
    y, p = target.numpy(), probs.argmax(1).numpy()
    assert_matches_scikit_learn(m, y, p)
    per_class = skm.recall_score(y, p, average=None)
    assert [m["per_class_accuracy"][n] for n in names] == pytest.approx(per_class.tolist(), abs=1e-6)
    assert m["test_loss"] == pytest.approx(skm.log_loss(y, probs.numpy(), labels=range(4)), abs=1e-4)
    assert m["num_test"] == 300 and m["class_names"] == names


def test_class_never_predicted_counts_zero_precision():
    target = torch.tensor([0, 0, 1, 1, 2, 2])
    preds = torch.tensor([0, 0, 1, 1, 1, 1])  # class 2 never predicted
    probs = torch.nn.functional.one_hot(preds, 3).float()
    m = classification_metrics(probs, target, ["x", "y", "z"])
    y, p = target.numpy(), preds.numpy()
    assert m["macro_precision"] == pytest.approx(skm.precision_score(y, p, average="macro", zero_division=0))
    assert m["per_class_accuracy"]["z"] == 0.0
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, p, average="macro", zero_division=0))


def test_class_absent_from_test_set_is_null_not_zero():
    target = torch.tensor([0, 0, 1, 1])
    probs = torch.nn.functional.one_hot(torch.tensor([0, 0, 1, 0]), 3).float()
    m = classification_metrics(probs, target, ["x", "y", "z"])
    assert m["per_class_accuracy"]["z"] is None
    assert m["mean_class_accuracy"] == pytest.approx(np.mean([1.0, 0.5]))
