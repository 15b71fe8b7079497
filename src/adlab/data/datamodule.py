"""The classification data pipeline as a LightningDataModule over in-memory tensors (or, for
folder data sets too big for memory, images streamed from disk a batch at a time)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from adlab.classes import resolve_classes
from adlab.config import DataConfig
from adlab.data.sources import load_source
from adlab.data.splits import cap_per_class, kfold_split, relabel, stratified_split
from adlab.data.stream import DiskImages, take
from adlab.data.transforms import BatchTransform, channel_stats
from adlab.errors import DataError


@dataclass
class DataInfo:
    """What a trained model needs to know about its inputs (stored in every checkpoint)."""

    class_names: list[str]
    native_channels: int
    native_size: list[int]
    channels: int
    image_size: int | None
    mean: list[float]
    std: list[float]
    description: str = ""
    counts: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        h, w = (self.image_size, self.image_size) if self.image_size else self.native_size
        return (self.channels, h, w)

    def to_dict(self) -> dict:
        return asdict(self)


class ImageDataModule(L.LightningDataModule):
    """Loads a data set once, splits it (seeded), and serves batches straight from tensors.

    `channels` and `normalization` may be imposed by the model's weights (ImageNet statistics,
    or those of the checkpoint being fine-tuned); otherwise they come from the data.
    """

    def __init__(
        self,
        cfg: DataConfig,
        batch_size: int,
        channels: int | None = None,
        normalization: tuple[list[float], list[float]] | None = None,
        eval_batch_size: int = 1024,
        channels_last: bool = False,
    ):
        super().__init__()
        self.cfg = cfg
        self.batch_size = batch_size
        self.eval_batch_size = max(eval_batch_size, batch_size)
        self.forced_channels = channels
        self.forced_normalization = normalization
        self.channels_last = channels_last
        self.info: DataInfo | None = None

    def prepare(self) -> DataInfo:
        """Load and split everything now, so bad data fails before any output is written."""
        if self.info is not None:
            return self.info
        cfg = self.cfg
        src = load_source(
            cfg.name,
            cfg.root,
            cfg.image_size,
            cfg.download,
            cfg.on_corrupt,
            cfg.storage,
            cfg.memory_budget_gb,
            verify=cfg.verify,
        )
        names = mapped_names(src.class_names, cfg.class_map, src.description)
        train_x, train_y, test_x, test_y = src.train_x, src.train_y, src.test_x, src.test_y
        if len(train_x) == 0:
            raise DataError(f"{src.description}: no training images")
        if cfg.classes is not None:
            ids = resolve_classes(cfg.classes, names, "data.classes")
            keep, train_y = relabel(train_y, ids)
            train_x = take(train_x, keep)
            if test_x is not None:
                assert test_y is not None  # a source gives test images and labels together
                keep, test_y = relabel(test_y, ids)
                test_x = take(test_x, keep)
            names = [names[i] for i in ids]
        if len(names) < 2:
            where = "data.classes" if cfg.classes is not None else src.description
            raise DataError(f"{where}: {len(names)} class(es) left; classification needs at least 2")
        if test_x is None:
            rest, test = stratified_split(train_y, cfg.test_fraction, cfg.split_seed)
            test_x, test_y = take(train_x, test), train_y[test]
            train_x, train_y = take(train_x, rest), train_y[rest]
        assert test_y is not None  # a source gives test images and labels together
        if cfg.cv_folds:
            rest, val = kfold_split(train_y, cfg.cv_folds, cfg.cv_fold, cfg.split_seed + 1)
        else:
            rest, val = stratified_split(train_y, cfg.val_fraction, cfg.split_seed + 1)
        val_x, val_y = take(train_x, val), train_y[val]
        train_x, train_y = take(train_x, rest), train_y[rest]
        if cfg.train_per_class is not None:
            keep = cap_per_class(train_y, cfg.train_per_class, cfg.split_seed + 2)
            train_x, train_y = take(train_x, keep), train_y[keep]
        if len(test_x) == 0:
            raise DataError(f"{src.description}: the test split is empty")

        native_channels = int(train_x.shape[1])
        channels, mean, std = self.input_statistics(train_x)

        self.train_x, self.train_y = train_x, train_y
        self.val_x, self.val_y = val_x, val_y
        self.test_x, self.test_y = test_x, test_y
        aug = cfg.augment
        self.transform = BatchTransform(
            channels,
            cfg.image_size,
            mean,
            std,
            crop_padding=aug.crop_padding,
            flip=aug.flip,
            augment=aug.enabled,
            cutout=aug.cutout,
        )
        self.info = DataInfo(
            class_names=list(names),
            native_channels=native_channels,
            native_size=list(train_x.shape[2:]),
            channels=channels,
            image_size=cfg.image_size,
            mean=mean,
            std=std,
            description=src.description,
            counts={"train": len(train_y), "val": len(val_y), "test": len(test_y)},
        )
        return self.info

    def input_statistics(self, train_x) -> tuple[int, list[float], list[float]]:
        """The network's input channels, and the per-channel mean and std it is normalised with: imposed by the
        weights, else measured on the training split (data.normalize), else none."""
        native_channels = int(train_x.shape[1])
        channels = self.cfg.channels or self.forced_channels or native_channels
        if self.forced_normalization is not None:
            mean, std = self.forced_normalization
        elif self.cfg.normalize:
            mean, std = channel_stats(train_x)
        else:
            mean, std = [0.0] * native_channels, [1.0] * native_channels
        return channels, match_channels(mean, channels), match_channels(std, channels)

    @property
    def num_classes(self) -> int:
        return len(self.prepare().class_names)

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def train_dataloader(self) -> DataLoader:
        return tensor_loader(self.train_x, self.train_y, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return tensor_loader(self.val_x, self.val_y, self.eval_batch_size) if len(self.val_y) else []

    def test_dataloader(self) -> DataLoader:
        return tensor_loader(self.test_x, self.test_y, self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y = batch
        if self.transform.mean.device != x.device:
            self.transform.to(x.device)
        training = self.trainer is not None and self.trainer.training
        x = self.transform(x, train=training)
        return (x.contiguous(memory_format=torch.channels_last) if self.channels_last else x), y


def mapped_names(names: list[str], class_map: dict[str, str] | None, where: str) -> list[str]:
    """The class names with data.class_map applied (a folder's name -> the class it holds)."""
    if not class_map:
        return list(names)
    unknown = [key for key in class_map if key not in names]
    if unknown:
        raise DataError(f"data.class_map: {unknown[0]!r} is not a class of {where} (its classes: {', '.join(names)})")
    renamed = [class_map.get(name, name) for name in names]
    twice = sorted({name for name in renamed if renamed.count(name) > 1})
    if twice:
        raise DataError(f"data.class_map: two classes of {where} would both be called {twice[0]!r}")
    return renamed


class InMemoryDataset(TensorDataset):
    """A TensorDataset that serves a whole batch with one gather (DataLoader's `__getitems__` hook)."""

    def __getitems__(self, indices: list[int]):
        index = torch.as_tensor(indices)
        return tuple(t[index] for t in self.tensors)


def _already_batched(batch):
    return batch


def tensor_loader(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False) -> DataLoader:
    """Batches by fancy indexing of in-memory tensors: no per-sample work, no worker processes.

    A plain DataLoader otherwise, so Lightning can still swap in a DistributedSampler for DDP.
    """
    dataset = InMemoryDataset(x, y)
    # A last batch of one image breaks batch norm in training; drop it only then.
    drop_last = shuffle and len(dataset) % batch_size == 1 and len(dataset) > 1
    # Images streamed from disk are decoded by worker processes while the model trains (started
    # afresh each epoch, so the random streams, and a resumed run, match an in-memory run).
    workers = min(2, os.cpu_count() or 1) if isinstance(x, DiskImages) else 0
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        collate_fn=_already_batched,
        num_workers=workers,
    )


def match_channels(values: list[float], channels: int) -> list[float]:
    if len(values) == channels:
        return list(values)
    if len(values) == 1:
        return list(values) * channels
    return [sum(values) / len(values)] * channels
