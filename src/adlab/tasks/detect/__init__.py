"""Object detection: YOLO from scratch or from a checkpoint, trained by ultralytics on a YOLO-format
data set (`adlab data kitti-to-yolo` makes one from KITTI), scored by mAP50, mAP50-95, precision
and recall (and once more by torchmetrics). ultralytics is imported only when this task runs."""

from __future__ import annotations

from pathlib import Path

from adlab.config import Config
from adlab.tasks.base import Job, ReportSpec, Say, Task


class Detect:
    name = "detect"
    report = ReportSpec(
        "Detection",
        [
            ("map50", "max"),
            ("map50_95", "max"),
            ("precision", "max"),
            ("recall", "max"),
            ("map50_torchmetrics", "max"),
            ("train_seconds", "min"),
        ],
        ["predictions.png", "pr_curve.png"],
        "val_map50",
        summary_keys=("map50",),
        paired=(("map50", "found50"),),
    )  # mAP has no per-image value: the share of objects found stands in
    val_columns = ["val_map50", "val_map50_95", "val_precision", "val_recall"]  # history.csv beside the losses

    def resolve(self, config: Config) -> Config:
        return config

    def timing_network(self, config: Config, shape: tuple[int, int, int]) -> None:
        return None  # ultralytics builds the network inside its own trainer: --plan does not estimate detection

    def evaluation_images(self, config: Config, counts: dict[str, int]) -> int:
        return counts["test"]

    def outputs_seconds(self, config: Config, counts: dict[str, int]) -> float:
        return 0.0  # not estimated (timing_network): ultralytics draws its own plots

    def prepare(self, config: Config, run_dir: Path, say: Say, callbacks: list) -> Job:
        from adlab.tasks.detect.train import prepare

        return prepare(config, say)

    def resume_point(self, run_dir: Path) -> Path | None:
        from adlab.tasks.detect.train import interrupted_checkpoint

        return interrupted_checkpoint(run_dir)

    def fit(self, job: Job, run_dir: Path, restart_from: Path | None, say: Say) -> dict:
        from adlab.tasks.detect.train import fit

        return fit(job, run_dir, restart_from, say)


TASK: Task = Detect()  # mypy checks the task against the Task protocol
