"""The IDX reader: hand-made files, plain and gzip, and the ways they can be broken."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from adlab.data.idx import find_idx, read_idx
from adlab.errors import DataError

_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(">i2"): 0x0B,
    np.dtype(">i4"): 0x0C,
    np.dtype(">f4"): 0x0D,
    np.dtype(">f8"): 0x0E,
}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of `array`: magic (0, 0, dtype code, ndim), big-endian dims, big-endian data."""
    dtype = array.dtype if array.dtype.itemsize == 1 else array.dtype.newbyteorder(">")
    header = bytes([0, 0, _CODES[dtype], array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(dtype).tobytes()


def write_idx(path, array: np.ndarray) -> None:
    data = idx_bytes(array)
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


IMAGES = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5) * 4
LABELS = np.array([7, 0, 9], dtype=np.uint8)


@pytest.mark.parametrize("name", ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"])
def test_round_trip_images(tmp_path, name):
    path = tmp_path / name
    write_idx(path, IMAGES)
    if name.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"  # really compressed
    out = read_idx(path)
    assert out.shape == (3, 4, 5)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, IMAGES)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_labels_1d(tmp_path, suffix):
    path = tmp_path / f"labels{suffix}"
    write_idx(path, LABELS)
    out = read_idx(path)
    assert out.shape == (3,)
    np.testing.assert_array_equal(out, LABELS)


@pytest.mark.parametrize(
    "dtype, values",
    [
        ("int8", [[-3, 1, 2], [100, -7, 5]]),
        (">i2", [[-3, 1, 2], [300, -7000, 5]]),
        (">i4", [[-3, 1, 2], [300, -70000, 5]]),
        (">f4", [[-3.5, 1, 2], [300.25, -70000, 5]]),
        (">f8", [[-3.5, 1, 2], [300.25, -70000, 1e-300]]),
    ],
)
def test_multibyte_types_are_big_endian_and_returned_native(tmp_path, dtype, values):
    array = np.array(values).astype(dtype)
    path = tmp_path / "values"
    write_idx(path, array)
    out = read_idx(path)
    np.testing.assert_array_equal(out, array)
    assert out.dtype.isnative
    assert out.dtype.kind == array.dtype.kind and out.dtype.itemsize == array.dtype.itemsize


def test_reads_header_dims_not_guesses(tmp_path):
    # Same bytes of data, different declared shapes.
    array = np.arange(24, dtype=np.uint8)
    path = tmp_path / "a"
    write_idx(path, array.reshape(2, 3, 4))
    assert read_idx(path).shape == (2, 3, 4)
    write_idx(path, array.reshape(6, 4))
    assert read_idx(path).shape == (6, 4)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_truncated_data_names_the_file(tmp_path, suffix):
    path = tmp_path / f"t10k-images-idx3-ubyte{suffix}"
    data = idx_bytes(IMAGES)[:-7]
    if suffix:
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    with pytest.raises(DataError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message
    assert "truncated" in message
    assert "(3, 4, 5)" in message  # says what shape was expected


def test_truncated_header_names_the_file(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(idx_bytes(IMAGES)[:9])  # magic + one and a bit of three dims
    with pytest.raises(DataError, match="truncated") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_trailing_garbage_is_an_error(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(IMAGES) + b"\x00\x01")
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_gzip_stream_names_the_file(tmp_path):
    path = tmp_path / "labels.gz"
    full = gzip.compress(idx_bytes(np.arange(1000, dtype=np.uint8) % 10))
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "head", [b"\x12\x34\x08\x01", b"\x00\x00\x07\x01", b"\x00\x01\x08\x01", b"PK\x03\x04", b"\x00\x00"]
)
def test_bad_magic(tmp_path, head):
    path = tmp_path / "not-idx"
    path.write_bytes(head + b"\x00\x00\x00\x03abc")
    with pytest.raises(DataError, match="bad magic") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_gz_suffix_on_a_plain_file_is_a_data_error(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(idx_bytes(IMAGES))  # not actually compressed
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_missing_file_is_a_data_error(tmp_path):
    path = tmp_path / "nope"
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_find_idx_plain_then_gz(tmp_path):
    stem = "train-labels-idx1-ubyte"
    assert find_idx(tmp_path, stem) is None
    write_idx(tmp_path / f"{stem}.gz", LABELS)
    assert find_idx(tmp_path, stem) == tmp_path / f"{stem}.gz"
    write_idx(tmp_path / stem, LABELS)
    assert find_idx(tmp_path, stem) == tmp_path / stem
