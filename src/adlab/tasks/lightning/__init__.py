"""What the Lightning tasks (classify, autoencode) share: data in memory as tensors, a network,
a LightningModule, Lightning's Trainer with adlab's callbacks, the best checkpoint scored on the
test set. A task fills in the hooks (`build`, `module`, `evaluate`, `summary`, ...); this class
holds the phases `run/` calls (see tasks/base.py).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from adlab.config import Config
from adlab.errors import CheckpointError, ConfigError, Interrupted
from adlab.processes import study_worker
from adlab.tasks.base import Job, Say
from adlab.taskspec import monitor_mode


@dataclass
class _ShapeOnly:
    """What `build` reads of the data, for a network built from a shape alone (--plan's timing)."""

    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...] = tuple(str(i) for i in range(10))


@dataclass
class LightningState:
    data: object  # ImageDataModule
    built: object  # BuiltModel
    module: object  # the task's LightningModule
    trainer: object
    history: object  # HistoryWriter
    checkpoint: object  # ModelCheckpoint
    has_val: bool


def checkpoint_bytes(net, optimizer: str) -> int:
    """About the size of a run's checkpoint of `net`: its weights and buffers, and the optimizer's state per
    trained weight (Adam's two moments, SGD's and Muon's momentum)."""
    moments = 2 if optimizer in ("adam", "adamw") else 1
    state = sum(t.numel() * t.element_size() for t in net.state_dict().values())
    trained = sum(p.numel() * p.element_size() for p in net.parameters() if p.requires_grad)
    return state + moments * trained


