"""`model.weights: imagenet`: torchvision's file from torch.hub's cache (read with weights_only, checked
against the sha256 prefix in its name, said and recorded), a broken cached file or no network as one
line. No test downloads: the cache holds files the tests save themselves."""

import hashlib
import json
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from tests.conftest import fast_config

import adlab
from adlab.config import ModelConfig
from adlab.errors import CheckpointError
from adlab.models.factory import build_model
from adlab.models.zoo import imagenet_cache_path, loaded_imagenet_weights

URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """An empty torch.hub cache under tmp_path, and no network: a download attempt is a test failure
    unless the test replaces `torch.hub.download_url_to_file` itself."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # in case anything called torch.hub.set_dir

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    path = imagenet_cache_path(weights)
    assert weights.url == URL and path == tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    return path


def resnet18_file(path, **changes):
    """A real resnet18 state dict (random weights, some tensors set to known values) at `path`."""
    state = torchvision.models.resnet18().state_dict()
    for name, value in changes.items():
        state[name] = torch.full_like(state[name], value)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def imagenet_resnet18():
    return build_model(ModelConfig(name="resnet18", weights="imagenet"), (3, 32, 32), 4)


def test_a_cached_file_is_read_with_weights_only_and_its_tensors_loaded(hub):
    resnet18_file(hub, **{"layer1.0.conv1.weight": 0.25, "bn1.running_mean": -1.5})
    net = imagenet_resnet18().net
    assert torch.all(net.layer1[0].conv1.weight == 0.25) and torch.all(net.bn1.running_mean == -1.5)
    assert net.fc.out_features == 4  # the new head


def test_a_run_says_and_records_which_file_it_loaded(hub, tmp_path, capsys):
    sha256 = resnet18_file(hub)
    assert not sha256.startswith("f37072fd")  # not torchvision's own file (that would take 2**32 tries)
    config = fast_config(
        data={"classes": [0, 1, 2], "train_per_class": 20},
        model={"name": "resnet18", "weights": "imagenet"},
        train={"epochs": 1, "batch_size": 64},
    )
    run = adlab.train(config, out=tmp_path / "run", verbose=True)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("weights: ImageNet")]
    assert len(lines) == 1, lines
    assert (
        f"weights: ImageNet (torchvision ResNet18_Weights.IMAGENET1K_V1) from {hub}, sha256 {sha256[:8]}…" in lines[0]
    )
    assert "not torchvision's own file" in lines[0] and "f37072fd" in lines[0]
    recorded = json.loads((run.path / "env.json").read_text())["weights"]
    assert recorded == {
        "source": "imagenet",
        "weights": "ResNet18_Weights.IMAGENET1K_V1",
        "url": URL,
        "file": str(hub),
        "sha256": sha256,
        "matches_torchvision": False,
        "downloaded": False,
    }


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"\x00garbage bytes, not a torch file" * 8, "refused by weights_only"),
        (None, "RuntimeError: PytorchStreamReader failed reading zip archive: failed finding central directory)"),
    ],
)
def test_a_broken_cached_file_is_one_line_naming_it_as_corrupt(hub, content, reason):
    if content is None:  # a download cut short
        resnet18_file(hub)
        content = hub.read_bytes()[:4000]
    else:
        hub.parent.mkdir(parents=True)
    hub.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        imagenet_resnet18()
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{hub}: not a readable state dict (")
    assert message.endswith(f"delete it and run again online, or replace it with torchvision's file from {URL}")
    assert reason in message
    assert hub.read_bytes() == content  # left for the user to look at, not deleted or overwritten


def test_another_architectures_state_dict_is_corrupt_too(hub):
    hub.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet34().state_dict(), hub)
    with pytest.raises(
        CheckpointError,
        match=r"resnet18-f37072fd.pth: not a readable state dict \(not resnet18's "
        r"tensors: .*Unexpected key\(s\)",
    ):
        imagenet_resnet18()
    torch.save({"model": [1, 2, 3]}, hub)
    with pytest.raises(CheckpointError, match=r"not a readable state dict \(a dict, not a mapping of names to tensors"):
        imagenet_resnet18()


def test_offline_without_the_file_is_one_line_naming_the_url_and_where_to_put_it(hub):
    with pytest.raises(CheckpointError) as err:
        imagenet_resnet18()
    message = str(err.value)
    assert message == (
        f"ImageNet weights for resnet18 could not be downloaded from {URL} (<urlopen error network is "
        f"unreachable>); without internet, put that file at {hub}"
    )
    assert not hub.exists()


def test_a_download_is_checked_against_the_prefix_and_read_with_weights_only(hub, monkeypatch):
    calls = []

    def download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, hash_prefix))
        resnet18_file(Path(dst), **{"fc.bias": 3.0})

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    built = imagenet_resnet18()
    assert calls == [(URL, "f37072fd")]  # torch.hub checks the sha256 prefix of what it downloads
    record = loaded_imagenet_weights("resnet18")
    assert record.downloaded and record.file == str(hub)
    assert record.sha256 == hashlib.sha256(hub.read_bytes()).hexdigest()
    assert "(downloaded now)" in record.line()
    assert built.net.fc.out_features == 4

    def mismatch(url, dst, hash_prefix=None, progress=True):
        raise RuntimeError(f'invalid hash value (expected "{hash_prefix}", got "0123abcd")')

    hub.unlink()
    monkeypatch.setattr(torch.hub, "download_url_to_file", mismatch)
    with pytest.raises(
        CheckpointError,
        match=r"does not match the sha256 prefix in its name \(invalid hash value "
        r"\(expected \"f37072fd\"",
    ):
        imagenet_resnet18()
