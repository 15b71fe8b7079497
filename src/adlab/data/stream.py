"""Folder data sets that do not fit in memory: indexed at once, decoded a batch at a time from disk.

`DiskImages` stands in for the uint8 image tensor [N, C, H, W] of an in-memory data set, so the
splits, loaders, evaluation and figures work unchanged: `len`, `shape`, `size`, `dtype`,
`subset(indices)` (a lazy selection, nothing decoded) and `images[indices]` (decodes just those
files). Memory stays bounded by the batch size, whatever the number of files.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from adlab.data.images import is_grey, read_image, unreadable
from adlab.errors import DataError


class DiskImages:
    dtype = torch.uint8

    def __init__(self, paths, channels: int, hw: tuple[int, int], resize: bool):
        self.paths = np.asarray(paths, dtype=object)
        self.channels = channels
        self.hw = (int(hw[0]), int(hw[1]))
        self.resize = resize  # data.image_size set: every image is resized; else all must be hw

    @classmethod
    def open(cls, paths: list[str], image_size: int | None) -> DiskImages:
        """Channels (and size, without image_size) from the first image; the rest are checked as read."""
        from PIL import Image

        try:
            with Image.open(paths[0]) as img:
                grey = is_grey(img)
                width, height = img.size
        except Exception as exc:  # PIL raises more than OSError for bad files (folder.unreadable)
            raise DataError(unreadable(paths[0], exc)) from None
        hw = (image_size, image_size) if image_size is not None else (height, width)
        return cls(paths, 1 if grey else 3, hw, resize=image_size is not None)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> torch.Size:
        return torch.Size([len(self), self.channels, *self.hw])

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def subset(self, indices) -> DiskImages:
        return DiskImages(self.paths[_as_index(indices)], self.channels, self.hw, self.resize)

    def __getitem__(self, indices) -> torch.Tensor:
        chosen = self.paths[_as_index(indices)]
        chosen = [chosen] if isinstance(chosen, str) else list(chosen)
        with ThreadPoolExecutor(min(4, max(1, len(chosen)))) as pool:  # PIL decodes outside the GIL
            arrays = list(pool.map(self._decode, chosen))
        batch = torch.from_numpy(np.stack(arrays)) if arrays else torch.empty(0, *self.hw, dtype=torch.uint8)
        batch = batch.unsqueeze(1) if self.channels == 1 else batch.permute(0, 3, 1, 2)
        return batch.contiguous() if not isinstance(indices, int) else batch[0]

    def _decode(self, path: str) -> np.ndarray:
        try:
            array = read_image(path, self.channels, self.hw if self.resize else None)
        except Exception as exc:  # PIL raises more than OSError for bad files (folder.unreadable)
            raise DataError(
                f"{unreadable(path, exc)}; fix or remove the file (a run stopped by it "
                "continues with adlab train --resume RUN)"
            ) from None
        if array.shape[:2] != self.hw:
            raise DataError(
                f"{path}: image is {array.shape[1]}x{array.shape[0]} but the data set's first "
                f"image is {self.hw[1]}x{self.hw[0]}; set data.image_size"
            )
        return array


def _as_index(indices):
    if isinstance(indices, torch.Tensor):
        return indices.numpy()
    return indices


def take(images, indices):
    """images[indices] for tensors; a lazy subset for images on disk (nothing is decoded)."""
    return images.subset(indices) if isinstance(images, DiskImages) else images[indices]


def to_rgb(images):
    """Grey images as three equal channels (a lazy change for images on disk)."""
    if isinstance(images, DiskImages):
        return DiskImages(images.paths, 3, images.hw, images.resize)
    return images.expand(-1, 3, -1, -1).contiguous()
