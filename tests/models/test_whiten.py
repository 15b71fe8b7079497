"""model.whiten: the first convolution starts as a whitening of the training images' patches."""

import json

import pytest
import torch
import torch.nn.functional as F
from tests.conftest import fast_config
from torch import nn

import adlab
from adlab.config import load_config
from adlab.errors import ConfigError
from adlab.models.whiten import EPS, patch_covariance, whiten_first_conv


def correlated_images(n=64, seed=0):
    """Smooth random images: neighbouring pixels strongly correlated, as in real photos."""
    g = torch.Generator().manual_seed(seed)
    return F.avg_pool2d(torch.randn(n, 2, 14, 14, generator=g), 3, stride=1, padding=1) * 3 + 0.5


def test_patch_covariance_over_batches_is_the_covariance_of_all_patches():
    images = correlated_images()
    patches = F.unfold(images, (3, 3)).transpose(1, 2).reshape(-1, 18)
    expected = torch.cov(patches.T, correction=0)
    got = patch_covariance(images.split(10), (3, 3))  # uneven batches
    assert torch.allclose(got, expected, atol=1e-5)
    chunked = patch_covariance(images.split(10), (3, 3), chunk=3 * 144 * 18)  # 3 images' patches at a time
    assert torch.allclose(chunked, expected, atol=1e-5)
    first_two = F.unfold(images[:2], (3, 3)).transpose(1, 2).reshape(-1, 18)
    capped = patch_covariance([images], (3, 3), max_patches=2 * 144, chunk=144 * 18)  # stops after 2 images
    assert torch.allclose(capped, torch.cov(first_two.T, correction=0), atol=1e-5)


def test_whitened_filters_decorrelate_the_patches_and_come_in_sign_pairs():
    images = correlated_images()
    conv = nn.Conv2d(2, 40, 3)
    net = nn.Sequential(conv, nn.ReLU())
    untouched = conv.weight[36:].clone()
    n = whiten_first_conv(net, images.split(16))
    assert n == 18  # 2 channels x 3 x 3 patch entries, fewer than half of 40 filters
    responses = F.conv2d(images, conv.weight[:n]).permute(0, 2, 3, 1).reshape(-1, n)
    cov = torch.cov(responses.T, correction=0)
    eigenvalues = torch.linalg.eigvalsh(patch_covariance([images], (3, 3))).flip(0)
    # each response has variance lambda / (lambda + EPS): close to 1 for the strong directions
    assert torch.allclose(cov.diagonal(), eigenvalues / (eigenvalues + EPS), atol=1e-3)
    assert (cov - torch.diag(cov.diagonal())).abs().max() < 1e-3  # decorrelated
    assert torch.equal(conv.weight[n : 2 * n], -conv.weight[:n])
    assert torch.equal(conv.weight[36:], untouched)  # filters past 2n keep their initialisation


def test_whiten_is_for_classifiers_trained_from_scratch():
    with pytest.raises(ConfigError, match="model.whiten: initialises"):
        load_config(fast_config(model={"whiten": True, "weights": "imagenet", "name": "resnet18"}))
    with pytest.raises(ConfigError, match="model.whiten: read by task classify only, not by task autoencode"):
        load_config({"task": "autoencode", "model": {"name": "ae", "whiten": True}})
    with pytest.raises(ConfigError, match="no plain first convolution"):
        whiten_first_conv(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), [torch.zeros(1, 1, 2, 2)])


def test_a_whitened_run_starts_from_whitened_filters_and_learns(tmp_path, monkeypatch):
    import adlab.models.whiten as whiten_module

    whitened = []
    real = whiten_module.whiten_first_conv
    monkeypatch.setattr(whiten_module, "whiten_first_conv", lambda net, batches: whitened.append(real(net, batches)))
    run = adlab.train(fast_config(model={"whiten": True}), out=tmp_path / "w", verbose=False)
    assert whitened == [8]  # half of the 16 filters (digits: 1 channel, 3x3 patches: 9 directions)
    assert json.loads((run.path / "metrics.json").read_text())["accuracy"] > 0.8
