"""Autoencoders (AE, VAE, DAE): reconstruction training, then the test reconstructions, the latent
space (PCA / t-SNE maps, how well it separates the classes), new samples (`generate`) and the
encoder re-used for classification (model.name: encoder)."""

from __future__ import annotations

from pathlib import Path

from adlab.config import Config
from adlab.formatting import figure_text
from adlab.tasks.base import ReportSpec, Task
from adlab.tasks.lightning import LightningTask


class Autoencode(LightningTask):
    name = "autoencode"
    val_columns = ["val_mse", "val_kl"]
    report = ReportSpec(
        "Autoencoders",
        [
            ("test_mse", "min"),
            ("test_bce", "min"),
            ("latent_knn_accuracy", "max"),
            ("latent_linear_accuracy", "max"),
            ("test_mse_corrupted", "min"),
            ("train_seconds", "min"),
            ("scored_epoch", None),
        ],
        ["reconstructions.png", "latent_tsne.png", "samples.png"],
        "val_mse",
        paired=(("test_mse", "mse"), ("latent_linear_accuracy", "correct")),
        summary_keys=("test_mse", "latent_linear_accuracy"),
    )

    def input_requirements(self, config: Config) -> tuple[int | None, tuple | None]:
        return None, ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])  # reconstructions compare images in [0, 1]

    def evaluation_images(self, config: Config, counts: dict[str, int]) -> int:
        return 2 * counts["test"] + counts["train"]  # reconstructed and encoded; the training codes for the probes

    def outputs_seconds(self, config: Config, counts: dict[str, int]) -> float:
        from adlab.settings.autoencoder import AutoencoderConfig
        from adlab.tasks.output_costs import figure_seconds, probe_seconds, tsne_seconds

        settings = config.model.family(AutoencoderConfig)
        dim = settings.latent_dim
        # loss curves, reconstructions, PCA and t-SNE maps, samples, interpolations; a 2-D code's manifold
        figures = 6 + (dim == 2)
        return (
            figures * figure_seconds()
            + tsne_seconds(min(settings.tsne_points, counts["test"]), dim)
            + probe_seconds(counts["train"], counts["test"], dim)
        )

    def timed_network(self, built, config: Config):
        from adlab.tasks.autoencode.module import TrainingLoss

        return TrainingLoss(self.module(built, config, {}))

    def build(self, config: Config, info):
        from adlab.models.factory import BuiltModel, build_autoencoder

        return BuiltModel(build_autoencoder(config.model, info.input_shape), head="", load_report=None)

    def module(self, built, config: Config, meta: dict):
        from adlab.tasks.autoencode.module import AutoencodeModule

        return AutoencodeModule(built.net, config.model, config.train, meta)

    def evaluate(self, run_dir: Path, built, data, config: Config, extra: dict, history: list[dict]) -> dict:
        from adlab.tasks.autoencode.outputs import write_autoencoder_result
        from adlab.tasks.curves import loss_curves

        loss_curves(
            history,
            run_dir / "figures" / "loss_curves.png",
            figure_text(config.name or config.model.name),
            scores=[("val_mse", "MSE per pixel")],
            score_label="validation MSE",
            loss_label="loss (per image)",
        )
        return write_autoencoder_result(run_dir, built.net, config.model, data, extra, config.train.seed)

    def summary(self, metrics: dict) -> str:
        keys = (
            "test_mse",
            "test_bce",
            "test_kl",
            "test_mse_corrupted",
            "latent_knn_accuracy",
            "latent_linear_accuracy",
        )
        return "  ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics)


TASK: Task = Autoencode()  # mypy checks the task against the Task protocol
