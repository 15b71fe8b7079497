"""`model.name: timm/<name>`: timm's classifiers adapted to channels and classes through create_model, the head
from get_classifier() (so freeze works), and `model.weights: imagenet` read OFFLINE from the Hugging Face cache
layout with its file and sha256 recorded. No test touches the network: the cache holds stand-in files the tests
write themselves (timm's tiny test_resnet: its pretrained tag is test_resnet.r160_in1k, mean and std 0.5)."""

import hashlib
import json
import os
import shutil
import sys

import pytest
import torch
from tests.conftest import fast_config

import adlab
from adlab.config import ModelConfig
from adlab.errors import CheckpointError, ConfigError
from adlab.models.checkpoints import read_checkpoint
from adlab.models.factory import build_model, weights_input
from adlab.models.zoo import loaded_imagenet_weights

pytestmark = pytest.mark.requires("timm")  # skipped without adlab[timm]; with CI=true a failure
try:
    import huggingface_hub
    import timm
    from safetensors.torch import save_file  # timm's dependency
except ImportError:
    timm = huggingface_hub = save_file = None

NAME = "timm/test_resnet"
REPO = "models--timm--test_resnet.r160_in1k"  # the cache folder of its Hub repository
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """An empty Hugging Face cache under tmp_path, HF_HUB_OFFLINE=1, and any Hub request a test failure
    unless the test replaces it itself."""
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def network(*args, **kwargs):
        raise AssertionError(f"a Hub request: {args}")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", network)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", network)
    return cache


def stand_in(cache, blob_sha256=None, **values):
    """test_resnet's pretrained state dict (1000 classes, 3 channels; random, some tensors set to `values`)
    where huggingface_hub keeps it: refs/main names the snapshot, whose model.safetensors links to
    blobs/<sha256> (a wrong `blob_sha256`: an edited copy). Returns (path, sha256)."""
    state = timm.create_model("test_resnet").state_dict()
    for key, value in values.items():
        state[key] = torch.full_like(state[key], value)
    folder = cache / REPO
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(COMMIT)
    (folder / "blobs").mkdir()
    tmp = folder / "blobs" / "incoming"
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    sha256 = hashlib.sha256(tmp.read_bytes()).hexdigest()
    blob = tmp.rename(folder / "blobs" / (blob_sha256 or sha256))
    path = folder / "snapshots" / COMMIT / "model.safetensors"
    path.parent.mkdir(parents=True)
    path.symlink_to(os.path.relpath(blob, path.parent))
    return path, sha256


def imagenet(shape=(3, 32, 32), classes=10):
    return build_model(ModelConfig(name=NAME, weights="imagenet"), shape, classes)


