"""adlab's atomic checkpoint writer: what interrupted torch.save is what the caller sees."""

import errno

import pytest
import torch

from adlab.tasks.lightning import callbacks


class Failing:
    """An open file whose writes raise `exc` once `after` bytes are written."""

    def __init__(self, file, exc, after=64):
        self.file, self.exc, self.after, self.written = file, exc, after, 0

    def write(self, data):
        if self.written + len(data) > self.after:
            raise self.exc
        self.written += len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.file.close()


@pytest.mark.parametrize("exc, expected", [(KeyboardInterrupt(), KeyboardInterrupt),
                                           (OSError(errno.ENOSPC, "No space left on device"), OSError)])
def test_an_interrupted_save_says_why_and_leaves_no_checkpoint(tmp_path, monkeypatch, exc, expected):
    real_open = open

    def failing_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        return Failing(handle, exc) if "w" in mode else handle

    monkeypatch.setattr(callbacks, "open", failing_open, raising=False)
    target = tmp_path / "last.ckpt"
    with pytest.raises(expected) as info:  # torch's own "unexpected pos" RuntimeError would hide the cause
        callbacks.AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(1000)}, target)
    if expected is OSError:
        assert info.value.errno == errno.ENOSPC and str(target) in str(info.value)
    assert not target.exists() and list(tmp_path.iterdir()) == []
