"""Image classification: a CNN or a torchvision net adapted to the data, trained with cross-entropy,
scored on the test set (accuracy, mean class accuracy, macro F1/precision/recall, per class,
confusion matrix), then re-used by `evaluate`, `predict` and late fusion (`fuse`)."""

from __future__ import annotations

from pathlib import Path

from adlab.config import Config
from adlab.tasks.base import ReportSpec, Task
from adlab.tasks.lightning import LightningTask


class Classify(LightningTask):
    name = "classify"
    val_columns = ["val_accuracy", "val_mean_class_accuracy"]
    report = ReportSpec(
        "Classification",
        [
            ("accuracy", "max"),
            ("mean_class_accuracy", "max"),
            ("macro_f1", "max"),
            ("macro_precision", "max"),
            ("macro_recall", "max"),
            ("train_seconds", "min"),
            ("scored_epoch", None),
        ],
        [],
        "val_accuracy",
        paired=(("accuracy", "correct"),),
        per_class="per_class_accuracy",  # confusion matrices: one grid
        summary_keys=("accuracy",),
    )

    def resolve(self, config: Config) -> Config:
        from adlab.models.factory import resolve_encoder_architecture

        config = super().resolve(config)
        return config.model_copy(update={"model": resolve_encoder_architecture(config.model)})

    figures_per_run = 3  # loss curves, confusion matrix, misclassified test images

    def evaluation_images(self, config: Config, counts: dict[str, int]) -> int:
        views = (2 if config.train.tta_flip else 1) * (3 if config.train.tta_shift else 1)  # as predict_probs
        return counts["test"] * views

    def build(self, config: Config, info):
        from adlab.models.factory import build_model

        return build_model(config.model, info.input_shape, len(info.class_names))

    def module(self, built, config: Config, meta: dict):
        from adlab.tasks.classify.module import ClassifyModule

        return ClassifyModule(built.net, len(meta["data"]["class_names"]), config.train, meta)

    def evaluate(self, run_dir: Path, built, data, config: Config, extra: dict, history: list[dict]) -> dict:
        from adlab.tasks.classify.outputs import predict_probs, tta_settings, write_classification_result

        probs = predict_probs(built.net, data.transform, data.test_x, **tta_settings(config.train))
        return write_classification_result(
            run_dir, probs, data.test_y, data.test_x, data.info.class_names, extra, history, config.name or ""
        )

    def summary(self, metrics: dict) -> str:
        from adlab.tasks.classify.outputs import summary_line

        return summary_line(metrics)


TASK: Task = Classify()  # mypy checks the task against the Task protocol