@pytest.mark.parametrize(
    "name, head", [("timm/test_resnet", "fc"), ("timm/test_convnext", "head.fc"), ("timm/test_vit", "head")]
)
def test_a_timm_net_takes_the_images_channels_and_classes(name, head):
    built = build_model(ModelConfig(name=name), (1, 32, 32), 10)
    assert built.head == head
    assert built.net.get_submodule(head) is built.net.get_classifier()
    first_conv = next(m for m in built.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 1
    assert built.net.get_classifier().out_features == 10
    assert built.net.eval()(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def test_freeze_leaves_only_the_head_trainable():
    built = build_model(ModelConfig(name="timm/test_convnext", freeze=True), (1, 32, 32), 10)
    trainable = [name for name, p in built.net.named_parameters() if p.requires_grad]
    assert trainable == ["head.fc.weight", "head.fc.bias"]
    assert len(list(built.net.parameters())) > 10


def test_unknown_names_suggest_close_ones():
    with pytest.raises(ConfigError, match=r"unknown timm model 'timm/resnet81' \(did you mean timm/resnet18"):
        build_model(ModelConfig(name="timm/resnet81"), (1, 32, 32), 10)
    with pytest.raises(
        ConfigError,
        match=r"unknown timm tag 'timm/test_resnet.in1k' \(timm/test_resnet has the "
        r"pretrained tags timm/test_resnet.r160_in1k\)",
    ):
        build_model(ModelConfig(name="timm/test_resnet.in1k"), (1, 32, 32), 10)


def test_without_timm_one_line_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError
    with pytest.raises(ConfigError) as err:
        build_model(ModelConfig(name=NAME), (1, 32, 32), 10)
    assert str(err.value) == "model.name: timm models need timm: pip install 'adlab[timm]'"


def test_the_weights_bring_their_normalisation_and_three_channels():
    assert weights_input(ModelConfig(name=NAME, weights="imagenet")) == (3, ([0.5] * 3, [0.5] * 3))
    channels, (mean, std) = weights_input(ModelConfig(name="timm/resnet18", weights="imagenet"))
    assert (
        channels == 3 and mean == pytest.approx([0.485, 0.456, 0.406]) and std == pytest.approx([0.229, 0.224, 0.225])
    )
    assert weights_input(ModelConfig(name=NAME)) == (None, None)


def test_a_cached_file_is_loaded_and_recorded(hub):
    path, sha256 = stand_in(hub, **{"layer1.0.conv1.weight": 0.25, "bn1.running_mean": -1.5, "fc.weight": 7.0})
    net = imagenet().net
    assert torch.all(net.layer1[0].conv1.weight == 0.25) and torch.all(net.bn1.running_mean == -1.5)
    assert net.fc.out_features == 10 and not torch.any(net.fc.weight == 7.0)  # a new head
    record = loaded_imagenet_weights(NAME)
    assert record.to_dict() == {
        "source": "timm test_resnet.r160_in1k",
        "weights": "test_resnet.r160_in1k",
        "url": "https://huggingface.co/timm/test_resnet.r160_in1k",
        "revision": COMMIT,
        "file": str(path),
        "sha256": sha256,
        "matches_hub": True,
        "downloaded": False,
    }
    assert record.line() == (
        f"weights: timm test_resnet.r160_in1k (https://huggingface.co/timm/test_resnet.r160_in1k)"
        f" from {path}, sha256 {sha256[:12]}…"
    )


def test_timm_adapts_the_loaded_first_convolution_to_grey_images(hub):
    stand_in(hub, **{"conv1.0.weight": 0.5})
    net = imagenet(shape=(1, 32, 32)).net
    assert net.conv1[0].in_channels == 1 and torch.allclose(net.conv1[0].weight, torch.tensor(1.5))  # summed


def test_an_edited_copy_is_said_to_be_one(hub):
    stand_in(hub, blob_sha256="f" * 64)
    imagenet()
    record = loaded_imagenet_weights(NAME)
    assert record.to_dict()["matches_hub"] is False and "not the Hub's file" in record.line()


def test_offline_without_the_file_is_one_line_naming_it_and_where_it_goes(hub):
    with pytest.raises(CheckpointError) as err:
        imagenet()
    message = str(err.value)
    assert "\n" not in message
    assert message == (
        f"ImageNet weights for {NAME} (timm test_resnet.r160_in1k): model.safetensors of https://huggingface.co/timm/"
        f"test_resnet.r160_in1k is not in the Hugging Face cache ({hub}) and HF_HUB_OFFLINE is set, so it was not "
        f"downloaded; put it at {hub / REPO}/snapshots/<commit>/model.safetensors, with <commit> written in "
        f"{hub / REPO}/refs/main (as `hf download timm/test_resnet.r160_in1k model.safetensors` does online), or "
        f"unset HF_HUB_OFFLINE"
    )
    assert not hub.exists()
    (hub / REPO / "refs").mkdir(parents=True)  # a snapshot known, its file missing: the exact path
    (hub / REPO / "refs" / "main").write_text(COMMIT)
    with pytest.raises(CheckpointError, match=f"put it at {hub / REPO}/snapshots/{COMMIT}/model.safetensors "):
        imagenet()


def test_no_network_is_one_line_after_one_quick_request(hub, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    probes = []

    def unreachable(url, timeout=None, **kwargs):
        probes.append((url, timeout))
        raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", unreachable)
    with pytest.raises(CheckpointError) as err:
        imagenet()
    url = "https://huggingface.co/timm/test_resnet.r160_in1k/resolve/main/model.safetensors"
    assert probes == [(url, 10)]  # one HEAD, no retries: hf_hub_download (not called) would retry for minutes
    assert str(err.value).startswith(
        f"ImageNet weights for {NAME} (timm test_resnet.r160_in1k) could not be "
        f"downloaded from {url} (ConnectionError: [Errno -2] Name or service not known);"
        f" without internet, put model.safetensors at {hub / REPO}/snapshots/"
    )


def test_online_huggingface_hub_downloads_it_into_the_cache(hub, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    calls = []

    def download(repo, filename, revision=None, cache_dir=None, library_name=None, **kwargs):
        calls.append((repo, filename, revision, cache_dir, library_name))
        return str(stand_in(hub, **{"fc.bias": 3.0})[0])

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda url, **kwargs: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    imagenet()
    assert calls == [("timm/test_resnet.r160_in1k", "model.safetensors", "main", hub, "timm")]
    record = loaded_imagenet_weights(NAME)
    assert record.to_dict()["downloaded"] is True and record.line().endswith("(downloaded now)")


def test_a_broken_cached_file_is_one_line_naming_it(hub):
    path, _ = stand_in(hub)
    path.resolve().write_bytes(b"\x00 not a safetensors file" * 8)
    with pytest.raises(CheckpointError) as err:
        imagenet()
    assert "\n" not in str(err.value)
    assert str(err.value).startswith(f"{path}: not a readable state dict (")
    assert str(err.value).endswith(
        "delete it and run again online, or replace it with timm's file from "
        "https://huggingface.co/timm/test_resnet.r160_in1k"
    )
    save_file(timm.create_model("test_efficientnet").state_dict(), str(path.resolve()))  # another network's
    with pytest.raises(
        CheckpointError,
        match=r"not a readable state dict \(not test_resnet.r160_in1k's tensors: "
        r"Error\(s\) in loading state_dict for ResNet: Missing key",
    ):
        imagenet()


# --- end to end: adlab's training on digits in the three regimes ------------------------------------------------


def _run(config_model, out, capsys=None):
    config = fast_config(
        model={"name": NAME, **config_model},
        data={"classes": [0, 1, 2], "train_per_class": 20},
        train={"epochs": 1, "batch_size": 32},
    )
    run = adlab.train(config, out=out, verbose=capsys is not None)
    state, _ = read_checkpoint(run.path / "checkpoints" / "best.ckpt")
    return run, state


def test_three_regimes_on_digits(hub, tmp_path, capsys):
    path, sha256 = stand_in(hub)
    before = {k: v for k, v in timm.models.load_state_dict(str(path)).items() if not k.startswith("fc.")}

    run, scratch = _run({}, tmp_path / "scratch")
    assert json.loads((run.path / "env.json").read_text())["weights"] is None
    assert scratch["conv1.0.weight"].shape[1] == 1  # digits' one channel: nothing imposed three
    assert scratch["fc.weight"].shape[0] == 3

    capsys.readouterr()
    run, frozen = _run({"weights": "imagenet", "freeze": True}, tmp_path / "frozen", capsys)
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("weights: timm")]
    assert said == [
        f"weights: timm test_resnet.r160_in1k (https://huggingface.co/timm/test_resnet.r160_in1k) from "
        f"{path}, sha256 {sha256[:12]}…"
    ]
    recorded = json.loads((run.path / "env.json").read_text())["weights"]
    assert recorded["source"] == "timm test_resnet.r160_in1k" and recorded["sha256"] == sha256
    assert recorded["file"] == str(path)
    assert set(frozen) - {"fc.weight", "fc.bias"} == set(before)
    changed = [k for k, v in before.items() if not torch.equal(frozen[k], v)]
    assert not changed  # weights and batch-norm statistics: the frozen backbone is bit-identical
    assert run.metrics["trainable_parameters"] == 3 * frozen["fc.weight"].shape[1] + 3

    run, tuned = _run({"weights": "imagenet"}, tmp_path / "tuned")
    convs = [k for k, v in before.items() if v.dim() == 4]
    assert convs and all(not torch.equal(tuned[k], before[k]) for k in convs)
    assert run.metrics["trainable_parameters"] == run.metrics["parameters"]

    shutil.rmtree(hub)  # the trained run alone rebuilds its network: evaluate reproduces its numbers
    metrics = adlab.evaluate(run.path, out=tmp_path / "eval", verbose=False)
    assert metrics["confusion_matrix"] == run.metrics["confusion_matrix"]
    assert metrics["accuracy"] == pytest.approx(run.metrics["accuracy"], abs=1e-9)
