"""Per-image detection results, for paired tests between variants scored on the same validation images.

mAP is a property of a whole set of images, so it cannot be paired image by image. What can: the
share of each image's objects that a model finds (a detection of the right class, at the usual
confidence of 0.25, overlapping the object with IoU >= 0.5, each detection used once, the most
confident first, as in COCO matching). Two variants' shares on the same images are compared by
Wilcoxon's signed-rank test in the study report.
"""

from __future__ import annotations

FOUND_CONF = 0.25  # ultralytics' predict() default: the detections a user would see
FOUND_IOU = 0.5


def objects_found(prediction: dict, target: dict, conf: float = FOUND_CONF, iou: float = FOUND_IOU) -> int:
    """How many of the target's objects a detection of the same class finds (greedy, most confident first)."""
    from torchvision.ops import box_iou

    keep = prediction["scores"] >= conf
    boxes, scores, labels = prediction["boxes"][keep], prediction["scores"][keep], prediction["labels"][keep]
    if len(boxes) == 0 or len(target["boxes"]) == 0:
        return 0
    overlaps = box_iou(boxes, target["boxes"])
    overlaps[labels[:, None] != target["labels"][None, :]] = 0.0
    taken = set()
    for d in scores.argsort(descending=True).tolist():
        candidates = [(float(overlaps[d, t]), t) for t in range(overlaps.shape[1]) if t not in taken]
        best = max(candidates, default=(0.0, None))
        if best[1] is not None and best[0] >= iou:
            taken.add(best[1])
    return len(taken)


def per_image_row(index: int, prediction: dict, target: dict) -> list:
    """A predictions.csv row: index, objects in the image (y_true), detections shown (y_pred), the share found."""
    objects = len(target["boxes"])
    shown = int((prediction["scores"] >= FOUND_CONF).sum())
    found = objects_found(prediction, target)
    return [index, objects, shown, f"{found / objects:.6g}" if objects else "1"]


HEADER = ["index", "y_true", "y_pred", "found50"]  # y_true: objects in the image; y_pred: detections at conf 0.25
