"""CIFAR-10 from its python batches (`cifar-10-batches-py/`), as torchvision lays them out.

torchvision refuses any folder that is not byte-identical to the original and then says the files
are missing. adlab reads the batches itself: it checks each file's MD5 against the original's and,
when one differs, names that file; `data.verify: false` uses a faithful copy as it is (a copy
re-saved by another tool, a subset made for a test). The batches are pickles: they are read with an
unpickler that builds only NumPy arrays, lists, dicts and strings, so a crafted file cannot run code.
"""

from __future__ import annotations

import functools
import hashlib
import io
import pickle
import stat
import tarfile
from pathlib import Path

import numpy as np
import torch

from adlab.errors import DataError

FOLDER = "cifar-10-batches-py"
TARBALL = "cifar-10-python.tar.gz"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
TARBALL_MD5 = "c58f30108f718f92721af3b95e74349a"
TRAIN = [
    ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
    ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
    ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
    ("data_batch_4", "634d18415352ddfa80567beed471001a"),
    ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
]
TEST = [("test_batch", "40351d587109b95175f43aff81a1287e")]
META = ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888")
SKIP_HINT = "set data.verify: false to use it as it is"

MAX_FILE_BYTES = 256 << 20  # a CIFAR-10 batch is 31 MB (CIFAR-100's train file 155 MB): anything far larger is not one

# What a CIFAR batch pickle may build: NumPy arrays (any NumPy version's names) and plain containers.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
    ("builtins", "bytearray"),
}
_TEXT_CODECS = {"latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1", "utf-8", "utf8", "ascii"}


class _CheckedArray(np.ndarray):
    """What `_reconstruct` makes while a batch is read: NumPy's own array, whose __setstate__ (the shape,
    dtype and bytes the file states) is checked before NumPy allocates anything. Viewed as a plain
    ndarray once the file is read."""

    budget = 0  # bytes: the file's own size, set per file (a file cannot hold more data than itself)

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("an array's state is not NumPy's")
        shape, dtype, raw = state[-4], state[-3], state[-1]
        _check_size(shape, dtype, self.budget)
        if isinstance(raw, str):  # a Python 2 pickle (the real CIFAR-10 batches) read as latin1: its bytes
            raw = raw.encode("latin1")
            state = (*state[:-1], raw)
        if not isinstance(raw, (bytes, bytearray)):
            raise pickle.UnpicklingError("an array whose data is not raw bytes (an object array?)")
        super().__setstate__(state)


def _check_size(shape, dtype, budget: int) -> None:
    """Refuse before allocating: object arrays, and any array larger than the file it comes from."""
    if not isinstance(dtype, np.dtype):
        try:
            dtype = np.dtype(dtype)
        except (TypeError, ValueError):
            raise pickle.UnpicklingError(f"an array of dtype {dtype!r}") from None
    if dtype.hasobject:
        raise pickle.UnpicklingError("an object array (a CIFAR batch holds numbers)")
    if (
        not isinstance(shape, tuple)
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
        or len(shape) > 32
    ):
        raise pickle.UnpicklingError(f"an array of shape {str(shape)[:40]}")
    nbytes = dtype.itemsize
    for n in shape:
        nbytes *= n
    if nbytes > budget:
        raise pickle.UnpicklingError(
            f"an array of shape {shape} and dtype {dtype} ({nbytes:,} bytes) in a file of {budget:,} bytes"
        )


class _BatchUnpickler(pickle.Unpickler):
    def __init__(self, file, budget: int, **kwargs):
        super().__init__(file, **kwargs)
        self.budget = budget

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to build {module}.{name}")
        found = super().find_class(module, name)
        if name == "scalar":
            return functools.partial(self._scalar, found)
        checked = {"_reconstruct": self._reconstruct, "encode": self._encode, "bytearray": self._bytearray}
        return checked.get(name, found)

    def _reconstruct(self, subtype, shape, dtype):
        if subtype is not np.ndarray:
            raise pickle.UnpicklingError("an array of another type than numpy.ndarray")
        _check_size(shape, dtype, self.budget)
        array = _CheckedArray.__new__(_CheckedArray, shape, dtype)
        array.budget = self.budget
        return array

    def _scalar(self, scalar, dtype, *data):
        _check_size((), dtype, self.budget)
        return scalar(dtype, *data)

    def _encode(self, text, encoding="utf-8", errors="strict"):
        if not isinstance(text, str) or str(encoding).lower() not in _TEXT_CODECS:
            raise pickle.UnpicklingError(f"refusing to decode with {str(encoding)[:20]!r}")
        return text.encode(encoding, errors)

    def _bytearray(self, *args):
        if args and not isinstance(args[0], (bytes, bytearray)):
            raise pickle.UnpicklingError("a bytearray that is not made from bytes")
        return bytearray(*args)


