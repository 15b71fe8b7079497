import pytest
import torch

from adlab.config import ModelConfig
from adlab.errors import CheckpointError, ConfigError
from adlab.models.factory import build_model, freeze_all_but
from adlab.settings.cnn import CnnConfig


def test_cnn_shapes_and_pooling_stops_at_one_pixel():
    built = build_model(ModelConfig(cnn=CnnConfig(conv_channels=[8, 16, 32, 64, 64])), (1, 8, 8), 10)
    out = built.net(torch.zeros(4, 1, 8, 8))
    assert out.shape == (4, 10)
    assert built.head == "classifier"
    pools = [m for m in built.net.features if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == 3  # 8 -> 4 -> 2 -> 1, then no more pooling


def test_pool_early_pools_each_block_before_its_last_norm():
    cfg = ModelConfig(cnn=CnnConfig(conv_channels=[8, 16], convs_per_block=[1, 2], pool_early=True, hidden=[]))
    net = build_model(cfg, (1, 8, 8), 3).net
    kinds = [type(m).__name__ for m in net.features]
    assert kinds == [
        "Conv2d",
        "MaxPool2d",
        "BatchNorm2d",
        "ReLU",
        "Conv2d",
        "BatchNorm2d",
        "ReLU",
        "Conv2d",
        "MaxPool2d",
        "BatchNorm2d",
        "ReLU",
    ]
    assert net(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
    # the same parameters as the usual order: only where the pooling happens changes
    usual = build_model(
        cfg.model_copy(update={"cnn": cfg.cnn.model_copy(update={"pool_early": False})}), (1, 8, 8), 3
    ).net
    assert [p.shape for p in net.parameters()] == [p.shape for p in usual.parameters()]


@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh"])
def test_cnn_options(activation):
    cfg = ModelConfig(
        cnn=CnnConfig(activation=activation, batch_norm=False, conv_dropout=0.1, hidden=[32, 16], global_pool=True)
    )
    net = build_model(cfg, (3, 16, 16), 5).net
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert net(torch.zeros(2, 3, 16, 16)).shape == (2, 5)


@pytest.mark.parametrize(
    "name,head", [("resnet18", "fc"), ("mobilenet_v2", "classifier.1"), ("alexnet", "classifier.6")]
)
def test_torchvision_nets_adapted_to_channels_and_classes(name, head):
    size = 64 if name == "alexnet" else 32
    built = build_model(ModelConfig(name=name), (1, size, size), 7)
    assert built.head == head
    first_conv = next(m for m in built.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 1
    assert built.net.get_submodule(head).out_features == 7
    assert built.net.eval()(torch.zeros(2, 1, size, size)).shape == (2, 7)


def test_unknown_model_suggests_close_names():
    with pytest.raises(ConfigError, match=r"resnet18"):
        build_model(ModelConfig(name="resnet81"), (1, 28, 28), 10)


def test_too_small_input_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"alexnet cannot take 1x8x8 images.*data.image_size"):
        build_model(ModelConfig(name="alexnet"), (1, 8, 8), 10)


def test_no_imagenet_weights_for_cnn():
    with pytest.raises(ConfigError, match="no ImageNet weights"):
        build_model(ModelConfig(weights="imagenet"), (1, 8, 8), 10)


def test_imagenet_download_failure_is_a_clear_error(monkeypatch, tmp_path):
    """Offline: the error names the URL and where to put the file. Never a fake download."""
    import torchvision

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(self, *args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(CheckpointError) as err:
        build_model(ModelConfig(name="resnet18", weights="imagenet"), (3, 32, 32), 10)
    assert "download.pytorch.org" in str(err.value) and str(tmp_path) in str(err.value)


def test_checkpoint_loading_matches_by_name_and_shape(tmp_path):
    source = build_model(ModelConfig(), (1, 8, 8), 10).net
    path = tmp_path / "plain.pt"
    torch.save(source.state_dict(), path)
    built = build_model(ModelConfig(weights=str(path)), (1, 8, 8), 5)
    report = built.load_report
    assert {"classifier.2.weight", "classifier.2.bias", "classifier.5.weight"} <= set(report.new)
    assert "features.0.weight" in report.loaded
    assert not any(name.startswith("classifier") for name in report.loaded)
    assert torch.equal(built.net.features[0].weight, source.features[0].weight)
    assert not torch.equal(built.net.classifier[2].weight, source.classifier[2].weight)  # head left new


def test_load_head_keeps_a_matching_head(tmp_path):
    source = build_model(ModelConfig(), (1, 8, 8), 10).net
    path = tmp_path / "plain.pt"
    torch.save(source.state_dict(), path)
    built = build_model(ModelConfig(weights=str(path), load_head=True), (1, 8, 8), 10)
    assert torch.equal(built.net.classifier[5].weight, source.classifier[5].weight)
    assert built.load_report.new == []


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save(build_model(ModelConfig(name="resnet18"), (1, 32, 32), 10).net.state_dict(), path)
    with pytest.raises(CheckpointError, match="no tensor of the checkpoint fits"):
        build_model(ModelConfig(weights=str(path)), (1, 8, 8), 10)


def test_freeze_leaves_only_the_head_trainable():
    net = build_model(ModelConfig(name="resnet18"), (1, 32, 32), 3).net
    freeze_all_but(net, "fc")
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
