import pytest
import torch
from torch import nn

from adlab.config import ModelConfig
from adlab.models.factory import build_model
from adlab.settings.cnn import CnnConfig
from adlab.tasks.classify.outputs import predict_probs


@pytest.fixture
def net_and_images():
    torch.manual_seed(0)
    net = build_model(ModelConfig(cnn=CnnConfig(conv_channels=[8, 16], hidden=[])), (1, 12, 12), 4).net
    return net, torch.randint(0, 256, (50, 1, 12, 12), dtype=torch.uint8)


def _transform():
    return nn.Sequential()  # images pass unchanged; predict_probs only needs a module


def test_predict_probs_is_a_distribution_and_keeps_the_mode(net_and_images):
    net, images = net_and_images
    net.train()
    probs = predict_probs(net, _transform(), images.float() / 255, batch_size=16, flip=True)
    assert probs.shape == (50, 4) and probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(1), torch.ones(50))
    assert net.training  # put back in training mode


def test_bf16_and_channels_last_prediction_match_fp32(net_and_images):
    net, images = net_and_images
    x = images.float() / 255
    reference = predict_probs(net, _transform(), x)
    fast = predict_probs(net, _transform(), x, precision="bf16-mixed", channels_last=True)
    assert net.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert (fast - reference).abs().max() < 0.02  # bf16 keeps ~3 significant digits
    assert (fast.argmax(1) == reference.argmax(1)).float().mean() >= 0.96
    assert not torch.equal(fast, reference)  # it did compute in bf16


def test_shift_tta_averages_moved_copies(net_and_images):
    net, images = net_and_images
    x = images.float() / 255
    plain = predict_probs(net, _transform(), x, flip=True)
    shifted = predict_probs(net, _transform(), x, flip=True, shift=1)
    torch.testing.assert_close(shifted.sum(1), torch.ones(50))
    assert not torch.allclose(plain, shifted)
    # by hand: half the weight on the image, a quarter on each copy moved one pixel diagonally
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    up_left, down_right = padded[..., :12, :12], padded[..., 2:, 2:]
    by_hand = (
        plain
        + (
            predict_probs(net, _transform(), up_left, flip=True)
            + predict_probs(net, _transform(), down_right, flip=True)
        )
        / 2
    ) / 2
    torch.testing.assert_close(shifted, by_hand)
