"""Images with masks in memory as uint8 tensors, split (seeded) and served a batch at a time; training batches get
the same random crop and flip on an image and its mask (torchvision.transforms.v2 with tv_tensors.Mask)."""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from adlab.data.datamodule import DataInfo, ImageDataModule
from adlab.data.masks import load_masks
from adlab.data.transforms import BatchTransform
from adlab.errors import DataError


def random_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (kept, carved): a seeded random `fraction` of n images (masks have no one label to stratify by)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    carved = int(round(n * fraction)) if fraction > 0 else 0
    if fraction > 0 and n >= 2:
        carved = min(max(carved, 1), n - 1)
    return order[carved:].sort().values, order[:carved].sort().values


def kfold(n: int, folds: int, fold: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if n < folds:
        raise DataError(f"data.cv_folds: cannot make {folds} folds of {n} images")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val = order[fold::folds]
    rest = torch.cat([order[f::folds] for f in range(folds) if f != fold])
    return rest.sort().values, val.sort().values


class JointAugment:
    """The same random crop (reflect padding, then the image's own size) and horizontal flip on each image and
    its mask, drawn per image: torchvision's v2 transforms move a tv_tensors.Mask with its Image."""

    def __init__(self, crop_padding: int, flip: bool):
        self.crop_padding = crop_padding
        self.flip = flip

    def __call__(self, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = x.shape[-2:]
        ops: list = []
        if self.crop_padding:
            pad = min(self.crop_padding, h - 1, w - 1)
            ops.append(v2.RandomCrop((h, w), padding=pad, padding_mode="reflect"))
        if self.flip:
            ops.append(v2.RandomHorizontalFlip())
        if not ops:
            return x, m
        compose = v2.Compose(ops)
        pairs = [compose(tv_tensors.Image(image), tv_tensors.Mask(mask)) for image, mask in zip(x, m, strict=True)]
        return torch.stack([p[0] for p in pairs]).as_subclass(torch.Tensor), torch.stack(
            [p[1] for p in pairs]
        ).as_subclass(torch.Tensor)


class SegmentDataModule(ImageDataModule):
    """Loads a mask data set once (adlab.data.masks), splits it and serves (image, mask) batches from tensors:
    the classification pipeline's, with masks as the targets (train_y, ...) and the augmentation joint."""

    def prepare(self) -> DataInfo:
        if self.info is not None:
            return self.info
        cfg = self.cfg
        src = load_masks(cfg.name, cfg.root, cfg.image_size, cfg.download)
        train_x, train_m = src.train_x, src.train_m
        if src.test_x is None or src.test_m is None:
            rest, test = random_split(len(train_x), cfg.test_fraction, cfg.split_seed)
            test_x, test_m, train_x, train_m = train_x[test], train_m[test], train_x[rest], train_m[rest]
        else:
            test_x, test_m = src.test_x, src.test_m
        if src.val_x is not None and src.val_m is not None and not cfg.cv_folds:
            val_x, val_m = src.val_x, src.val_m
        else:
            if src.val_x is not None and src.val_m is not None:  # cross-validation folds the whole training pool
                train_x, train_m = torch.cat([train_x, src.val_x]), torch.cat([train_m, src.val_m])
            if cfg.cv_folds:
                rest, val = kfold(len(train_x), cfg.cv_folds, cfg.cv_fold, cfg.split_seed + 1)
            else:
                rest, val = random_split(len(train_x), cfg.val_fraction, cfg.split_seed + 1)
            val_x, val_m, train_x, train_m = train_x[val], train_m[val], train_x[rest], train_m[rest]
        if len(train_x) == 0 or len(test_x) == 0:
            raise DataError(f"{src.description}: {len(train_x)} training and {len(test_x)} test images; need both")
        channels, mean, std = self.input_statistics(train_x)
        self.train_x, self.train_y = train_x, train_m
        self.val_x, self.val_y = val_x, val_m
        self.test_x, self.test_y = test_x, test_m
        # the reader already gave every image the configured size: the transform only normalises
        self.transform = BatchTransform(channels, None, mean, std)
        aug = cfg.augment
        self.augment = JointAugment(aug.crop_padding, aug.flip) if aug.enabled else None
        self.info = DataInfo(
            class_names=list(src.class_names),
            native_channels=int(train_x.shape[1]),
            native_size=list(train_x.shape[2:]),
            channels=channels,
            image_size=cfg.image_size,
            mean=mean,
            std=std,
            description=src.description,
            counts={"train": len(train_x), "val": len(val_x), "test": len(test_x)},
        )
        return self.info

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, m = batch
        if self.transform.mean.device != x.device:
            self.transform.to(x.device)
        x = self.transform.to_unit_range(x)
        if self.augment is not None and self.trainer is not None and self.trainer.training:
            x, m = self.augment(x, m)
        x = (x - self.transform.mean) / self.transform.std
        return (x.contiguous(memory_format=torch.channels_last) if self.channels_last else x), m.long()
