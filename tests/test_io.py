import os
import stat

import pytest

from adlab import io


def test_atomic_write_replaces_whole_files_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "metrics.json"
    io.write_json(path, {"a": [1, 2, 3], "b": 0.5})
    assert io.read_json(path) == {"a": [1, 2, 3], "b": 0.5}
    assert '"a": [1, 2, 3]' in path.read_text()  # number lists stay on one line
    with pytest.raises(RuntimeError):
        with io.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert io.read_json(path)["b"] == 0.5  # the old file is untouched
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_atomic_files_get_normal_permissions(tmp_path):
    path = tmp_path / "x.txt"
    io.write_text(path, "hello")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
