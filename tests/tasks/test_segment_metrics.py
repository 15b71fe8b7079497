"""Segmentation scores against torchmetrics' own, on random masks with ignored pixels."""

import math

import pytest
import torch
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_jaccard_index
from torchmetrics.functional.segmentation import dice_score, mean_iou

from adlab.tasks.segment.metrics import IGNORE, per_image_iou, pixel_confusion, scores


def _masks(seed: int, n=6, k=4, h=9, w=11):
    g = torch.Generator().manual_seed(seed)
    truth = torch.randint(0, k, (n, h, w), generator=g)
    pred = torch.where(torch.rand(n, h, w, generator=g) < 0.6, truth, torch.randint(0, k, (n, h, w), generator=g))
    truth[torch.rand(n, h, w, generator=g) < 0.1] = IGNORE
    return pred, truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_equal_torchmetrics(seed):
    pred, truth = _masks(seed)
    k = 4
    result = scores(pixel_confusion(pred, truth, k), [f"c{i}" for i in range(k)])
    expected_iou = multiclass_jaccard_index(pred, truth, k, average="macro", ignore_index=IGNORE)
    assert result["mean_iou"] == pytest.approx(float(expected_iou), abs=1e-6)
    per_class = multiclass_jaccard_index(pred, truth, k, average="none", ignore_index=IGNORE)
    assert list(result["per_class_iou"].values()) == pytest.approx(per_class.tolist(), abs=1e-6)
    accuracy = multiclass_accuracy(pred, truth, k, average="micro", ignore_index=IGNORE)
    assert result["pixel_accuracy"] == pytest.approx(float(accuracy), abs=1e-6)
    # Dice over all test pixels (torchmetrics' segmentation dice, micro over the batch, ignored pixels left out)
    valid = truth != IGNORE
    one_hot = lambda m: torch.nn.functional.one_hot(m.clamp_max(k - 1), k).permute(0, 3, 1, 2) * valid[:, None]  # noqa: E731
    dice = dice_score(
        one_hot(pred), one_hot(truth), k, average="none", input_format="one-hot", aggregation_level="global"
    )
    assert result["mean_dice"] == pytest.approx(float(dice.mean()), abs=1e-6)


def test_a_class_in_neither_truth_nor_prediction_has_no_iou():
    truth = torch.tensor([[[0, 0, 1, 1]]])
    result = scores(pixel_confusion(truth.clone(), truth, 3), ["a", "b", "c"])
    assert result["per_class_iou"] == {"a": 1.0, "b": 1.0, "c": None}
    assert result["mean_iou"] == 1.0  # the absent class is not counted as 0


def test_ignored_pixels_are_not_scored():
    truth = torch.tensor([[[0, 1, IGNORE, IGNORE]]])
    pred = torch.tensor([[[0, 1, 1, 0]]])
    result = scores(pixel_confusion(pred, truth, 2), ["a", "b"])
    assert result["pixel_accuracy"] == 1.0 and result["mean_iou"] == 1.0


def test_per_image_iou_equals_torchmetrics_mean_iou_per_image():
    pred, truth = _masks(5, n=5, k=3)
    got = per_image_iou(pred, truth, 3)
    for i in range(len(pred)):
        confusion = pixel_confusion(pred[i : i + 1], truth[i : i + 1], 3)
        assert float(got[i]) == pytest.approx(scores(confusion, ["a", "b", "c"])["mean_iou"], abs=1e-9)
    # torchmetrics' MeanIoU per image (ignored pixels removed from both masks first)
    valid = truth != IGNORE
    one_hot = lambda m: torch.nn.functional.one_hot(m.clamp_max(2), 3).permute(0, 3, 1, 2) * valid[:, None]  # noqa: E731
    expected = mean_iou(one_hot(pred), one_hot(truth), 3, per_class=True, input_format="one-hot")
    present = (one_hot(pred) + one_hot(truth)).flatten(2).sum(2) > 0
    reference = torch.stack([expected[i][present[i]].mean() for i in range(len(pred))])
    assert got.float() == pytest.approx(reference, abs=1e-6)
    assert not any(math.isnan(v) for v in got.tolist())
