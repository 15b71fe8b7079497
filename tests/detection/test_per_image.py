"""The per-image share of objects found, behind the report's paired test between detection variants."""

import pytest
import torch

from adlab.tasks.detect.per_image import objects_found, per_image_row


def _target(*boxes, labels=None):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels or [0] * len(boxes))}


def _prediction(boxes, scores, labels):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores),
        "labels": torch.tensor(labels),
    }


def test_objects_found_by_class_iou_and_confidence():
    target = _target([0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], labels=[0, 0, 1])
    prediction = _prediction(
        [
            [0, 0, 10, 10],  # object 0, right class
            [21, 21, 31, 31],  # object 1: IoU 81/119 = 0.68
            [40, 40, 50, 50],  # object 2 box, wrong class
            [0, 0, 10, 10],
        ],  # object 0 again: a duplicate finds nothing more
        [0.9, 0.8, 0.9, 0.7],
        [0, 0, 0, 0],
    )
    assert objects_found(prediction, target) == 2
    faint = _prediction([[0, 0, 10, 10]], [0.1], [0])  # below the confidence a user would see
    assert objects_found(faint, target) == 0
    loose = _prediction([[0, 0, 10, 20]], [0.9], [0])  # IoU 0.5 exactly counts
    assert objects_found(loose, target) == 1
    shifted = _prediction([[0, 0, 10, 21]], [0.9], [0])  # IoU 100/210 < 0.5
    assert objects_found(shifted, target) == 0


def test_rows_say_objects_detections_and_share():
    target = _target([0, 0, 10, 10], [20, 20, 30, 30])
    prediction = _prediction([[0, 0, 10, 10], [60, 60, 70, 70]], [0.9, 0.5], [0, 0])
    assert per_image_row(3, prediction, target) == [3, 2, 2, "0.5"]
    assert per_image_row(4, _prediction([], [], []), _target())[1:] == [0, 0, "1"]  # nothing to find: nothing missed


# --- mAP, checked numerically without training: torchmetrics_map on hand-made boxes ---------------------


def _map_of(monkeypatch, images):
    """adlab's torchmetrics_map over `images` [(prediction, target), ...] given as the val predictions."""
    from adlab.tasks.detect import train

    monkeypatch.setattr(train, "predict_val", lambda *a, **k: ((f"{i}.png", p, t) for i, (p, t) in enumerate(images)))
    return train.torchmetrics_map("best.pt", None, 64, "cpu")


# Ranked detections TP (0.9), FP (0.8), TP (0.7) over two objects: precision 1 up to recall 0.5, then 2/3 up to
# recall 1; COCO's 101-point interpolated AP = (51 * 1 + 50 * 2/3) / 101.
AP_TWO_HITS = (51 + 50 * 2 / 3) / 101
AP_ONE_HIT = 51 / 101  # TP (0.9) then only misses: precision 1 up to recall 0.5, nothing beyond


@pytest.mark.requires("detect")  # torchmetrics' MeanAveragePrecision needs pycocotools
def test_map_on_hand_made_boxes(monkeypatch):
    first = (_prediction([[0, 0, 10, 10]], [0.9], [0]), _target([0, 0, 10, 10]))
    exact = (_prediction([[50, 50, 60, 60], [20, 20, 30, 30]], [0.8, 0.7], [0, 0]), _target([20, 20, 30, 30]))
    metrics, rows = _map_of(monkeypatch, [first, exact])
    assert metrics["map50_torchmetrics"] == pytest.approx(AP_TWO_HITS, abs=1e-6)
    assert metrics["map50_95_torchmetrics"] == pytest.approx(AP_TWO_HITS, abs=1e-6)  # every hit has IoU 1
    assert rows == [[0, 1, 1, "1"], [1, 1, 2, "1"]]

    # the second hit at IoU 81/119 = 0.68: a hit at thresholds 0.50-0.65 (4 of 10), a miss at 0.70-0.95
    shifted = (_prediction([[50, 50, 60, 60], [21, 21, 31, 31]], [0.8, 0.7], [0, 0]), _target([20, 20, 30, 30]))
    metrics, _ = _map_of(monkeypatch, [first, shifted])
    assert metrics["map50_torchmetrics"] == pytest.approx(AP_TWO_HITS, abs=1e-6)
    assert metrics["map50_95_torchmetrics"] == pytest.approx((4 * AP_TWO_HITS + 6 * AP_ONE_HIT) / 10, abs=1e-6)


@pytest.mark.requires("detect")
def test_map_is_the_mean_over_classes_and_zero_without_detections(monkeypatch):
    # class 0 found exactly (AP 1), class 1 missed (a box of class 1 predicted as class 0 elsewhere: AP 0)
    image = (_prediction([[0, 0, 10, 10]], [0.9], [0]), _target([0, 0, 10, 10], [40, 40, 50, 50], labels=[0, 1]))
    metrics, _ = _map_of(monkeypatch, [image])
    assert metrics["map50_torchmetrics"] == pytest.approx(0.5, abs=1e-6)
    nothing = (_prediction([], [], []), _target([0, 0, 10, 10]))
    assert _map_of(monkeypatch, [nothing])[0] == {"map50_torchmetrics": 0.0, "map50_95_torchmetrics": 0.0}