def load_cifar10(root: Path, download: bool, verify: bool = True):
    """(train_x, train_y, test_x, test_y, class names, where) with images uint8 [N, 3, 32, 32]."""
    folder = Path(root) / FOLDER
    if not folder.is_dir():
        _fetch(Path(root), download, verify)
    missing = [name for name, _ in TRAIN + TEST + [META] if not (folder / name).is_file()]
    if missing:
        raise DataError(
            f"{folder}: {', '.join(missing)} missing (a CIFAR-10 python folder holds data_batch_1 .. "
            f"data_batch_5, test_batch and batches.meta); put {TARBALL} in {root} or the extracted "
            f"{FOLDER}/ there"
        )
    if verify:
        for name, md5 in TRAIN + TEST + [META]:
            _check_md5(folder / name, md5)
    train = [_read_batch(folder / name) for name, _ in TRAIN]
    test_x, test_y = _read_batch(folder / TEST[0][0])
    names = _label_names(folder / META[0])
    train_x = torch.cat([x for x, _ in train])
    train_y = torch.cat([y for _, y in train])
    for y, where in ((train_y, "data_batch_*"), (test_y, "test_batch")):
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(names)):
            raise DataError(f"{folder / where}: labels outside 0..{len(names) - 1} (batches.meta names {len(names)})")
    return train_x, train_y, test_x, test_y, names, folder


def _fetch(root: Path, download: bool, verify: bool) -> None:
    tarball = root / TARBALL
    if not tarball.is_file():
        if not download:
            raise DataError(
                f"CIFAR-10 not found: neither {root / FOLDER}/ nor {tarball}; put one of them there "
                "or set data.download: true"
            )
        from torchvision.datasets.utils import download_url

        try:
            download_url(URL, str(root), TARBALL, TARBALL_MD5)  # checks the MD5 of what it fetched
        except Exception as exc:  # URLError, HTTPError, OSError, a bad checksum
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(
                f"CIFAR-10 could not be downloaded from {URL} ({reason}); without internet, put "
                f"{TARBALL} in {root} (or its extracted {FOLDER}/)"
            ) from None
    if verify:
        _check_md5(tarball, TARBALL_MD5)
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            archive.extractall(root, filter="data")  # no absolute paths, links out or devices
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{tarball}: cannot be extracted ({exc}); delete it and download again") from None


def _check_md5(path: Path, expected: str) -> None:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise DataError(
            f"{path}: not the original CIFAR-10 file (MD5 {digest.hexdigest()}, expected {expected}): "
            f"damaged, or a copy made another way; download it again, or {SKIP_HINT}"
        )


def _unpickle(path: Path) -> dict:
    """The batch's dict, from a regular file no larger than MAX_FILE_BYTES, every array it builds no
    larger than the file itself (checked before NumPy allocates it)."""
    try:
        info = path.stat()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"{path}: not a regular file (a CIFAR python batch is one)")
    if info.st_size > MAX_FILE_BYTES:
        raise DataError(
            f"{path}: {info.st_size:,} bytes, larger than any CIFAR python batch (at most {MAX_FILE_BYTES >> 20} MiB)"
        )
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
        record = _BatchUnpickler(io.BytesIO(raw), budget=len(raw), encoding="latin1").load()
    except Exception as exc:  # UnpicklingError, EOFError, ValueError, MemoryError...: any unreadable batch is one line
        raise DataError(f"{path}: not a CIFAR python batch ({_reason(exc)})") from None
    if not isinstance(record, dict):
        raise DataError(f"{path}: not a CIFAR python batch (holds a {type(record).__name__}, not a dict)")
    return {key.decode("latin1") if isinstance(key, bytes) else key: _plain(value) for key, value in record.items()}


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:160] or type(exc).__name__


def _plain(value):
    """A checked array as NumPy's own ndarray again (lists of them too)."""
    if isinstance(value, _CheckedArray):
        return value.view(np.ndarray)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    record = _unpickle(path)
    data, labels = record.get("data"), record.get("labels", record.get("fine_labels"))
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(f"{path}: a CIFAR batch needs 'data' (an array) and 'labels'")
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype != np.uint8:
        raise DataError(f"{path}: 'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072): 32x32 RGB rows")
    if not isinstance(labels, (list, np.ndarray)) or isinstance(labels, np.ndarray) and labels.ndim != 1:
        raise DataError(f"{path}: 'labels' is not a list of class ids")
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
    if isinstance(labels, list) and not all(type(v) is int for v in labels):
        raise DataError(f"{path}: 'labels' holds something else than integer class ids")
    labels = np.asarray(labels)
    if len(labels) and (not np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.uint64):
        raise DataError(f"{path}: 'labels' is {labels.dtype}, not integer class ids")
    images = torch.from_numpy(np.ascontiguousarray(data.reshape(-1, 3, 32, 32)))
    return images, torch.from_numpy(labels.astype(np.int64))


MAX_NAME_CHARS = 100


def _label_names(path: Path) -> list[str]:
    names = _unpickle(path).get("label_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, (str, bytes)) for n in names):
        raise DataError(f"{path}: batches.meta needs 'label_names', a list of class names")
    names = [n.decode("latin1") if isinstance(n, bytes) else n for n in names]
    for name in names:
        if not name.strip() or len(name) > MAX_NAME_CHARS or not name.isprintable():
            raise DataError(
                f"{path}: class name {name[:MAX_NAME_CHARS]!r} is empty, longer than {MAX_NAME_CHARS} "
                "characters or holds control characters"
            )
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"{path}: class name {twice[0]!r} given twice in label_names")
    return names
