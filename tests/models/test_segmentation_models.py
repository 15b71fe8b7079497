"""The segmentation networks (models/segmentation.py): the U-Net at any size, torchvision's nets from scratch,
on an ImageNet backbone and from their COCO-with-VOC-labels weights, freezing, and the provenance of the files
read. No test downloads: torch.hub's cache holds stand-in files the tests save themselves."""

import hashlib
import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from adlab.errors import CheckpointError, ConfigError
from adlab.models.segmentation import (
    SEGMENTATION_NAMES,
    SEGMENTATION_NETS,
    UNet,
    build_segmenter,
    freeze_backbone,
    segmentation_normalization,
    segmenter_head,
)
from adlab.models.zoo import imagenet_cache_path
from adlab.settings.unet import UnetConfig

MOBILENET_URL = "https://download.pytorch.org/models/mobilenet_v3_large-8738ca79.pth"
LRASPP_URL = "https://download.pytorch.org/models/lraspp_mobilenet_v3_large-d234d4ea.pth"
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """An empty torch.hub cache under tmp_path, and no network: a download attempt fails as it would offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # in case anything called torch.hub.set_dir

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "torch" / "hub" / "checkpoints"


def save(state, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def logits(net, size=(64, 64), channels=3):
    net.eval()  # batch 1: DeepLab's image pooling batch-norms one value per channel
    with torch.no_grad():
        return net(torch.rand(1, channels, *size))


# --- the U-Net -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("upsample", ["bilinear", "transposed"])
@pytest.mark.parametrize("channels, size", [(3, (37, 53)), (1, (32, 32)), (3, (1, 3))])
def test_the_unet_gives_logits_at_the_input_size_whatever_the_size(upsample, channels, size):
    out = logits(UNet(channels, 4, upsample=upsample), size, channels)
    assert out.shape == (1, 4, *size)


def test_the_unet_trains_on_a_batch():
    net = UNet(1, 3, channels=(8, 16))
    out = net(torch.rand(2, 1, 33, 32))
    nn.functional.cross_entropy(out, torch.randint(0, 3, (2, 33, 32))).backward()
    assert out.shape == (2, 3, 33, 32)
    assert all(p.grad is not None for p in net.parameters())


def test_model_unet_settings_reach_the_network_and_null_takes_its_default():
    cfg = UnetConfig(channels=[8, 16, 24], activation="gelu", batch_norm=False, dropout=0.2, upsample="transposed")
    built = build_segmenter("unet", 2, 5, None, cfg)
    net = built.net
    assert isinstance(net, UNet) and built.head == "head" and built.weights is None and built.line is None
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in net.down[0] if isinstance(c, nn.Conv2d)] == [8, 8]
    assert convs[0].in_channels == 2 and net.head.out_channels == 5
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.ReLU)) for m in net.modules())
    assert any(isinstance(m, nn.GELU) for m in net.modules())
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in net.modules()) == 2
    assert isinstance(net.dropout, nn.Dropout2d) and net.dropout.p == 0.2

    default = build_segmenter("unet", 3, 2, None, None).net
    assert [block[0].out_channels for block in default.down] == [16, 32, 64, 128]
    assert isinstance(default.dropout, nn.Identity)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in default.modules())


@pytest.mark.parametrize(
    "weights, said", [("imagenet", "ImageNet"), ("ImageNet", "ImageNet"), ("coco_voc", "COCO-with-VOC-labels")]
)
def test_the_unet_has_no_pretrained_weights(weights, said):
    with pytest.raises(ConfigError) as err:
        build_segmenter("unet", 3, 2, weights, None)
    assert str(err.value).startswith(f"model.weights: there are no {said} weights for 'unet'; use a torchvision")
    with pytest.raises(ConfigError, match="there are no"):
        segmentation_normalization("unet", weights)


def test_an_unknown_name_is_one_line_with_close_matches():
    with pytest.raises(ConfigError) as err:
        build_segmenter("lraspp_mobilenet", 3, 2, None, None)
    assert str(err.value) == (
        "model.name: unknown segmentation model 'lraspp_mobilenet' (did you mean lraspp_mobilenet_v3_large? "
        "valid: unet, lraspp_mobilenet_v3_large, deeplabv3_mobilenet_v3_large, fcn_resnet50)"
    )
    assert SEGMENTATION_NAMES == ("unet", "lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "fcn_resnet50")


# --- torchvision's nets --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SEGMENTATION_NETS))
def test_each_torchvision_net_from_scratch_gives_a_plain_logits_tensor_without_any_file(hub, name):
    built = build_segmenter(name, 3, 4, None, None)
    out = logits(built.net)
    assert type(out) is torch.Tensor and out.shape == (1, 4, 64, 64)
    assert getattr(built.net.net, "aux_classifier", None) is None
    assert built.head == segmenter_head(name) == "net.classifier" and built.weights is None
    assert not hub.exists()  # nothing looked for, nothing downloaded


def test_a_checkpoint_path_is_left_to_the_caller(hub, tmp_path):
    built = build_segmenter("lraspp_mobilenet_v3_large", 3, 4, str(tmp_path / "run" / "best.ckpt"), None)
    assert built.weights is None and built.line is None
    assert built.net.net.classifier.high_classifier.out_channels == 4


def test_normalization_is_imagenets_for_pretrained_weights_only():
    for weights in ("imagenet", "coco_voc"):
        assert segmentation_normalization("lraspp_mobilenet_v3_large", weights) == (IMAGENET_MEAN, IMAGENET_STD)
    assert segmentation_normalization("fcn_resnet50", "imagenet") == (IMAGENET_MEAN, IMAGENET_STD)
    assert segmentation_normalization("fcn_resnet50", None) is None
    assert segmentation_normalization("fcn_resnet50", "runs/seg/best.ckpt") is None
    assert segmentation_normalization("unet", None) is None


def mobilenet_file(hub, **changes):
    """A real mobilenet_v3_large state dict (random weights, some tensors set to known values) where torch.hub
    keeps torchvision's IMAGENET1K_V1 file (the backbone weights torchvision's segmentation builders use)."""
    weights = torchvision.models.MobileNet_V3_Large_Weights.IMAGENET1K_V1
    path = imagenet_cache_path(weights)
    assert weights.url == MOBILENET_URL and path == hub / "mobilenet_v3_large-8738ca79.pth"
    state = torchvision.models.mobilenet_v3_large().state_dict()
    for name, value in changes.items():
        state[name] = torch.full_like(state[name], value) if isinstance(value, float) else value
    return path, save(state, path)


@pytest.mark.parametrize("name", ["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"])
def test_imagenet_loads_the_cached_backbone_file_and_records_it(hub, name):
    path, sha256 = mobilenet_file(hub, **{"features.4.block.0.0.weight": 0.25, "features.0.1.running_mean": -1.5})
    built = build_segmenter(name, 3, 4, "imagenet", None)
    backbone = built.net.net.backbone
    assert torch.all(backbone["4"].block[0][0].weight == 0.25) and torch.all(backbone["0"][1].running_mean == -1.5)
    assert logits(built.net).shape == (1, 4, 64, 64)
    assert built.weights == {
        "source": "imagenet",
        "weights": "MobileNet_V3_Large_Weights.IMAGENET1K_V1",
        "url": MOBILENET_URL,
        "file": str(path),
        "sha256": sha256,
        "matches_torchvision": False,
        "downloaded": False,
        "new": ["net.classifier"],
    }
    assert built.line.startswith(
        f"weights: ImageNet (torchvision MobileNet_V3_Large_Weights.IMAGENET1K_V1) from {path}, sha256 {sha256[:8]}…"
    )
    assert built.line.endswith("; segmentation head new") and "not torchvision's own file" in built.line


def test_imagenet_weights_for_one_input_channel_sum_the_first_filters(hub):
    first = torch.randn(16, 3, 3, 3)
    mobilenet_file(hub, **{"features.0.0.weight": first})
    conv = build_segmenter("lraspp_mobilenet_v3_large", 1, 2, "imagenet", None).net.net.backbone["0"][0]
    assert conv.in_channels == 1 and torch.allclose(conv.weight, first.sum(dim=1, keepdim=True))


def test_offline_without_the_backbone_file_is_one_line_naming_it(hub):
    with pytest.raises(CheckpointError) as err:
        build_segmenter("lraspp_mobilenet_v3_large", 3, 4, "imagenet", None)
    path = hub / "mobilenet_v3_large-8738ca79.pth"
    assert str(err.value) == (
        f"ImageNet weights for lraspp_mobilenet_v3_large's backbone (mobilenet_v3_large) could not be downloaded "
        f"from {MOBILENET_URL} (<urlopen error network is unreachable>); without internet, put that file at {path}"
    )
    assert not path.exists()


def test_a_cached_file_of_another_network_is_one_line_naming_it(hub):
    path = hub / "mobilenet_v3_large-8738ca79.pth"
    save({"conv.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError) as err:
        build_segmenter("deeplabv3_mobilenet_v3_large", 3, 4, "imagenet", None)
    assert "\n" not in str(err.value)
    assert str(err.value).startswith(f"{path}: not a readable state dict (not mobilenet_v3_large's tensors: ")


def test_freeze_leaves_only_the_segmentation_head_training(hub):
    built = build_segmenter("lraspp_mobilenet_v3_large", 3, 4, None, None)
    freeze_backbone(built.net, built.head)
    trains = {name: p.requires_grad for name, p in built.net.named_parameters()}
    head = [name for name in trains if name.startswith("net.classifier.")]
    assert head and all(trains[name] for name in head)
    assert len(trains) > len(head) and not any(v for name, v in trains.items() if name not in head)

    unet = build_segmenter("unet", 3, 4, None, None)
    freeze_backbone(unet.net, unet.head)
    assert {name for name, p in unet.net.named_parameters() if p.requires_grad} == {"head.weight", "head.bias"}


def coco_file(hub, name, url, **changes):
    """torchvision's net `name` as its COCO-with-VOC-labels file holds it (21 classes, aux head where it has
    one), random weights and some set to known values, where torch.hub keeps that file."""
    weights = torchvision.models.get_model_weights(name).COCO_WITH_VOC_LABELS_V1
    path = imagenet_cache_path(weights)
    assert weights.url == url and path == hub / url.rsplit("/", 1)[1]
    aux = {} if name.startswith("lraspp") else {"aux_loss": True}
    net = torchvision.models.get_model(name, weights=None, weights_backbone=None, num_classes=21, **aux)
    state = net.state_dict()
    for key, value in changes.items():
        state[key] = torch.full_like(state[key], value)
    return path, save(state, path)


def test_coco_voc_loads_the_whole_net_with_new_class_layers(hub):
    path, sha256 = coco_file(
        hub,
        "lraspp_mobilenet_v3_large",
        LRASPP_URL,
        **{"classifier.cbr.0.weight": 0.5, "backbone.0.1.running_var": 2.0},
    )
    built = build_segmenter("lraspp_mobilenet_v3_large", 3, 4, "coco_voc", None)
    net = built.net.net
    assert torch.all(net.classifier.cbr[0].weight == 0.5) and torch.all(net.backbone["0"][1].running_var == 2.0)
    assert net.classifier.low_classifier.out_channels == net.classifier.high_classifier.out_channels == 4
    assert logits(built.net).shape == (1, 4, 64, 64)
    assert built.weights == {
        "source": "coco_voc",
        "weights": "LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1",
        "url": LRASPP_URL,
        "file": str(path),
        "sha256": sha256,
        "matches_torchvision": False,
        "downloaded": False,
        "new": ["net.classifier.low_classifier", "net.classifier.high_classifier"],
    }
    assert built.line.startswith(
        f"weights: COCO-with-VOC-labels (torchvision LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1) "
        f"from {path}, sha256 {sha256[:8]}…"
    )
    assert built.line.endswith("; class layers new (4 classes)")


def test_coco_voc_drops_the_aux_head_and_replaces_the_last_conv(hub):
    url = "https://download.pytorch.org/models/deeplabv3_mobilenet_v3_large-fc3c493d.pth"
    coco_file(hub, "deeplabv3_mobilenet_v3_large", url, **{"classifier.1.weight": 0.5, "classifier.4.weight": 7.0})
    built = build_segmenter("deeplabv3_mobilenet_v3_large", 3, 4, "coco_voc", None)
    net = built.net.net
    assert net.aux_classifier is None and not any(k.startswith("aux") for k in net.state_dict())
    assert torch.all(net.classifier[1].weight == 0.5)
    assert net.classifier[4].out_channels == 4 and not torch.any(net.classifier[4].weight == 7.0)
    assert built.weights["new"] == ["net.classifier.4"]


def test_offline_without_the_coco_voc_file_is_one_line_naming_it(hub):
    with pytest.raises(CheckpointError) as err:
        build_segmenter("lraspp_mobilenet_v3_large", 3, 4, "coco_voc", None)
    assert str(err.value) == (
        f"COCO-with-VOC-labels weights for lraspp_mobilenet_v3_large could not be downloaded from {LRASPP_URL} "
        f"(<urlopen error network is unreachable>); without internet, put that file at "
        f"{hub / 'lraspp_mobilenet_v3_large-d234d4ea.pth'}"
    )


def test_the_imagenet_backbone_is_the_one_torchvisions_builders_use():
    import inspect

    for name in SEGMENTATION_NETS:
        default = inspect.signature(torchvision.models.get_model_builder(name)).parameters["weights_backbone"].default
        assert default.name == "IMAGENET1K_V1"
        assert type(default) is type(torchvision.models.get_model_weights(SEGMENTATION_NETS[name].backbone).DEFAULT)