class LightningTask:
    name = ""
    val_columns: list[str] = []

    # --- hooks of each task ----------------------------------------------------------------------

    def input_requirements(self, config: Config) -> tuple[int | None, tuple | None]:
        """Channels and normalisation the task or the weights impose (None: take them from the data)."""
        from adlab.models.factory import weights_input

        return weights_input(config.model)

    def build(self, config: Config, info):
        raise NotImplementedError

    def module(self, built, config: Config, meta: dict):
        raise NotImplementedError

    def evaluate(self, run_dir: Path, built, data, config: Config, extra: dict, history: list[dict]) -> dict:
        raise NotImplementedError

    def summary(self, metrics: dict) -> str:
        raise NotImplementedError

    # --- the phases run/ calls -------------------------------------------------------------------

    def resolve(self, config: Config) -> Config:
        return config

    def datamodule(self, config: Config, channels: int | None, normalization: tuple | None):
        """The task's data, in memory as tensors: images and class labels (ImageDataModule); a task with
        data of its own (images with masks, ...) gives its own LightningDataModule here."""
        from adlab.data.datamodule import ImageDataModule

        return ImageDataModule(
            config.data,
            config.train.batch_size,
            channels=channels,
            normalization=normalization,
            channels_last=config.train.channels_last,
        )

    def library_weights(self, config: Config, built):
        """What the network loaded of a library's published weights (ImageNet's, ...), with a `line()` to print
        and a `to_dict()` for env.json; None when it loaded none."""
        return imagenet_weights(config)

    def timing_network(self, config: Config, shape: tuple[int, int, int]):
        """The network `--plan` times one training step of (data-free: random inputs of `shape`); None when
        it cannot be built without the run's data."""
        return self.timed_network(self.build(config, _ShapeOnly(shape)), config)

    def timed_network(self, built, config: Config):
        """What a training step's time is measured on: the network (its output's mean is the loss); a task
        whose loss costs more than its network's passes wraps it with that loss."""
        return built.net

    def evaluation_images(self, config: Config, counts: dict[str, int]) -> int:
        return counts["test"]  # its test split, once

    figures_per_run = 1  # the loss curves; a task's own figures come on top

    def outputs_seconds(self, config: Config, counts: dict[str, int]) -> float:
        from adlab.tasks.output_costs import figure_seconds

        return self.figures_per_run * figure_seconds()

    checkpoints_per_epoch = 2  # best.ckpt (at most: when the monitor improves) and last.ckpt

    def checkpoint_seconds(self, config: Config, net) -> float:
        from adlab.tasks.output_costs import checkpoint_seconds

        return self.checkpoints_per_epoch * checkpoint_seconds(checkpoint_bytes(net, config.train.optimizer))

    def resume_point(self, run_dir: Path) -> Path | None:
        from adlab.models.checkpoints import load_untrusted
        from adlab.tasks.lightning.callbacks import last_checkpoint

        path = last_checkpoint(run_dir)
        if path is not None:
            load_untrusted(path)  # weights_only, and one clear line if it is damaged or not ours
        return path

    def prepare(self, config: Config, run_dir: Path, say: Say, callbacks: list) -> Job:
        import lightning as L
        import torch

        from adlab.tasks.lightning.callbacks import EpochPrinter, HistoryWriter, RandomState
        from adlab.tasks.lightning.loggers import check_installed

        prepare_process()
        tc = config.train
        check_installed(tc.loggers)
        if tc.num_threads:
            torch.set_num_threads(tc.num_threads)
        L.seed_everything(tc.seed, workers=True, verbose=False)
        channels, normalization = self.input_requirements(config)
        data = self.datamodule(config, channels, normalization)
        info = data.prepare()
        if tc.early_stopping_patience and not info.counts["val"]:
            raise ConfigError("train.early_stopping_patience needs a validation split (data.val_fraction > 0)")
        L.seed_everything(tc.seed, workers=True, verbose=False)  # same init whatever the data loading consumed
        built = self.build(config, info)
        say(
            f"data: {info.description}; classes {len(info.class_names)}; "
            f"train {info.counts['train']}, val {info.counts['val']}, test {info.counts['test']}; "
            f"input {'x'.join(map(str, info.input_shape))}"
        )
        if built.load_report is not None:
            say(built.load_report.summary())
        weights = built.load_report.to_dict() if built.load_report else config.model.weights
        library = self.library_weights(config, built)
        if library is not None:
            say(library.line())
            weights = library.to_dict()  # which file, its sha256, and whether it is the library's own
        trainable = sum(p.numel() for p in built.net.parameters() if p.requires_grad)
        total = sum(p.numel() for p in built.net.parameters())
        say(f"model: {config.model.name}, {total:,} parameters, {trainable:,} trainable")

        meta = {"config": config.to_dict(), "data": info.to_dict(), "head": built.head, "task": self.name}
        module = self.module(built, config, meta)
        data.channels_last = module.channels_last  # batches in the network's layout
        has_val = info.counts["val"] > 0
        history = HistoryWriter(run_dir / "history.csv", self.val_columns)
        mode = monitor_mode(self.name, tc.monitor)
        checkpoint = L.pytorch.callbacks.ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="best",
            monitor=tc.monitor if has_val else None,
            mode=mode,
            save_last=True,
            save_top_k=1,
            enable_version_counter=False,
        )
        callbacks = [history, checkpoint, RandomState(), *callbacks]
        show_bar = tc.progress_bar and say is print and sys.stdout.isatty()
        if say is print and not show_bar:
            callbacks.append(EpochPrinter(["train_loss", "val_loss", *self.val_columns[:1]]))
        if tc.early_stopping_patience:
            callbacks.append(
                L.pytorch.callbacks.EarlyStopping(tc.monitor, patience=tc.early_stopping_patience, mode=mode)
            )
        trainer = make_trainer(tc, callbacks, show_bar, run_dir, has_val)  # Lightning checks devices here
        environment = {"data": info.description, "counts": info.counts, "weights": weights}
        return Job(config, environment, LightningState(data, built, module, trainer, history, checkpoint, has_val))

    def fit(self, job: Job, run_dir: Path, restart_from: Path | None, say: Say) -> dict:
        from adlab.tasks.lightning.loggers import attached_loggers, log_outputs

        config, s = job.config, job.state
        with attached_loggers(config, run_dir, s.trainer, resuming=restart_from is not None) as loggers:
            metrics = self._fit(job, run_dir, restart_from, say)
            if metrics:  # rank zero: metrics.json and the figures are written
                log_outputs(loggers, run_dir, config, metrics, step=s.trainer.global_step)
        return metrics

    def _fit(self, job: Job, run_dir: Path, restart_from: Path | None, say: Say) -> dict:
        from adlab.models.whiten import whiten_first_conv
        from adlab.tasks.lightning.callbacks import remove_partial_files

        config, s = job.config, job.state
        tc = config.train
        if config.model.whiten and restart_from is None:  # a resumed run takes its filters from the checkpoint
            whiten_first_conv(s.built.net, whitening_batches(s.data))
        if restart_from is not None and s.trainer.is_global_zero:
            remove_partial_files(run_dir)
        started = time.perf_counter()
        try:
            s.trainer.fit(s.module, datamodule=s.data, ckpt_path=restart_from, weights_only=True)
        except SystemExit as exc:  # Lightning's graceful stop on Ctrl-C (exit 1) or SIGTERM
            from lightning.pytorch.utilities.exceptions import SIGTERMException

            sigterm = isinstance(exc, SIGTERMException)
            raise Interrupted(
                f"{'SIGTERM' if sigterm else 'interrupted'} after {len(s.history.rows)} of "
                f"{tc.epochs} epochs; continue with: adlab train --resume {run_dir}",
                143 if sigterm else 130,
            ) from None
        except (RuntimeError, KeyError, ValueError) as exc:
            if restart_from is None or "state_dict" not in str(exc) and not isinstance(exc, KeyError):
                raise
            raise CheckpointError(
                f"{restart_from}: does not fit the run's config.yaml (was it edited?): "
                f"{str(exc).strip().splitlines()[0]}"
            ) from None
        train_seconds = time.perf_counter() - started
        if not s.trainer.is_global_zero:
            return {}
        return self._score(job, run_dir, train_seconds, say)

    def _score(self, job: Job, run_dir: Path, train_seconds: float, say: Say) -> dict:
        """The test set scored with the best checkpoint (the last one without a validation split), or with
        the last epoch's weights (train.test_checkpoint: last); then the checkpoints are trimmed."""
        from adlab import io
        from adlab.models.checkpoints import read_checkpoint

        config, s = job.config, job.state
        folder = run_dir / "checkpoints"
        best, last = folder / "best.ckpt", folder / "last.ckpt"
        if not s.has_val or not s.checkpoint.best_model_path:  # keep the contract: best.ckpt always exists
            with io.atomic_path(best) as tmp:
                shutil.copyfile(last, tmp)
        which = config.train.test_checkpoint
        state, _ = read_checkpoint(last if which == "last" else best)
        s.built.net.load_state_dict(state)
        net = s.built.net
        info = s.data.info
        best_epoch = (
            _best_epoch(s.history.rows, config.train.monitor, monitor_mode(self.name, config.train.monitor))
            if s.has_val
            else s.trainer.current_epoch
        )
        extra = {
            "train_seconds": round(train_seconds, 2),
            "epochs_trained": s.trainer.current_epoch,
            "best_epoch": best_epoch,
            "scored_checkpoint": which,
            "scored_epoch": s.trainer.current_epoch if which == "last" else best_epoch,
            "num_train": info.counts["train"],
            "num_val": info.counts["val"],
            "trainable_parameters": sum(p.numel() for p in net.parameters() if p.requires_grad),
            "parameters": sum(p.numel() for p in net.parameters()),
        }
        metrics = self.evaluate(run_dir, s.built, s.data, config, extra, s.history.rows)
        trim_checkpoints(folder, keep_last=config.train.keep_last, scored=which)
        say(
            f"test: {self.summary(metrics)}  (weights of epoch {extra['scored_epoch']}, {which}; "
            f"{train_seconds:.1f} s training)"
        )
        return metrics


