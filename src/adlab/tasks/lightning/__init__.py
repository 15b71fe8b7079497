"""What differs between tasks, behind one small interface that `train()` drives.

A recipe builds the network and its LightningModule, names the validation columns of
history.csv, and writes the task's results after training (metrics.json last).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L

from adlab.config import Config
from adlab.data.datamodule import DataInfo, ImageDataModule
from adlab.errors import ConfigError
from adlab.models.factory import BuiltModel, build_autoencoder, build_model


class ClassifyRecipe:
    val_columns = ["val_accuracy", "val_mean_class_accuracy"]
    monitors = {"val_loss": "min", "val_accuracy": "max"}

    def build(self, config: Config, info: DataInfo) -> BuiltModel:
        return build_model(config.model, info.input_shape, len(info.class_names))

    def module(self, built: BuiltModel, config: Config, meta: dict) -> L.LightningModule:
        from adlab.tasks.classify import ClassifyTask

        return ClassifyTask(built.net, len(meta["data"]["class_names"]), config.train, meta)

    def evaluate(self, run_dir: Path, built: BuiltModel, data: ImageDataModule, config: Config, extra: dict,
                 history: list[dict]) -> dict:
        from adlab.run.outputs import predict_probs, tta_settings, write_classification_result

        probs = predict_probs(built.net, data.transform, data.test_x, **tta_settings(config.train))
        return write_classification_result(run_dir, probs, data.test_y, data.test_x, data.info.class_names, extra,
                                           history, config.name or "")

    def summary(self, metrics: dict) -> str:
        from adlab.run.outputs import summary_line

        return summary_line(metrics)


class AutoencodeRecipe:
    val_columns = ["val_mse", "val_kl"]
    monitors = {"val_loss": "min", "val_mse": "min"}

    def build(self, config: Config, info: DataInfo) -> BuiltModel:
        net = build_autoencoder(config.model, info.input_shape)
        return BuiltModel(net, head="", load_report=None)

    def module(self, built: BuiltModel, config: Config, meta: dict) -> L.LightningModule:
        from adlab.tasks.autoencode import AutoencodeTask

        return AutoencodeTask(built.net, config.model, config.train, meta)

    def evaluate(self, run_dir: Path, built: BuiltModel, data: ImageDataModule, config: Config, extra: dict,
                 history: list[dict]) -> dict:
        from adlab import figures
        from adlab.run.autoencode import write_autoencoder_result

        figures.loss_curves(history, run_dir / "figures" / "loss_curves.png", config.name or config.model.name,
                            scores=[("val_mse", "MSE per pixel")], score_label="validation MSE",
                            loss_label="loss (per image)")
        return write_autoencoder_result(run_dir, built.net, config.model, data, extra, config.train.seed)

    def summary(self, metrics: dict) -> str:
        keys = ("test_mse", "test_bce", "test_kl", "test_mse_corrupted", "latent_knn_accuracy",
                "latent_linear_accuracy")
        return "  ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics)


RECIPES = {"classify": ClassifyRecipe(), "autoencode": AutoencodeRecipe()}


def recipe_for(config: Config):
    recipe = RECIPES[config.task]
    if config.train.monitor not in recipe.monitors:
        raise ConfigError(f"train.monitor: {config.train.monitor!r} is not measured by task {config.task} "
                          f"(valid: {', '.join(recipe.monitors)})")
    return recipe
