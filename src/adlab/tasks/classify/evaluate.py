"""`evaluate(run)`: score a trained run on its own test set, or on other data of the same classes."""

from __future__ import annotations

from pathlib import Path

import torch

from adlab import ownership
from adlab.data.datamodule import ImageDataModule
from adlab.errors import DataError
from adlab.tasks.classify.loading import load_trained
from adlab.tasks.classify.outputs import predict_probs, summary_line, tta_settings, write_classification_result
from adlab.tasks.lightning.loading import evaluation_config, evaluation_folder, write_evaluation_record


def evaluate(
    run: str | Path,
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    verbose: bool = True,
    overwrite: bool = False,
) -> dict:
    """Writes to `out` (default RUN/evaluation): a new folder, or an earlier evaluation with `overwrite`."""
    trained = load_trained(run)
    config = evaluation_config(trained.config, overrides)
    info = trained.info
    data = ImageDataModule(
        config.data, config.train.batch_size, channels=info.channels, normalization=(info.mean, info.std)
    )
    new_info = data.prepare()
    unknown = [name for name in new_info.class_names if name not in info.class_names]
    if unknown:
        raise DataError(
            f"evaluation data has classes {new_info.class_names} but the model was trained on {info.class_names} "
            f"({unknown[0]!r} is not one of them; data.class_map renames a folder's class)"
        )
    if new_info.class_names != info.class_names:  # the same classes in another order, or some of them: by name
        lookup = torch.tensor([info.class_names.index(name) for name in new_info.class_names])
        data.test_y = lookup[data.test_y]
    if new_info.input_shape != info.input_shape:
        raise DataError(
            f"evaluation images are {'x'.join(map(str, new_info.input_shape))} but the model takes "
            f"{'x'.join(map(str, info.input_shape))}; set data.image_size"
        )
    out_dir = evaluation_folder(run, trained.checkpoint, out, overwrite)
    probs = predict_probs(trained.net, data.transform, data.test_x, **tta_settings(config.train))
    ownership.prepare_output(out_dir, "evaluation", overwrite)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    write_evaluation_record(out_dir, trained.checkpoint, config.data, new_info.description)
    metrics = write_classification_result(
        out_dir, probs, data.test_y, data.test_x, info.class_names, {"checkpoint": str(trained.checkpoint)}
    )
    if verbose:
        print(f"test ({new_info.description}): {summary_line(metrics)}")
        print(f"evaluation: {out_dir}")
    return metrics
