import torch

from adlab.config import TrainConfig
from adlab.models.autoencoders import AutoEncoder
from adlab.models.layout import channels_last_pays
from adlab.tasks.lightning.module import TaskModule


def _ae(channels):
    return AutoEncoder(1, (28, 28), 10, channels, dropout=0.0)


def test_bf16_keeps_a_net_with_a_layer_narrower_than_16_channels_contiguous():
    assert not channels_last_pays(_ae((8, 16, 16)), True, "bf16-mixed")
    assert channels_last_pays(_ae((16, 32, 32)), True, "bf16-mixed")


def test_fp32_follows_the_setting_and_the_setting_off_is_off():
    assert channels_last_pays(_ae((8, 16, 16)), True, "32-true")
    assert not channels_last_pays(_ae((16, 32, 32)), False, "bf16-mixed")


def test_the_first_convolution_reading_the_image_does_not_count():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.Conv2d(16, 32, 3))
    assert channels_last_pays(net, True, "bf16-mixed")


def test_the_module_holds_the_decision_its_data_module_follows():
    module = TaskModule(_ae((8, 16, 16)), TrainConfig(precision="bf16-mixed"))
    assert module.channels_last is False
    module = TaskModule(_ae((16, 16, 16)), TrainConfig(precision="bf16-mixed"))
    assert module.channels_last is True
