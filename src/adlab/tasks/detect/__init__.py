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

    def timing_network(self, config: Config, shape: tuple[int, int, int]):
        from adlab.tasks.detect.timing import timing_network

        return timing_network(config.model.name, _classes(config))

    def evaluation_images(self, config: Config, counts: dict[str, int]) -> int:
        return 2 * counts["val"]  # ultralytics' final validation of best.pt, then adlab's torchmetrics pass

    # ultralytics' 13 (labels, results, four box curves, two confusion matrices, three training and two val
    # batches) and adlab's 4 (loss curves, PR curve, confusion matrix, predictions)
    figures_per_run = 17

    def outputs_seconds(self, config: Config, counts: dict[str, int]) -> float:
        from adlab.tasks.output_costs import figure_seconds

        return self.figures_per_run * figure_seconds()

    checkpoints_per_epoch = 2  # ultralytics' last.pt, and best.pt when the fitness improves

    def checkpoint_seconds(self, config: Config, net) -> float:
        from adlab.tasks.detect.timing import checkpoint_bytes
        from adlab.tasks.output_costs import checkpoint_seconds

        return self.checkpoints_per_epoch * checkpoint_seconds(checkpoint_bytes(net))

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


def _classes(config: Config) -> int:
    """The data set's classes where its data.yaml is here; one otherwise (the head's share of the cost is small)."""
    from adlab.detection.yolo_format import read_data_yaml
    from adlab.errors import AdlabError

    root = config.data.root
    if not root or "{out}" in root:
        return 1
    try:
        return len(read_data_yaml(root).names)
    except (AdlabError, OSError):
        return 1
