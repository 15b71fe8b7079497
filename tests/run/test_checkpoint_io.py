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


@pytest.mark.parametrize(
    "exc, expected",
    [(KeyboardInterrupt(), KeyboardInterrupt), (OSError(errno.ENOSPC, "No space left on device"), OSError)],
)
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


def test_a_ctrl_c_inside_torch_save_is_a_ctrl_c_not_its_runtime_error(tmp_path, monkeypatch):
    """Seen on a busy machine: the Ctrl-C landed in torch.save's own Python code, not in a write, and the
    zip writer's exit then raised "unexpected pos" while handling it (the run ended with a traceback)."""

    def interrupted_save(obj, f):
        f.write(b"partial")
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 188864 vs 155984")  # noqa: B904

    monkeypatch.setattr(callbacks.torch, "save", interrupted_save)
    target = tmp_path / "last.ckpt"
    with pytest.raises(KeyboardInterrupt):
        callbacks.AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(10)}, target)
    assert list(tmp_path.iterdir()) == []


def test_a_plain_torch_save_error_is_not_mistaken_for_a_ctrl_c(tmp_path, monkeypatch):
    def failing_save(obj, f):
        raise RuntimeError("something else")

    monkeypatch.setattr(callbacks.torch, "save", failing_save)
    with pytest.raises(RuntimeError, match="something else"):
        callbacks.AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(10)}, tmp_path / "last.ckpt")
