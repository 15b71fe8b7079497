"""The per-image share of objects found, behind the report's paired test between detection variants."""

import torch

from adlab.tasks.detect.per_image import objects_found, per_image_row


def _target(*boxes, labels=None):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32),
            "labels": torch.tensor(labels or [0] * len(boxes))}


def _prediction(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "scores": torch.tensor(scores),
            "labels": torch.tensor(labels)}


def test_objects_found_by_class_iou_and_confidence():
    target = _target([0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], labels=[0, 0, 1])
    prediction = _prediction([[0, 0, 10, 10],      # object 0, right class
                              [21, 21, 31, 31],    # object 1: IoU 81/119 = 0.68
                              [40, 40, 50, 50],    # object 2 box, wrong class
                              [0, 0, 10, 10]],     # object 0 again: a duplicate finds nothing more
                             [0.9, 0.8, 0.9, 0.7], [0, 0, 0, 0])
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
