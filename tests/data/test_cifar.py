"""CIFAR-10 from its python batches: originals checked by MD5, faithful copies with data.verify false,
and no code run from a crafted pickle."""

import pickle
import tarfile

import numpy as np
import pytest
from standins.cifar import NAMES, write_cifar10

from adlab.data.cifar import load_cifar10
from adlab.errors import DataError


def test_a_faithful_copy_is_named_as_not_original_then_read_with_verify_off(tmp_path):
    folder = write_cifar10(tmp_path, per_batch=20)
    with pytest.raises(DataError, match=r"data_batch_1: not the original CIFAR-10 file \(MD5 [0-9a-f]{32}, expected "
                                        r"c99cafc1.*data.verify: false"):
        load_cifar10(tmp_path, download=False)
    train_x, train_y, test_x, test_y, names, where = load_cifar10(tmp_path, download=False, verify=False)
    assert where == folder and names == NAMES
    assert train_x.shape == (100, 3, 32, 32) and test_x.shape == (20, 3, 32, 32) and train_x.dtype.is_floating_point is False
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
        pickle.dumps({"data": np.zeros((2, 10), np.uint8), "labels": [0, 1]}))
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
