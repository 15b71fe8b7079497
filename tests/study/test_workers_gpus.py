"""Which GPUs `--workers N` hands out, read without importing torch in the parent."""

from adlab.study.runner import _visible_gpus


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert _visible_gpus() == ["2", "3"]  # worker 1 gets physical GPU 2, not 0


def test_a_negative_entry_hides_the_rest(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,-1,3")
    assert _visible_gpus() == ["1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert _visible_gpus() == []


def test_without_the_variable_the_device_files_count(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr("glob.glob", lambda pattern: ["/dev/nvidia0", "/dev/nvidia1"])
    assert _visible_gpus() == ["0", "1"]
