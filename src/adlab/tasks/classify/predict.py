"""`predict(run, images)`: class probabilities for image files."""

from __future__ import annotations

from pathlib import Path

import torch

from adlab.errors import DataError
from adlab.image_formats import check_image_file
from adlab.tasks.classify.loading import load_trained
from adlab.tasks.classify.outputs import predict_probs, tta_settings


def predict(run: str | Path, images: list[str | Path], top: int = 3) -> list[tuple[str, list[tuple[str, float]]]]:
    """For each image: the `top` most likely classes with their probabilities."""
    for path in images:  # before anything is opened: a FIFO named x.png would block for ever
        check_image_file(path)
    trained = load_trained(run)
    info = trained.info
    batch = torch.stack([_read_like_training(Path(p), info.native_channels, info.native_size) for p in images])
    probs = predict_probs(trained.net, trained.transform(), batch, **tta_settings(trained.config.train))
    top = max(1, min(top, len(info.class_names)))
    values, indices = probs.topk(top, dim=1)
    return [
        (str(path), [(info.class_names[i], float(v)) for v, i in zip(vals.tolist(), idx.tolist(), strict=True)])
        for path, vals, idx in zip(images, values, indices, strict=True)
    ]


def _read_like_training(path: Path, channels: int, size: list[int]) -> torch.Tensor:
    """An image as the training data looked: same channel count and native size, uint8."""
    from adlab.data.images import read_image, unreadable

    try:
        arr = read_image(path, channels, (size[0], size[1]))
    except FileNotFoundError:
        raise DataError(f"{path}: image not found") from None
    except Exception as exc:  # not an image, corrupt, or a decompression bomb (folder.unreadable)
        raise DataError(unreadable(path, exc)) from None
    tensor = torch.from_numpy(arr.copy())
    return tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1)
