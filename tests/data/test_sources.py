"""The real loading code of each data set, exercised on small files made here (no downloads)."""

import gzip
import pickle
import urllib.error

import numpy as np
import pytest
import torch

from adlab.data.sources import FASHION_MNIST_CLASSES, load_source
from adlab.errors import DataError


def _write_idx(path, array):
    dtype_code = {np.uint8: 0x08}[array.dtype.type]
    header = bytes([0, 0, dtype_code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def _mnist_files(folder, n_train=30, n_test=10):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    _write_idx(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8))
    _write_idx(folder / "train-labels-idx1-ubyte.gz", (np.arange(n_train) % 10).astype(np.uint8))
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8))
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", (np.arange(n_test) % 10).astype(np.uint8))


def test_digits_is_always_there():
    data = load_source("digits", None)
    assert data.train_x.shape == (1797, 1, 8, 8) and data.train_x.dtype == torch.float32
    assert 0.0 <= data.train_x.min() and data.train_x.max() <= 1.0
    assert data.test_x is None and len(data.class_names) == 10


@pytest.mark.parametrize("sub", ["", "MNIST/raw"])
def test_mnist_from_idx_files_in_root(tmp_path, sub):
    _mnist_files(tmp_path / sub if sub else tmp_path)
    data = load_source("mnist", str(tmp_path), download=False)
    assert data.train_x.shape == (30, 1, 28, 28) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (10, 1, 28, 28)
    assert data.train_y.tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_fashion_mnist_class_names_from_root(tmp_path):
    _mnist_files(tmp_path / "FashionMNIST" / "raw")
    data = load_source("fashion_mnist", str(tmp_path), download=False)
    assert data.class_names == FASHION_MNIST_CLASSES and len(data.train_x) == 30


def test_mismatched_image_and_label_counts(tmp_path):
    _mnist_files(tmp_path)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5, dtype=np.uint8))
    with pytest.raises(DataError, match="30 images but 5 labels"):
        load_source("mnist", str(tmp_path), download=False)


def test_mnist_missing_without_download_says_where(tmp_path, monkeypatch):
    monkeypatch.setenv("ADLAB_DATA", str(tmp_path / "cache"))
    with pytest.raises(DataError) as err:
        load_source("mnist", str(tmp_path / "nowhere"), download=False)
    assert "MNIST/raw" in str(err.value) and "nowhere" in str(err.value)


def test_failed_download_says_where_to_put_files(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no internet")

    monkeypatch.setenv("ADLAB_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(tvd, "MNIST", offline)
    monkeypatch.setattr("torchvision.datasets.utils.download_url", offline)  # adlab fetches CIFAR-10 itself
    monkeypatch.setattr(tvd, "EuroSAT", offline)
    for name, where in (("mnist", "MNIST/raw"), ("cifar10", "cifar-10-batches-py"), ("eurosat", "eurosat/2750")):
        with pytest.raises(DataError) as err:
            load_source(name, str(tmp_path / name))
        message = str(err.value)
        assert "could not be downloaded" in message and where in message and "no internet" in message


def test_cifar10_conversion_from_python_batches(tmp_path, monkeypatch):
    """adlab's CIFAR10 reader on hand-made batches (the MD5 check is bypassed: the files are ours)."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 9]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(
            {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]},
            f,
        )
    monkeypatch.setattr("adlab.data.cifar._check_md5", lambda path, md5: None)
    data = load_source("cifar10", str(tmp_path), download=False)
    assert data.train_x.shape == (20, 3, 32, 32) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (4, 3, 32, 32)
    assert data.class_names[0] == "airplane" and data.train_y.tolist()[:4] == [0, 1, 2, 9]
    with open(folder / "data_batch_1", "rb") as f:
        first = pickle.load(f)["data"][0]
    assert torch.equal(data.train_x[0], torch.from_numpy(first.reshape(3, 32, 32)))


def test_eurosat_from_its_folder_layout(tmp_path):
    from standins.eurosat import CLASSES, write_eurosat

    write_eurosat(tmp_path, per_class=2)
    data = load_source("eurosat", str(tmp_path), download=False)
    assert data.train_x.shape == (20, 3, 64, 64) and data.class_names == CLASSES
    assert data.train_y.tolist() == [i for i in range(10) for _ in range(2)]
    assert data.test_x is None
