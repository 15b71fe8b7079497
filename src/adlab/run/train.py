"""`train(config) -> Run`: one classification run from config to finished run directory."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch

from adlab import io, ownership
from adlab.config import Config, load_config
from adlab.data.datamodule import ImageDataModule
from adlab.errors import AdlabError, CheckpointError, ConfigError, Interrupted
from adlab.models.checkpoints import load_untrusted, read_checkpoint
from adlab.models.factory import resolve_encoder_architecture, weights_input
from adlab.models.whiten import whiten_first_conv
from adlab.run.recipes import recipe_for
from adlab.run.resume import (AtomicCheckpointIO, RandomState, check_config_unchanged, last_checkpoint,
                              remove_partial_files)
from adlab.run.rundir import (EpochPrinter, HistoryWriter, Run, check_run_dir, default_run_dir, environment,
                              prepare_run_dir)


def prepare_process() -> None:
    """Quiet logs and warnings that do not apply to adlab; CPU speed settings."""
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


def resume(run: str | Path, verbose: bool = True) -> Run:
    """Continue an interrupted run from checkpoints/last.ckpt (detection: ultralytics' last.pt), or
    from the start if it never finished an epoch; a finished run is left as it is."""
    run_dir = Path(run)
    if ownership.marker_kind(run_dir) != "run" or not (run_dir / "config.yaml").is_file():
        raise AdlabError(f"{run_dir}: not an adlab run folder (no run marker {ownership.MARKER} or no config.yaml)")
    config = load_config(run_dir / "config.yaml")
    check_config_unchanged(run_dir, config.to_dict())
    if (run_dir / "metrics.json").is_file():
        if verbose:
            print(f"{run_dir}: already finished (metrics.json exists); nothing to resume")
        return Run(run_dir, config, json.loads((run_dir / "metrics.json").read_text()))
    return train(config, out=run_dir, verbose=verbose, resume=True)


def resumable(run_dir: Path, config: Config) -> bool:
    """Whether run_dir is an unfinished run of exactly this config with a checkpoint to continue from."""
    run_dir = Path(run_dir)
    if (run_dir / "metrics.json").is_file() or ownership.marker_kind(run_dir) != "run":
        return False
    if config.task == "detect":
        from adlab.detection.train import interrupted_checkpoint

        if interrupted_checkpoint(run_dir) is None:
            return False
    elif last_checkpoint(run_dir) is None:
        return False
    try:
        saved = load_config(run_dir / "config.yaml")
    except AdlabError:
        return False
    resolved = config.model_copy(update={"model": resolve_encoder_architecture(config.model)})
    return saved.to_dict() == resolved.to_dict()


def train(config: Config | dict | str | Path, out: str | Path | None = None, overwrite: bool = False,
          overrides: list[str] | None = None, verbose: bool = True, callbacks: list | None = None,
          resume: bool = False) -> Run:
    """Train and evaluate one model (any task); everything is validated before any file is written.
    `resume`: `out` is an interrupted run of this config; continue from its last checkpoint."""
    source = str(config) if isinstance(config, (str, Path)) else None
    if not isinstance(config, Config):
        config = load_config(config, overrides)
    elif overrides:
        config = load_config(config.to_dict(), overrides)
    if config.task == "detect":
        from adlab.detection.train import train_detector

        return train_detector(config, out, overwrite, source, verbose, resume)
    say = print if verbose else (lambda *a, **k: None)
    prepare_process()
    recipe = recipe_for(config)
    config = config.model_copy(update={"model": resolve_encoder_architecture(config.model)})
    tc = config.train
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    L.seed_everything(tc.seed, workers=True, verbose=False)
    worker = _launched_worker()  # a DDP process started by Lightning: the folder is rank 0's
    run_dir = Path(os.environ[RUN_DIR_ENV]) if worker and RUN_DIR_ENV in os.environ else (
        Path(out) if out else default_run_dir(config, source))
    if not worker and not resume:
        check_run_dir(run_dir, overwrite)  # first: loading a large data set to be refused after is no help

    # 1. data and model: every bad input fails here, before the run folder exists
    channels, normalization = input_requirements(config)
    data = ImageDataModule(config.data, tc.batch_size, channels=channels, normalization=normalization,
                           channels_last=tc.channels_last)
    info = data.prepare()
    if tc.early_stopping_patience and not info.counts["val"]:
        raise ConfigError("train.early_stopping_patience needs a validation split (data.val_fraction > 0)")
    L.seed_everything(tc.seed, workers=True, verbose=False)  # same init whatever the data loading consumed
    built = recipe.build(config, info)
    say(f"data: {info.description}; classes {len(info.class_names)}; "
        f"train {info.counts['train']}, val {info.counts['val']}, test {info.counts['test']}; "
        f"input {'x'.join(map(str, info.input_shape))}")
    if built.load_report is not None:
        say(built.load_report.summary())
    trainable = sum(p.numel() for p in built.net.parameters() if p.requires_grad)
    total = sum(p.numel() for p in built.net.parameters())
    say(f"model: {config.model.name}, {total:,} parameters, {trainable:,} trainable")

    # 2. the task and its trainer (Lightning validates devices/strategy/precision here)
    restart_from = last_checkpoint(run_dir) if resume else None
    if restart_from is not None:
        load_untrusted(restart_from)  # weights_only, and one clear line if it is damaged or not ours
    if config.model.whiten and restart_from is None:  # a resumed run takes its filters from the checkpoint
        whiten_first_conv(built.net, whitening_batches(data))
    meta = {"config": config.to_dict(), "data": info.to_dict(), "head": built.head, "task": config.task}
    module = recipe.module(built, config, meta)
    has_val = info.counts["val"] > 0
    history = HistoryWriter(run_dir / "history.csv", recipe.val_columns)
    mode = recipe.monitors[tc.monitor]
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="best", monitor=tc.monitor if has_val else None, mode=mode,
        save_last=True, save_top_k=1, enable_version_counter=False)
    callbacks = [history, checkpoint, RandomState(), *(callbacks or [])]
    show_bar = tc.progress_bar and verbose and sys.stdout.isatty()
    if verbose and not show_bar:
        callbacks.append(EpochPrinter(["train_loss", "val_loss", *recipe.val_columns[:1]]))
    if tc.early_stopping_patience:
        callbacks.append(L.pytorch.callbacks.EarlyStopping(tc.monitor, patience=tc.early_stopping_patience, mode=mode))
    trainer = make_trainer(tc, callbacks, show_bar, run_dir, has_val)

    # 3. the run folder, then training
    if trainer.is_global_zero and restart_from is not None:
        remove_partial_files(run_dir)
        say(f"resuming from {restart_from}")
    elif trainer.is_global_zero:
        prepare_run_dir(run_dir, overwrite or resume, config=config.to_dict())
        io.write_yaml(run_dir / "config.yaml", config.to_dict())
        env = environment(tc.seed, {"data": info.description, "counts": info.counts,
                                    "weights": built.load_report.to_dict() if built.load_report else config.model.weights})
        io.write_json(run_dir / "env.json", env)
    started = time.perf_counter()
    os.environ[RUN_DIR_ENV] = str(run_dir)  # DDP processes launched by fit() write to this same folder
    try:
        trainer.fit(module, datamodule=data, ckpt_path=restart_from, weights_only=True)
    except SystemExit as exc:  # Lightning's graceful stop on Ctrl-C (exit 1) or SIGTERM
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        sigterm = isinstance(exc, SIGTERMException)
        raise Interrupted(f"{'SIGTERM' if sigterm else 'interrupted'} after {len(history.rows)} of {tc.epochs} "
                          f"epochs; continue with: adlab train --resume {run_dir}", 143 if sigterm else 130) from None
    except (RuntimeError, KeyError, ValueError) as exc:
        if restart_from is None or "state_dict" not in str(exc) and not isinstance(exc, KeyError):
            raise
        raise CheckpointError(f"{restart_from}: does not fit the run's config.yaml (was it edited?): "
                              f"{str(exc).strip().splitlines()[0]}") from None
    finally:
        os.environ.pop(RUN_DIR_ENV, None)
    train_seconds = time.perf_counter() - started
    if not trainer.is_global_zero:
        return Run(run_dir, config, {})

    # 4. test evaluation with the best checkpoint (the last one without a validation split)
    best = run_dir / "checkpoints" / "best.ckpt"
    if not has_val or not checkpoint.best_model_path:  # keep the contract: best.ckpt always exists
        with io.atomic_path(best) as tmp:
            shutil.copyfile(run_dir / "checkpoints" / "last.ckpt", tmp)
    state, _ = read_checkpoint(best)
    built.net.load_state_dict(state)
    extra = {
        "train_seconds": round(train_seconds, 2),
        "epochs_trained": trainer.current_epoch,
        "best_epoch": _best_epoch(history.rows, tc.monitor, mode) if has_val else trainer.current_epoch,
        "num_train": info.counts["train"], "num_val": info.counts["val"],
        "trainable_parameters": trainable, "parameters": total,
    }
    metrics = recipe.evaluate(run_dir, built, data, config, extra, history.rows)
    say(f"test: {recipe.summary(metrics)}  ({train_seconds:.1f} s training)")
    say(f"run: {run_dir}")
    return Run(run_dir, config, metrics)


RUN_DIR_ENV = "ADLAB_RUN_DIR"


def _launched_worker() -> bool:
    """True in a non-zero-rank process (Lightning's DDP launcher, torchrun, SLURM)."""
    return any(int(os.environ.get(var, "0") or 0) != 0
               for var in ("LOCAL_RANK", "RANK", "NODE_RANK", "SLURM_PROCID"))


def make_trainer(tc, callbacks, show_bar: bool, run_dir: Path, has_val: bool) -> L.Trainer:
    """Lightning's Trainer from train.* settings; its own complaints become config errors."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return L.Trainer(
            max_epochs=tc.epochs, accelerator=tc.accelerator, devices=tc.devices, strategy=tc.strategy,
            num_nodes=tc.num_nodes,
            precision=tc.precision, deterministic=_deterministic(tc), logger=False, callbacks=callbacks,
            enable_progress_bar=show_bar, enable_model_summary=False, default_root_dir=run_dir,
            num_sanity_val_steps=0, log_every_n_steps=1, limit_val_batches=None if has_val else 0,
            plugins=[AtomicCheckpointIO()])
    except (MisconfigurationException, ValueError, RuntimeError, TypeError, ImportError) as exc:
        raise ConfigError(f"train.accelerator/devices/strategy/precision: {str(exc).strip().splitlines()[0]}") from None


def whitening_batches(data: ImageDataModule, images: int = 10_000, batch_size: int = 100):
    """Up to `images` training images spread evenly over the training split (folder data sets
    list their images class by class), normalised as the model sees them (no augmentation)."""
    n = len(data.train_y)
    picked = torch.linspace(0, n - 1, min(n, images)).long()
    for start in range(0, len(picked), batch_size):
        yield data.transform(data.train_x[picked[start:start + batch_size]], train=False)  # decodes disk images


def input_requirements(config: Config) -> tuple[int | None, tuple | None]:
    """Channels and normalisation the task or the weights impose (None: take them from the data)."""
    if config.task == "autoencode":
        return None, ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])  # reconstructions compare images in [0, 1]
    return weights_input(config.model)


def _deterministic(tc) -> bool | str:
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