def trim_checkpoints(folder: Path, keep_last: bool, scored: str) -> None:
    """A finished run keeps what is worth keeping: best.ckpt without the optimizer's state (a third of
    the size with Adam: it is for predicting and fine-tuning, not for continuing), last.ckpt whole
    (to train on) unless keep_last is false: then it is deleted, or reduced to its weights when the
    test set was scored with it."""
    from adlab.models.checkpoints import weights_only_copy

    weights_only_copy(folder / "best.ckpt")
    if not keep_last:
        if scored == "last":
            weights_only_copy(folder / "last.ckpt")
        else:
            (folder / "last.ckpt").unlink(missing_ok=True)


def imagenet_weights(config: Config):
    """What `model.weights: imagenet` loaded while the network was built (models/zoo.py), else None."""
    from adlab.models.factory import uses_imagenet
    from adlab.models.zoo import loaded_imagenet_weights

    return loaded_imagenet_weights(config.model.name) if uses_imagenet(config.model) else None


def prepare_process() -> None:
    """Quiet logs and warnings that do not apply to adlab; CPU speed settings."""
    import logging
    import warnings

    import torch

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    # In-memory tensor loaders need no worker processes; these hints do not apply.
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # Lightning makes torch count GPUs through NVML (so CUDA stays uninitialised before forking).
    # Without a GPU that count is never cached and every optimizer step loads NVML again
    # (~0.3 ms a step); with no GPU to protect, the ordinary check is the cheap one.
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1" and torch.cuda.device_count() == 0:
        del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]
    # A resumed run continues in its own checkpoint folder on purpose.
    warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* exists and is not empty.*")
    flush_denormals()


