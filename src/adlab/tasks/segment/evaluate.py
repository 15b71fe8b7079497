"""`adlab evaluate` and `adlab predict` for a segmentation run: its scores on other images with masks, and the masks
it predicts for image files (index PNGs, one class id per pixel)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from adlab import io, ownership
from adlab.data.images import read_image, unreadable
from adlab.errors import DataError
from adlab.image_formats import check_image_file
from adlab.tasks.lightning.loading import evaluation_config, evaluation_folder, write_evaluation_record
from adlab.tasks.segment.data import SegmentDataModule
from adlab.tasks.segment.loading import load_segmenter
from adlab.tasks.segment.outputs import predict_masks, summary_line, write_segmentation_result


def evaluate(
    run: str | Path,
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    verbose: bool = True,
    overwrite: bool = False,
) -> dict:
    """Scores on the run's own test split, or on other data (`--set data.root=...`) with the same classes; writes
    to `out` (default RUN/evaluation): a new folder, or an earlier evaluation with `overwrite`."""
    trained = load_segmenter(run)
    config = evaluation_config(trained.config, overrides)
    info = trained.info
    data = SegmentDataModule(config.data, 8, channels=info.channels, normalization=(info.mean, info.std))
    new_info = data.prepare()
    if new_info.class_names != info.class_names:
        raise DataError(
            f"evaluation data has classes {new_info.class_names} but the model was trained on {info.class_names}"
        )
    out_dir = evaluation_folder(run, trained.checkpoint, out, overwrite)
    pred = predict_masks(trained.net, data.transform, data.test_x)
    ownership.prepare_output(out_dir, "evaluation", overwrite)
    write_evaluation_record(out_dir, trained.checkpoint, config.data, new_info.description)
    metrics = write_segmentation_result(
        out_dir, pred, data.test_y, data.test_x, info.class_names, {"checkpoint": str(trained.checkpoint)}, "evaluation"
    )
    if verbose:
        print(f"test ({new_info.description}): {summary_line(metrics)}")
        print(f"evaluation: {out_dir}")
    return metrics


def predict(run: str | Path, images: list[str | Path], out: str | Path, overwrite: bool = False) -> list[tuple]:
    """Each image's predicted mask written to OUT/<stem>.png (mode L: the class ids of classes.yaml's order, as the
    run's data had them); returns (image, mask file, {class: share of the image's pixels})."""
    for path in images:  # before anything is opened: a FIFO named x.png would block for ever
        check_image_file(path)
    stems = [Path(p).stem for p in images]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise DataError(f"{twice[0]}: two images have this name; their masks would be one file")
    trained = load_segmenter(run)
    info = trained.info
    batch = torch.stack([_read(Path(p), info.native_channels, info.native_size) for p in images])
    out_dir = ownership.canonical(out)
    ownership.check_output(out_dir, "predictions", overwrite)
    pred = predict_masks(trained.net, trained.transform(), batch)
    ownership.prepare_output(out_dir, "predictions", overwrite)
    results = []
    for path, stem, mask in zip(images, stems, pred, strict=True):
        target = out_dir / f"{stem}.png"
        with Image.open(path) as img:
            size = img.size  # the mask at the image's own size (nearest: class ids are never blended)
        picture = Image.fromarray(mask.numpy(), mode="L").resize(size, Image.Resampling.NEAREST)
        with io.atomic_path(target) as tmp:
            picture.save(tmp, format="PNG")
        counts = np.bincount(mask.flatten().numpy(), minlength=len(info.class_names)) / mask.numel()
        results.append((str(path), str(target), dict(zip(info.class_names, counts.tolist(), strict=True))))
    return results


def _read(path: Path, channels: int, size: list[int]) -> torch.Tensor:
    """An image as the training data looked: its channels and size (the data's size after data.image_size), uint8."""
    try:
        arr = read_image(path, channels, (size[0], size[1]))
    except FileNotFoundError:
        raise DataError(f"{path}: image not found") from None
    except Exception as exc:  # not an image, corrupt, or a decompression bomb
        raise DataError(unreadable(path, exc)) from None
    tensor = torch.from_numpy(arr.copy())
    return tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1)
