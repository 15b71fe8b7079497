"""CIFAR-10 from its python batches: originals checked by MD5, faithful copies with data.verify false,
and no code run from a crafted pickle."""

import pickle
import tarfile

import numpy as np
import pytest
import torch

from adlab.data.cifar import load_cifar10
from adlab.errors import DataError
from standins.cifar import NAMES, write_cifar10


def test_a_faithful_copy_is_named_as_not_original_then_read_with_verify_off(tmp_path):
    folder = write_cifar10(tmp_path, per_batch=20)
    with pytest.raises(
        DataError,
        match=r"data_batch_1: not the original CIFAR-10 file \(MD5 [0-9a-f]{32}, expected "
        r"c99cafc1.*data.verify: false",
    ):
        load_cifar10(tmp_path, download=False)
    train_x, train_y, test_x, test_y, names, where = load_cifar10(tmp_path, download=False, verify=False)
    assert where == folder and names == NAMES
    assert (
        train_x.shape == (100, 3, 32, 32)
        and test_x.shape == (20, 3, 32, 32)
        and train_x.dtype.is_floating_point is False
    )
    assert sorted(train_y.tolist()) == sorted(list(range(10)) * 10)
    record = pickle.loads((folder / "data_batch_2").read_bytes())
    first = record[b"data"][0].reshape(3, 32, 32)
    assert np.array_equal(train_x[20].numpy(), first) and train_y[20] == record[b"labels"][0]


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_any_pickle_protocol_of_numpy_arrays_reads(tmp_path, protocol):
    write_cifar10(tmp_path, per_batch=10, protocol=protocol)
    assert load_cifar10(tmp_path, download=False, verify=False)[0].shape == (50, 3, 32, 32)


class Boom:
    def __reduce__(self):
        return (print, ("code ran",))


def test_a_crafted_pickle_is_refused_without_running_it(tmp_path, capsys):
    folder = write_cifar10(tmp_path, per_batch=10)
    (folder / "data_batch_3").write_bytes(pickle.dumps({"data": Boom(), "labels": []}))
    with pytest.raises(DataError, match=r"data_batch_3: not a CIFAR python batch \(refusing to build builtins.print\)"):
        load_cifar10(tmp_path, download=False, verify=False)
    assert "code ran" not in capsys.readouterr().out


def test_missing_files_and_folders_are_named(tmp_path):
    with pytest.raises(DataError, match=r"neither .*cifar-10-batches-py/ nor .*cifar-10-python.tar.gz; put one"):
        load_cifar10(tmp_path, download=False)
    folder = write_cifar10(tmp_path, per_batch=10)
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match=r"cifar-10-batches-py: test_batch missing"):
        load_cifar10(tmp_path, download=False, verify=False)
    write_cifar10(tmp_path / "again", per_batch=10)
    (tmp_path / "again" / "cifar-10-batches-py" / "data_batch_1").write_bytes(
        pickle.dumps({"data": np.zeros((2, 10), np.uint8), "labels": [0, 1]})
    )
    with pytest.raises(DataError, match=r"data_batch_1: 'data' is uint8 \(2, 10\), expected uint8 \(N, 3072\)"):
        load_cifar10(tmp_path / "again", download=False, verify=False)


def test_the_tarball_is_extracted_when_the_folder_is_not_there(tmp_path):
    source = tmp_path / "made"
    folder = write_cifar10(source, per_batch=10)
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as archive:
        archive.add(folder, arcname="cifar-10-batches-py")
    with pytest.raises(DataError, match=r"cifar-10-python.tar.gz: not the original CIFAR-10 file"):
        load_cifar10(root, download=False)
    assert load_cifar10(root, download=False, verify=False)[1].shape == (50,)
    assert (root / "cifar-10-batches-py" / "batches.meta").is_file()


def test_data_verify_false_reaches_the_reader_and_the_description_says_so(tmp_path):
    from adlab.config import load_config
    from adlab.data.sources import load_source

    write_cifar10(tmp_path, per_batch=10)
    config = load_config({"data": {"name": "cifar10", "root": str(tmp_path), "verify": False, "download": False}})
    data = load_source("cifar10", config.data.root, download=False, verify=config.data.verify)
    assert data.train_x.shape == (50, 3, 32, 32) and "checksums not verified" in data.description
    with pytest.raises(DataError, match="not the original CIFAR-10 file"):
        load_source("cifar10", str(tmp_path), download=False)


# --- crafted batches (issue 28): each one line naming the file, nothing allocated from a stated size ---

RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's _reconstruct, under this NumPy's module name


class Reduced:
    """Pickles as `function(*args)`, then `state` given to its __setstate__: any array header a file may state."""

    def __init__(self, function, args, state=None):
        self.function, self.args, self.state = function, args, state

    def __reduce__(self):
        return (self.function, self.args) if self.state is None else (self.function, self.args, self.state)


def craft(folder, name, record, protocol=2):
    (folder / name).write_bytes(pickle.dumps(record, protocol=protocol))
    return folder / name


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


CRAFTED = {
    # a 150-byte file whose array header asks NumPy for 1.5 GB (untouched memory: RSS alone would not show it)
    "an array shape larger than the file": (
        {"data": Reduced(RECONSTRUCT, (np.ndarray, (1_500_000_000,), b"B")), "labels": []},
        r"an array of shape \(1500000000,\) and dtype uint8 \(1,500,000,000 bytes\) in a file of \d+ bytes",
    ),
    "an array state larger than its bytes": (
        {
            "data": Reduced(
                RECONSTRUCT, (np.ndarray, (0,), b"B"), (1, (1_500_000_000, 3072), np.dtype(np.uint8), False, b"x" * 10)
            ),
            "labels": [],
        },
        r"an array of shape \(1500000000, 3072\)",
    ),
    # an object array of 200 million Nones would fill 1.6 GB before any check: refused unbuilt
    "an object array": (
        {
            "data": Reduced(
                RECONSTRUCT, (np.ndarray, (0,), b"B"), (1, (200_000_000,), np.dtype(object), False, [1, 2])
            ),
            "labels": [],
        },
        r"an object array",
    ),
    "an object array made at once": (
        {"data": Reduced(RECONSTRUCT, (np.ndarray, (200_000_000,), "O")), "labels": []},
        r"an object array",
    ),
    "a scalar larger than the file": (
        {"data": Reduced(np.float64(1).__reduce__()[0], (np.dtype("V2000000000"), b"")), "labels": []},
        r"V2000000000",
    ),
    "a bytearray of a stated size": (
        {"data": Reduced(bytearray, (1_500_000_000,)), "labels": []},
        r"a bytearray that is not made from bytes",
    ),
    "a negative shape": (
        {"data": Reduced(RECONSTRUCT, (np.ndarray, (-1,), b"B")), "labels": []},
        r"an array of shape \(-1,\)",
    ),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_array_headers_are_refused_before_numpy_allocates(tmp_path, case):
    record, reason = CRAFTED[case]
    folder = write_cifar10(tmp_path, per_batch=10)
    path = craft(folder, "data_batch_2", record, protocol=4)  # bytes and bytearray as themselves
    assert path.stat().st_size < 400
    before = peak_rss_mb()
    with pytest.raises(DataError, match=rf"data_batch_2: not a CIFAR python batch \(.*({reason})"):
        load_cifar10(tmp_path, download=False, verify=False)
    assert peak_rss_mb() - before < 200


BAD_CONTENT = {
    "float data": (
        {"data": np.zeros((2, 3072), np.float32), "labels": [0, 1]},
        r"'data' is float32 \(2, 3072\), expected uint8",
    ),
    "labels out of range": (
        {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]},
        r"data_batch_\*: labels outside 0..9",
    ),
    "negative labels": ({"data": np.zeros((2, 3072), np.uint8), "labels": [0, -1]}, r"labels outside 0..9"),
    "more labels than images": ({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1, 2]}, r"2 images but 3 labels"),
    "float labels": (
        {"data": np.zeros((2, 3072), np.uint8), "labels": [0.0, 1.5]},
        r"'labels' holds something else than integer class ids",
    ),
    "bool labels": (
        {"data": np.zeros((2, 3072), np.uint8), "labels": np.array([True, False])},
        r"'labels' is bool, not integer class ids",
    ),
    "huge int labels": (
        {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10**30]},
        r"labels outside|not integer class ids|something else",
    ),
    "labels as a mapping": (
        {"data": np.zeros((2, 3072), np.uint8), "labels": {0: 1, 1: 2}},
        r"'labels' is not a list of class ids",
    ),
    "no data": ({"labels": [0]}, r"needs 'data' \(an array\) and 'labels'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONTENT))
def test_batches_with_wrong_content_are_one_line_naming_the_file(tmp_path, case):
    record, reason = BAD_CONTENT[case]
    folder = write_cifar10(tmp_path, per_batch=10)
    craft(folder, "data_batch_4", record)
    with pytest.raises(DataError, match=rf"cifar-10-batches-py/(data_batch_4)?.*{reason}"):
        load_cifar10(tmp_path, download=False, verify=False)


@pytest.mark.parametrize(
    "names, reason",
    [
        (["a", "a"] + [f"c{i}" for i in range(8)], r"class name 'a' given twice"),
        (["a\nb"] + [f"c{i}" for i in range(9)], r"control characters"),
        (["  "] + [f"c{i}" for i in range(9)], r"is empty"),
        (["x" * 500] + [f"c{i}" for i in range(9)], r"longer than 100"),
    ],
)
def test_bad_class_names_in_batches_meta_are_refused(tmp_path, names, reason):
    folder = write_cifar10(tmp_path, per_batch=10)
    craft(folder, "batches.meta", {b"label_names": [n.encode("latin1") for n in names]})
    with pytest.raises(DataError, match=rf"batches.meta: .*{reason}"):
        load_cifar10(tmp_path, download=False, verify=False)


def test_a_mathtext_class_name_is_kept_as_written(tmp_path):
    folder = write_cifar10(tmp_path, per_batch=10)
    names = ["f$^$", r"$\frac{$"] + [f"c{i}" for i in range(8)]
    craft(folder, "batches.meta", {b"label_names": [n.encode() for n in names]})
    assert load_cifar10(tmp_path, download=False, verify=False)[4] == names


def test_a_huge_sparse_file_is_refused_by_its_size_without_reading_it(tmp_path):
    folder = write_cifar10(tmp_path, per_batch=10)
    with open(folder / "data_batch_1", "r+b") as handle:
        handle.truncate(6 << 30)  # 6 GB, sparse: nothing written
    with pytest.raises(DataError, match=r"data_batch_1: 6,442,450,944 bytes, larger than any CIFAR python batch"):
        load_cifar10(tmp_path, download=False, verify=False)


def test_a_fifo_or_folder_in_place_of_a_batch_is_named_without_blocking(tmp_path):
    import os

    folder = write_cifar10(tmp_path, per_batch=10)
    (folder / "data_batch_5").unlink()
    os.mkfifo(folder / "data_batch_5")
    with pytest.raises(DataError, match=r"data_batch_5"):
        load_cifar10(tmp_path, download=False, verify=False)
    with pytest.raises(DataError, match=r"data_batch_5: not a regular file"):
        from adlab.data.cifar import _unpickle

        _unpickle(folder / "data_batch_5")


def test_real_numpy_pickles_of_every_protocol_still_read(tmp_path):
    """The checks refuse only what a real batch never holds: arrays as NumPy pickles them, in-band."""
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        write_cifar10(tmp_path / str(protocol), per_batch=10, protocol=protocol)
        assert load_cifar10(tmp_path / str(protocol), download=False, verify=False)[0].shape == (50, 3, 32, 32)
    folder = write_cifar10(tmp_path / "arr", per_batch=10)
    craft(folder, "data_batch_1", {"data": np.zeros((10, 3072), np.uint8), "labels": np.arange(10, dtype=np.int64)})
    assert load_cifar10(tmp_path / "arr", download=False, verify=False)[1].shape == (50,)


# --- the unpickler's edges, one test per hole found by mutation testing (docs/testing.md) ------------


def _py2_dumps(record) -> bytes:
    """A pickle as Python 2's cPickle wrote the real batches: bytes as Python 2 `str` (BINSTRING), which
    Python 3 decodes with the unpickler's encoding (latin1)."""
    import io
    import struct

    class Py2Pickler(pickle._Pickler):
        dispatch = dict(pickle._Pickler.dispatch)

        def save_py2_str(self, obj):
            self.write(
                pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj
                if len(obj) < 256
                else pickle.BINSTRING + struct.pack("<i", len(obj)) + obj
            )
            self.memoize(obj)

        dispatch[bytes] = save_py2_str

    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(record)
    return buffer.getvalue()


def _refused(tmp_path, record, protocol=2) -> str:
    """The one-line reason _unpickle gives for a file holding `record` (a bytes object: the file itself)."""
    from adlab.data.cifar import _unpickle

    path = tmp_path / "batch"
    path.write_bytes(record if isinstance(record, bytes) else pickle.dumps(record, protocol=protocol))
    with pytest.raises(DataError) as refused:
        _unpickle(path)
    return str(refused.value).removeprefix(f"{path}: ")


def _read(tmp_path, record, protocol=2):
    from adlab.data.cifar import _unpickle

    path = tmp_path / "batch"
    path.write_bytes(record if isinstance(record, bytes) else pickle.dumps(record, protocol=protocol))
    return _unpickle(path)


def test_python2_class_names_are_decoded_as_latin1(tmp_path):
    """The real batches.meta is a Python 2 pickle: its names are `str` bytes, read as latin1."""
    folder = write_cifar10(tmp_path, per_batch=10)
    names = [b"caf\xe9"] + [f"c{i}".encode() for i in range(9)]
    (folder / "batches.meta").write_bytes(_py2_dumps({b"label_names": names, b"num_vis": 3072}))
    assert load_cifar10(tmp_path, download=False, verify=False)[4] == ["café"] + [f"c{i}" for i in range(9)]


def test_a_python2_pickled_array_reads(tmp_path):
    """The real CIFAR-10 batches are Python 2 cPickle files: read as latin1, an array's bytes arrive as
    a str, which NumPy accepts (adlab refused every real batch until this test)."""
    data = np.arange(2 * 3072).astype(np.uint8).reshape(2, 3072)
    raw = _py2_dumps({b"data": data, b"labels": [0, 1]})
    assert np.array_equal(pickle.loads(raw, encoding="latin1")["data"], data)  # NumPy reads it
    assert np.array_equal(_read(tmp_path, raw)["data"], data)


def test_numpy_scalars_read_as_their_values(tmp_path):
    for protocol in (2, 4):
        record = _read(tmp_path, {"n": np.int64(7), "x": np.float32(1.5)}, protocol=protocol)
        assert record == {"n": 7, "x": 1.5} and type(record["n"]) is np.int64 and type(record["x"]) is np.float32


def test_an_array_made_without_state_has_the_stated_shape_and_dtype(tmp_path):
    """_reconstruct alone (no __setstate__ after it): the array the file states, checked against its size."""
    import io

    from adlab.data.cifar import _BatchUnpickler

    array = _BatchUnpickler(io.BytesIO(), budget=6)._reconstruct(np.ndarray, (2, 3), np.dtype(np.uint8))
    assert array.shape == (2, 3) and array.dtype == np.uint8
    record = _read(tmp_path, {"data": Reduced(RECONSTRUCT, (np.ndarray, (2, 3072), b"B")), "pad": b"x" * 7000})
    assert record["data"].shape == (2, 3072) and record["data"].dtype == np.uint8


def test_an_array_of_another_type_is_refused(tmp_path):
    assert _refused(tmp_path, {"data": Reduced(RECONSTRUCT, (np.dtype, (1,), b"B"))}) == (
        "not a CIFAR python batch (an array of another type than numpy.ndarray)"
    )


@pytest.mark.parametrize(
    "state, reason",
    [
        ((1, (2,), np.dtype(np.uint8)), "an array's state is not NumPy's"),  # 3 items
        ((1, (2,), np.dtype(np.uint8), False, [1, 2]), "an array whose data is not raw bytes (an object array?)"),
    ],
)
def test_an_array_state_numpy_would_not_write_is_refused(tmp_path, state, reason):
    record = {"data": Reduced(RECONSTRUCT, (np.ndarray, (0,), b"B"), state)}
    assert _refused(tmp_path, record) == f"not a CIFAR python batch ({reason})"


def test_an_array_state_without_its_version_reads(tmp_path):
    """NumPy's __setstate__ takes (shape, dtype, fortran, bytes) as well as the versioned five items."""
    state = ((2, 3072), np.dtype(np.uint8), False, bytes(range(256)) * 24)
    record = _read(tmp_path, {"data": Reduced(RECONSTRUCT, (np.ndarray, (0,), b"B"), state)}, protocol=4)
    assert record["data"].shape == (2, 3072) and record["data"][0, 255] == 255


def test_array_headers_are_checked_exactly():
    """The size is every dimension times the item size, up to the file's own size; at most 32 dimensions."""
    from adlab.data.cifar import _check_size

    uint8, float64 = np.dtype(np.uint8), np.dtype(np.float64)
    _check_size((10,), uint8, 10)  # exactly the file's size
    _check_size((1,) * 32, uint8, 1)
    with pytest.raises(pickle.UnpicklingError) as refused:
        _check_size((1,) * 33, uint8, 100)
    assert str(refused.value) == "an array of shape " + str((1,) * 33)[:40]
    with pytest.raises(
        pickle.UnpicklingError,
        match=r"^an array of shape \(1000, 10\) and dtype uint8 "
        r"\(10,000 bytes\) in a file of 9,999 bytes$",
    ):
        _check_size((1000, 10), uint8, 9_999)
    with pytest.raises(pickle.UnpicklingError, match=r"\(80 bytes\) in a file of 79 bytes$"):
        _check_size((10,), float64, 79)
    with pytest.raises(pickle.UnpicklingError, match=r"^an array of dtype b'zz'$"):
        _check_size((1,), b"zz", 100)
    with pytest.raises(pickle.UnpicklingError, match=r"^an object array \(a CIFAR batch holds numbers\)$"):
        _check_size((1,), np.dtype(object), 100)


def test_codecs_encode_only_turns_text_into_bytes(tmp_path):
    """Protocol 2 writes bytes as _codecs.encode(text, 'latin1'): that, and nothing else of it."""
    import _codecs

    assert _read(tmp_path, {"b": Reduced(_codecs.encode, ("abc",))}) == {"b": b"abc"}  # utf-8 by default
    assert _read(tmp_path, {"b": Reduced(_codecs.encode, ("\u0100a", "latin1", "replace"))}) == {"b": b"?a"}
    assert _refused(tmp_path, {"b": Reduced(_codecs.encode, ("\u0100", "latin1"))}).startswith(
        "not a CIFAR python batch ('latin-1' codec can't encode character"
    )
    assert _refused(tmp_path, {"b": Reduced(_codecs.encode, ("abc", "rot13"))}) == (
        "not a CIFAR python batch (refusing to decode with 'rot13')"
    )
    assert _refused(tmp_path, {"b": Reduced(_codecs.encode, (b"abc", "latin1"))}) == (
        "not a CIFAR python batch (refusing to decode with 'latin1')"
    )
    assert _refused(tmp_path, {"b": Reduced(_codecs.encode, ("abc", "x" * 30))}) == (
        f"not a CIFAR python batch (refusing to decode with {'x' * 20!r})"
    )


def test_bytearrays_only_from_bytes(tmp_path):
    assert _read(tmp_path, {"b": Reduced(bytearray, ())}, protocol=4) == {"b": bytearray()}
    assert _refused(tmp_path, {"b": Reduced(bytearray, (10,))}, protocol=4) == (
        "not a CIFAR python batch (a bytearray that is not made from bytes)"
    )


def test_a_pickle_of_something_else_than_a_dict_is_named(tmp_path):
    assert _refused(tmp_path, [1, 2]) == "not a CIFAR python batch (holds a list, not a dict)"


def test_a_file_that_cannot_be_read_says_why(tmp_path):
    from adlab.data.cifar import _unpickle

    with pytest.raises(DataError, match=r"missing: cannot be read \(No such file or directory\)$"):
        _unpickle(tmp_path / "missing")

    class Unstattable(type(tmp_path)):
        def stat(self, **kwargs):
            raise OSError  # no strerror: its type names it

    with pytest.raises(DataError, match=r"batch: cannot be read \(OSError\)$"):
        _unpickle(Unstattable(tmp_path / "batch"))


def test_the_size_limit_is_exact_and_named(tmp_path, monkeypatch):
    from adlab.data import cifar

    path = craft(tmp_path, "batch", {"labels": [1]})
    monkeypatch.setattr(cifar, "MAX_FILE_BYTES", path.stat().st_size)  # a file of exactly the limit reads
    assert cifar._unpickle(path) == {"labels": [1]}
    monkeypatch.setattr(cifar, "MAX_FILE_BYTES", 5 << 20)
    with open(path, "r+b") as handle:
        handle.truncate((5 << 20) + 1)
    with pytest.raises(
        DataError,
        match=r"batch: 5,242,881 bytes, larger than any CIFAR python batch "
        r"\(at most 5 MiB\)$",
    ):
        cifar._unpickle(path)


def test_cifar100_fine_labels_are_read_and_labels_are_int64(tmp_path):
    from adlab.data.cifar import _read_batch

    path = craft(tmp_path, "batch", {"data": np.zeros((2, 3072), np.uint8), "fine_labels": [3, 4]})
    images, labels = _read_batch(path)
    assert images.shape == (2, 3, 32, 32) and labels.tolist() == [3, 4] and labels.dtype == torch.int64
    assert (
        load_cifar10(write_cifar10(tmp_path / "c", per_batch=10).parent, download=False, verify=False)[1].dtype
        == torch.int64
    )