def flush_denormals() -> None:
    """Subnormal floats (below 1e-38) take a slow path on x86 CPUs: assignment A's lr=0.01 runs spent 34 s an
    epoch against 12 s with them flushed to zero (the same CNN, the same data). Call it before the process's
    first training step: threads torch starts before it keep the slow path (a study whose plan timed a step
    first trained its lr=0.01 run at 10, 27, then 56 s an epoch; flushed first, 10 s each)."""
    import torch

    torch.set_flush_denormal(True)


def make_trainer(tc, callbacks, show_bar: bool, run_dir: Path, has_val: bool):
    """Lightning's Trainer from train.* settings; its own complaints become config errors."""
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from adlab.tasks.lightning.callbacks import AtomicCheckpointIO

    try:
        return L.Trainer(
            max_epochs=tc.epochs,
            accelerator=tc.accelerator,
            devices=tc.devices,
            strategy=tc.strategy,
            num_nodes=tc.num_nodes,
            precision=tc.precision,
            deterministic=_deterministic(tc),
            logger=False,
            callbacks=callbacks,
            enable_progress_bar=show_bar,
            enable_model_summary=False,
            default_root_dir=run_dir,
            num_sanity_val_steps=0,
            log_every_n_steps=1,
            limit_val_batches=None if has_val else 0,
            plugins=[AtomicCheckpointIO(), *_cluster_environment()],
        )
    except (MisconfigurationException, ValueError, RuntimeError, TypeError, ImportError) as exc:
        raise ConfigError(f"train.accelerator/devices/strategy/precision: {str(exc).strip().splitlines()[0]}") from None


def _cluster_environment() -> list:
    """The cluster environment chosen here rather than left to Lightning's detection, which (with `srun`
    on the PATH but not used) prints a SLURM hint on every run. Lightning's own detection stays in
    charge only where a launcher really started this process: srun (SLURM_NTASKS set, not an
    interactive job, as Lightning judges it), torchrun, LSF or MPI. In a study worker
    (adlab.study.queue) the environment is always its own: Lightning would read SLURM_NTASKS of
    `srun --ntasks=8` as a DDP world size and wait for 7 ranks that never come."""
    import warnings

    from lightning.fabric.plugins.environments import (
        LightningEnvironment,
        LSFEnvironment,
        MPIEnvironment,
        TorchElasticEnvironment,
    )

    if not study_worker():
        under_srun = "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")
        if under_srun:
            _tasks_per_node_from_step()
        if under_srun or TorchElasticEnvironment.detect() or LSFEnvironment.detect() or MPIEnvironment.detect():
            return []
    # the Trainer asks SLURMEnvironment.detect() again when fit starts, whatever environment it was given
    warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system but is not used")
    return [LightningEnvironment()]


def _tasks_per_node_from_step() -> None:
    """`srun --ntasks=2` on one node: Lightning insists on SLURM_NTASKS_PER_NODE, which SLURM sets only for
    --ntasks-per-node. Where the srun step gives every node the same number of tasks (SLURM_STEP_TASKS_PER_NODE
    '2', or '4(x2)'), that number is the tasks per node; uneven steps, and a batch script without srun (no
    step variables: nobody starts the other ranks), are left to Lightning's own message."""
    import re

    if int(os.environ.get("SLURM_NTASKS", "1") or 1) <= 1 or "SLURM_NTASKS_PER_NODE" in os.environ:
        return
    layout = os.environ.get("SLURM_STEP_TASKS_PER_NODE", "")
    uniform = re.fullmatch(r"(\d+)(\(x\d+\))?", layout)
    if uniform:
        os.environ["SLURM_NTASKS_PER_NODE"] = uniform.group(1)


def whitening_batches(data, images: int = 10_000, batch_size: int = 100):
    """Up to `images` training images spread evenly over the training split (folder data sets
    list their images class by class), normalised as the model sees them (no augmentation)."""
    import torch

    n = len(data.train_y)
    picked = torch.linspace(0, n - 1, min(n, images)).long()
    for start in range(0, len(picked), batch_size):
        yield data.transform(data.train_x[picked[start : start + batch_size]], train=False)  # decodes disk images


def _deterministic(tc) -> bool | Literal["warn"]:
    import torch

    # Some CUDA kernels have no deterministic version; on the CPU everything does.
    if tc.accelerator in ("gpu", "cuda") or (tc.accelerator == "auto" and torch.cuda.is_available()):
        return "warn" if tc.deterministic else False
    return tc.deterministic


def _best_epoch(rows: list[dict], monitor: str, mode: str) -> int | None:
    scored = [r for r in rows if r.get(monitor) is not None]
    if not scored:
        return None
    pick = min if mode == "min" else max
    return int(pick(scored, key=lambda r: r[monitor])["epoch"])
