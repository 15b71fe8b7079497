"""Where images come from: each source returns uint8 or [0, 1] float tensors [N, C, H, W].

Sources with an official test split return it; the others get a seeded stratified one later.
Nothing here fakes a download: without the files and without internet, the error says where
to put them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from adlab.data.folder import find_class_folders, index_folder, load_folder
from adlab.data.idx import find_idx, read_idx
from adlab.data.stream import to_rgb
from adlab.errors import DataError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
MNIST_CLASSES = [str(i) for i in range(10)]


@dataclass
class ImageSet:
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor | None
    test_y: torch.Tensor | None
    class_names: list[str]
    description: str


def default_root() -> Path:
    return Path(os.environ.get("ADLAB_DATA", Path.home() / ".cache" / "adlab" / "datasets"))


def load_source(
    name: str,
    root: str | None,
    image_size: int | None = None,
    download: bool = True,
    on_corrupt: str = "fail",
    storage: str = "memory",
    memory_budget_gb: float = 4.0,
    verify: bool = True,
) -> ImageSet:
    """`on_corrupt`, `storage` and `memory_budget_gb` apply to image-file data sets (folder, EuroSAT);
    `verify` to files with a known original checksum (CIFAR-10)."""
    files = {"on_corrupt": on_corrupt, "storage": storage, "memory_budget_gb": memory_budget_gb}
    loaders: dict[str, Callable[..., ImageSet]] = {
        "digits": lambda: _digits(),
        "fashion_mnist": lambda: _mnist_like("FashionMNIST", root, download, FASHION_MNIST_CLASSES),
        "mnist": lambda: _mnist_like("MNIST", root, download, MNIST_CLASSES),
        "cifar10": lambda: _cifar10(root, download, verify),
        "eurosat": lambda: _eurosat(root, download, image_size, files),
        "folder": lambda: _folder(root, image_size, files),
    }
    if name not in loaders:
        raise DataError(f"unknown data set {name!r} (valid: {', '.join(loaders)})")
    return loaders[name]()


def _digits() -> ImageSet:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    return ImageSet(images, labels, None, None, MNIST_CLASSES.copy(), "scikit-learn digits (8x8, 1,797 images)")


def _mnist_like(kind: str, root: str | None, download: bool, class_names: list[str]) -> ImageSet:
    """MNIST-format IDX files from `root`, Debian's package (Fashion-MNIST) or a torchvision download."""
    candidates = []
    if root is not None:
        candidates += [Path(root), Path(root) / kind / "raw"]
    if kind == "FashionMNIST":
        candidates.append(DEBIAN_FASHION_MNIST)
    candidates.append(default_root() / kind / "raw")
    for folder in candidates:
        files = [
            find_idx(folder, s)
            for s in (
                "train-images-idx3-ubyte",
                "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte",
            )
        ]
        present = [f for f in files if f is not None]
        if len(present) == len(files):
            arrays = [read_idx(f) for f in present]
            for images, labels, split in ((arrays[0], arrays[1], "train"), (arrays[2], arrays[3], "t10k")):
                if len(images) != len(labels):
                    raise DataError(f"{folder}: {split} has {len(images)} images but {len(labels)} labels")
            tx, ty, vx, vy = (torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
            return ImageSet(
                tx.unsqueeze(1), ty.long(), vx.unsqueeze(1), vy.long(), class_names, f"{kind} IDX files from {folder}"
            )
    target = Path(root) if root is not None else default_root()
    if not download:
        raise DataError(
            f"{kind} not found (looked in {', '.join(map(str, candidates))}); "
            f"put the four IDX files in {target / kind / 'raw'} or set data.download: true"
        )
    import torchvision.datasets as tvd

    dataset_cls = getattr(tvd, kind)
    train, test = _download(
        lambda: (
            dataset_cls(str(target), train=True, download=True),
            dataset_cls(str(target), train=False, download=True),
        ),
        kind,
        target / kind / "raw",
        "the four IDX files (train/t10k images and labels)",
    )
    return ImageSet(
        train.data.unsqueeze(1).contiguous(),
        train.targets.long(),
        test.data.unsqueeze(1).contiguous(),
        test.targets.long(),
        class_names,
        f"{kind} from torchvision in {target}",
    )


def _cifar10(root: str | None, download: bool, verify: bool = True) -> ImageSet:
    from adlab.data.cifar import load_cifar10

    target = Path(root) if root is not None else default_root()
    tx, ty, vx, vy, names, folder = load_cifar10(target, download, verify)
    return ImageSet(
        tx,
        ty,
        vx,
        vy,
        names,
        f"CIFAR-10 python batches from {folder}" + ("" if verify else " (checksums not verified: data.verify false)"),
    )


def _eurosat(root: str | None, download: bool, image_size: int | None, files: dict) -> ImageSet:
    import torchvision.datasets as tvd

    target = Path(root) if root is not None else default_root()
    dataset = _download(
        lambda: tvd.EuroSAT(str(target), download=download),
        "EuroSAT",
        target / "eurosat" / "2750",
        "the class folders of EuroSAT RGB (AnnualCrop, Forest, ...)",
        download,
    )
    folder = Path(dataset.root) / "eurosat" / "2750"
    images, labels, names, skipped = load_folder(folder, image_size, list(dataset.classes), **files)
    return ImageSet(images, labels, None, None, names, f"EuroSAT RGB from {folder}{_skipped_note(skipped)}")


def _skipped_note(skipped: list[str]) -> str:
    """Said wherever the data set is described (console, env.json, reports): nothing is dropped silently."""
    if not skipped:
        return ""
    return f" ({len(skipped)} unreadable image{'s' if len(skipped) > 1 else ''} skipped, e.g. {skipped[0]})"


def held_out_folder(base: Path) -> Path | None:
    """The test set of a folder data set split on disk: test/ (or val/, as `adlab data crops` writes) beside a
    train/ folder; None for a folder of class folders (its test set is split off at random)."""
    if not (base / "train").is_dir():
        return None
    return next((base / split for split in ("test", "val") if (base / split).is_dir()), None)


def _folder(root: str | None, image_size: int | None, files: dict) -> ImageSet:
    if root is None:
        raise DataError("data.root: the folder data set needs a root (an ImageFolder tree of class subfolders)")
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"{base}: data folder not found")
    held_out = held_out_folder(base)
    if held_out is not None:
        # both trees are indexed before anything is decoded. A class only in the held-out folder could
        # never be predicted: refused rather than dropped silently. A class missing from it is fine, as
        # it always was (its images are all in train/; every class keeps train/'s id).
        owners: dict = {}  # shared, so one image file in both trees (through a link) is refused: a test leak
        train = index_folder(base / "train", owners=owners)
        names = train[0]
        extra = [name for name in find_class_folders(held_out) if name not in names]
        if extra:
            listed = ", ".join(repr(name) for name in extra[:10])
            listed += f" and {len(extra) - 10} more" if len(extra) > 10 else ""
            plural, it = ("s", "them") if len(extra) > 1 else ("", "it")
            raise DataError(
                f"{held_out}: class folder{plural} {listed} not in {base / 'train'}; a model trained there "
                f"cannot predict {it}: add {it} to train/ or remove {it} from {held_out.name}/"
            )
        test = index_folder(held_out, names, allow_empty=True, owners=owners)
        train_x, train_y, names, skipped = load_folder(base / "train", image_size, index=train, **files)
        test_x, test_y, _, skipped_test = load_folder(held_out, image_size, index=test, **files)
        if train_x.shape[2:] != test_x.shape[2:]:
            raise DataError(
                f"{base}: train images are {tuple(train_x.shape[2:])} but test images "
                f"{tuple(test_x.shape[2:])}; set data.image_size"
            )
        if train_x.shape[1] != test_x.shape[1]:  # one split has colour: promote both to RGB
            train_x, test_x = (to_rgb(t) if t.shape[1] == 1 else t for t in (train_x, test_x))
        return ImageSet(
            train_x,
            train_y,
            test_x,
            test_y,
            names,
            f"image folders {base}/train and {held_out} (test){_skipped_note(skipped + skipped_test)}",
        )
    images, labels, names, skipped = load_folder(base, image_size, **files)
    return ImageSet(images, labels, None, None, names, f"image folder {base}{_skipped_note(skipped)}")


def _download(fetch: Callable, what: str, where: Path, files: str, download: bool = True):
    try:
        return fetch()
    except Exception as exc:  # torchvision raises URLError, RuntimeError, OSError... depending on the step
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not download:
            raise DataError(
                f"{what} not found or corrupt in {where} ({reason}); put {files} there or set data.download: true"
            ) from None
        raise DataError(
            f"{what} is not in {where} and could not be downloaded ({reason}); without internet, put {files} in {where}"
        ) from None
