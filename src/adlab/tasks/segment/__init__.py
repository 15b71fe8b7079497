"""Semantic segmentation: a class for every pixel. adlab's U-Net or a torchvision segmentation net (from scratch,
its ImageNet backbone fine-tuned or frozen, or torchvision's full weights), trained with per-pixel cross-entropy
on images with masks (adlab.data.masks), scored by mean IoU, per-class IoU, pixel accuracy and mean Dice, with
overlays of prediction and truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adlab.config import Config
from adlab.formatting import figure_text
from adlab.tasks.base import ReportSpec, Task
from adlab.tasks.lightning import LightningTask


@dataclass
class LibraryWeights:
    """torchvision's published weights the segmenter loaded: the line the run prints, the record env.json keeps."""

    text: str
    record: dict

    def line(self) -> str:
        return self.text

    def to_dict(self) -> dict:
        return self.record


@dataclass
class SegmenterModel:
    """What prepare reads of a built network (as models.factory.BuiltModel), and the library weights it loaded."""

    net: Any  # torch.nn.Module: torch is imported where a run trains, not with the task
    head: str
    load_report: Any  # models.checkpoints.LoadReport | None
    library: LibraryWeights | None = None


class Segment(LightningTask):
    name = "segment"
    val_columns = ["val_mean_iou", "val_pixel_accuracy"]
    report = ReportSpec(
        "Segmentation",
        [
            ("mean_iou", "max"),
            ("pixel_accuracy", "max"),
            ("mean_dice", "max"),
            ("train_seconds", "min"),
            ("scored_epoch", None),
        ],
        ["overlays.png", "per_class_iou.png"],
        "val_mean_iou",
        paired=(("mean_iou", "iou"),),
        per_class="per_class_iou",
        summary_keys=("mean_iou",),
    )

    figures_per_run = 3  # loss curves, overlays, per-class IoU

    def input_requirements(self, config: Config) -> tuple[int | None, tuple | None]:
        from adlab.models.checkpoints import checkpoint_input
        from adlab.models.segmentation import check_segmenter_name, segmentation_normalization

        check_segmenter_name(config.model.name)
        weights = config.model.weights
        if weights is None:
            return None, None
        normalization = segmentation_normalization(config.model.name, weights)
        if normalization is not None:
            return 3, normalization
        return checkpoint_input(weights)  # an adlab run or checkpoint: its channels and statistics

    def datamodule(self, config: Config, channels: int | None, normalization: tuple | None):
        from adlab.tasks.segment.data import SegmentDataModule

        return SegmentDataModule(
            config.data,
            config.train.batch_size,
            channels=channels,
            normalization=normalization,
            eval_batch_size=64,  # a class score per pixel: a thousand images at once would not fit
            channels_last=config.train.channels_last,
        )

    def build(self, config: Config, info):
        from adlab.models.checkpoints import load_matching, read_weights
        from adlab.models.segmentation import build_segmenter, freeze_backbone, weights_regime
        from adlab.settings.unet import UnetConfig

        cfg = config.model
        library = weights_regime(cfg.weights)  # imagenet, coco_voc; None: none, or an adlab run or checkpoint
        built = build_segmenter(
            cfg.name, info.input_shape[0], len(info.class_names), cfg.weights, cfg.family(UnetConfig)
        )
        report = None
        if cfg.weights is not None and library is None:  # an adlab segmentation run or checkpoint
            state, _, source = read_weights(cfg.weights, with_sha256=True)
            report = load_matching(built.net, state, cfg.weights, skip_prefixes=() if cfg.load_head else (built.head,))
            report.file = source
        if cfg.freeze:
            freeze_backbone(built.net, built.head)
        provenance = LibraryWeights(built.line or "", built.weights) if built.weights is not None else None
        return SegmenterModel(built.net, built.head, report, provenance)

    def library_weights(self, config: Config, built):
        return built.library

    def module(self, built, config: Config, meta: dict):
        from adlab.tasks.segment.module import SegmentModule

        return SegmentModule(built.net, built.head, list(meta["data"]["class_names"]), config.train, meta)

    def evaluate(self, run_dir: Path, built, data, config: Config, extra: dict, history: list[dict]) -> dict:
        from adlab.tasks.curves import loss_curves
        from adlab.tasks.segment.outputs import predict_masks, write_segmentation_result

        title = config.name or config.model.name
        loss_curves(
            history,
            run_dir / "figures" / "loss_curves.png",
            figure_text(title),
            scores=[("val_mean_iou", "mean IoU"), ("val_pixel_accuracy", "pixel accuracy")],
            score_label="validation score",
            loss_label="cross-entropy per pixel",
        )
        pred = predict_masks(built.net, data.transform, data.test_x)
        return write_segmentation_result(
            run_dir, pred, data.test_y, data.test_x, data.info.class_names, extra, figure_text(title)
        )

    def summary(self, metrics: dict) -> str:
        from adlab.tasks.segment.outputs import summary_line

        return summary_line(metrics)


TASK: Task = Segment()  # mypy checks the task against the Task protocol
