"""The interface between `run/` (task-blind: the run folder, its phases, resume) and a task."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from adlab.config import Config

Say = Callable[..., None]


@dataclass
class Job:
    """A run ready to start: every input checked, nothing written yet."""

    config: Config  # as the run records it in config.yaml
    environment: dict = field(default_factory=dict)  # the task's entries of env.json (data, counts, weights)
    state: Any = None  # the task's own: data, model, trainer


@dataclass
class ReportSpec:
    """How a study report shows this task's runs."""

    title: str  # the section heading
    columns: list[tuple[str, str | None]]  # (metrics.json key, "max" | "min": which is better; None: neither)
    figures: list[str]  # figures/ files shown per run
    curve: str  # the history.csv column drawn per epoch for all runs
    # (metrics.json key, its per-image measure in predictions.csv: "correct" (y_true == y_pred) or a column
    # such as "mse"): variants scored on the same test images get a paired test on these
    paired: tuple[tuple[str, str], ...] = ()
    per_class: str | None = None  # a metrics.json mapping class -> value, shown as its own table
    summary_keys: tuple[str, ...] = ()  # the columns the summary at the top names a best variant for


@runtime_checkable
class Task(Protocol):
    """What run/ and study/ call on a task; the data, models and settings it accepts are its entry in the
    task registry (adlab.taskspec), which the config schema checks."""

    name: str
    report: ReportSpec
    val_columns: list[str]  # history.csv's validation columns beside train_loss and val_loss (search objectives)

    def timing_network(self, config: Config, shape: tuple[int, int, int]) -> Any:
        """The network whose training step `--plan` times on random inputs of `shape` (None: not estimated)."""

    def evaluation_images(self, config: Config, counts: dict[str, int]) -> int:
        """How many images the run's final evaluation passes through the network (`--plan`'s estimate), given
        the images of each split (`counts`: train, val, test)."""

    def outputs_seconds(self, config: Config, counts: dict[str, int]) -> float:
        """Seconds of the run's work besides its network's passes (`--plan`'s estimate): its figures, and what
        the task computes from its outputs (an autoencoder's t-SNE map and probes), timed on this machine."""

    def checkpoint_seconds(self, config: Config, net: Any) -> float:
        """Seconds one epoch spends writing the run's checkpoints of `net` (`--plan`'s estimate), timed here."""

    def resolve(self, config: Config) -> Config:
        """The config as a run of this task records it (task defaults made explicit); ConfigError if unusable."""

    def prepare(self, config: Config, run_dir: Path, say: Say, callbacks: list) -> Job:
        """Data, model and trainer built: every bad input fails here, before the run folder exists."""

    def resume_point(self, run_dir: Path) -> Path | None:
        """The checkpoint an interrupted run continues from (None: it starts again)."""

    def fit(self, job: Job, run_dir: Path, restart_from: Path | None, say: Say) -> dict:
        """Train (from `restart_from` if given), then evaluate; the run's files, metrics.json last.
        Returns the metrics ({} in a DDP process that is not rank zero)."""
