"""Batched preprocessing: dtype, channels, size, normalisation and augmentation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adlab.data.transforms import BatchTransform, channel_stats, random_hflip, random_translate


def ramp(b=2, c=1, h=8, w=8) -> torch.Tensor:
    """uint8 images with distinct, asymmetric content."""
    x = torch.arange(b * c * h * w, dtype=torch.int64).reshape(b, c, h, w) % 256
    return x.to(torch.uint8)


def test_uint8_becomes_unit_float_before_normalisation():
    x = torch.tensor([0, 51, 255, 102], dtype=torch.uint8).reshape(1, 1, 2, 2)
    t = BatchTransform(1, None, [0.0], [1.0])
    unit = t.to_unit_range(x)
    assert unit.dtype == torch.float32
    assert torch.allclose(unit.flatten(), torch.tensor([0.0, 0.2, 1.0, 0.4]))
    # forward with identity statistics gives the same [0, 1] values
    assert torch.allclose(t(x), unit)
    assert x.dtype == torch.uint8 and x[0, 0, 1, 0] == 255  # input left alone


def test_float_input_is_taken_as_unit_range():
    x = torch.tensor([0.0, 0.25, 1.0, 0.5]).reshape(1, 1, 2, 2)
    t = BatchTransform(1, None, [0.0], [1.0])
    assert torch.allclose(t(x), x)
    assert torch.allclose(t(x.double()), x)  # and comes out float32
    assert t(x.double()).dtype == torch.float32


def test_normalisation_uses_mean_and_std_per_channel():
    x = torch.rand(4, 3, 5, 5)
    mean, std = [0.1, 0.5, 0.9], [0.2, 0.25, 0.5]
    t = BatchTransform(3, None, mean, std)
    out = t(x)
    for ch in range(3):
        assert torch.allclose(out[:, ch], (x[:, ch] - mean[ch]) / std[ch], atol=1e-6)


def test_normalisation_of_uint8_applies_after_scaling():
    x = torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)
    t = BatchTransform(1, None, [0.5], [0.25])
    assert torch.allclose(t(x), torch.full((1, 1, 2, 2), 2.0))  # (1 - 0.5) / 0.25


def test_grey_to_three_channels():
    x = ramp(2, 1, 6, 6)
    t = BatchTransform(3, None, [0.0] * 3, [1.0] * 3)
    out = t(x)
    assert tuple(out.shape) == (2, 3, 6, 6)
    for ch in range(3):
        assert torch.allclose(out[:, ch], x[:, 0].float() / 255)


def test_grey_to_three_channels_normalises_each_channel_separately():
    x = torch.full((1, 1, 2, 2), 0.5)
    t = BatchTransform(3, None, [0.0, 0.5, 0.25], [1.0, 1.0, 0.5])
    out = t(x)
    assert out[0, :, 0, 0].tolist() == pytest.approx([0.5, 0.0, 0.5])


def test_rgb_to_one_channel_is_the_channel_mean():
    x = torch.stack([torch.full((4, 4), v) for v in (0.0, 0.3, 0.9)]).unsqueeze(0)
    t = BatchTransform(1, None, [0.0], [1.0])
    out = t(x)
    assert tuple(out.shape) == (1, 1, 4, 4)
    assert torch.allclose(out, torch.full((1, 1, 4, 4), 0.4))


@pytest.mark.parametrize("size", [4, 16, 32])
def test_resize_to_image_size(size):
    x = ramp(3, 1, 8, 8)
    t = BatchTransform(1, size, [0.0], [1.0])
    out = t(x)
    assert tuple(out.shape) == (3, 1, size, size)
    assert out.min() >= -1e-6 and out.max() <= 1 + 1e-6


def test_resize_keeps_constant_images_constant():
    x = torch.full((2, 3, 8, 8), 0.3)
    out = BatchTransform(3, 20, [0.0] * 3, [1.0] * 3)(x)
    assert torch.allclose(out, torch.full((2, 3, 20, 20), 0.3), atol=1e-6)


def test_resize_non_square_to_square():
    out = BatchTransform(1, 10, [0.0], [1.0])(torch.rand(1, 1, 7, 13))
    assert tuple(out.shape) == (1, 1, 10, 10)


def test_no_augmentation_outside_training_or_when_disabled():
    torch.manual_seed(0)
    x = ramp(16, 1, 8, 8)
    plain = BatchTransform(1, None, [0.0], [1.0])(x)
    on = BatchTransform(1, None, [0.0], [1.0], crop_padding=2, flip=True, augment=True)
    off = BatchTransform(1, None, [0.0], [1.0], crop_padding=2, flip=True, augment=False)
    assert torch.equal(on(x, train=False), plain)
    assert torch.equal(off(x, train=True), plain)
    assert not torch.equal(on(x, train=True), plain)


def test_augmentation_keeps_shape_and_range():
    torch.manual_seed(0)
    x = ramp(16, 3, 8, 8)
    t = BatchTransform(3, 12, [0.0] * 3, [1.0] * 3, crop_padding=3, flip=True, augment=True)
    out = t(x, train=True)
    assert tuple(out.shape) == (16, 3, 12, 12)
    assert out.min() >= -1e-6 and out.max() <= 1 + 1e-6


def test_random_translate_pad_zero_is_identity():
    x = torch.rand(5, 3, 7, 9)
    assert torch.equal(random_translate(x, 0), x)


def test_random_translate_keeps_shape_and_is_a_shift_of_the_padded_image():
    torch.manual_seed(0)
    x = torch.rand(32, 2, 6, 7)
    pad = 2
    out = random_translate(x, pad)
    assert out.shape == x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    offsets = set()
    for i in range(len(x)):
        matches = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + 6, dx : dx + 7])
        ]
        assert matches, f"image {i} is not a crop of its padded self"
        offsets.add(matches[0])
    assert len(offsets) > 3  # a different offset per image, not one for the batch


def test_random_translate_pad_larger_than_the_image_is_clamped():
    x = torch.rand(4, 1, 3, 3)
    out = random_translate(x, 10)
    assert out.shape == x.shape


def test_random_translate_of_a_constant_image_is_unchanged():
    x = torch.full((8, 1, 5, 5), 0.7)
    assert torch.equal(random_translate(x, 2), x)


def test_random_hflip_flips_about_half():
    torch.manual_seed(0)
    n = 2000
    x = torch.rand(n, 1, 4, 5)
    out = random_hflip(x)
    assert out.shape == x.shape
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same ^ flipped).all())  # each image is either itself or its mirror
    assert 0.45 * n < int(flipped.sum()) < 0.55 * n


def test_channel_stats_on_a_known_tensor():
    x = torch.zeros(2, 2, 2, 2)
    x[:, 0] = 0.5  # constant channel
    x[:, 1] = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    mean, std = channel_stats(x)
    assert mean == pytest.approx([0.5, 0.5])
    # channel 1: eight values, four 0 and four 1: unbiased std sqrt(8 * 0.25 / 7)
    assert std[1] == pytest.approx((8 * 0.25 / 7) ** 0.5, rel=1e-5)
    assert 0 < std[0] <= 1e-6  # clamped, so normalisation never divides by zero


def test_channel_stats_of_uint8_is_in_unit_range():
    x = torch.tensor([0, 255, 0, 255], dtype=torch.uint8).reshape(4, 1, 1, 1)
    mean, std = channel_stats(x)
    assert mean == pytest.approx([0.5])
    assert std == pytest.approx([(4 * 0.25 / 3) ** 0.5], rel=1e-5)


def test_channel_stats_subset_for_large_sets_is_seeded_and_close():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(500, 3, 2, 2, generator=g) * torch.tensor([1.0, 0.5, 0.1]).view(1, 3, 1, 1)
    full_mean, full_std = channel_stats(x)
    sub_mean, sub_std = channel_stats(x, max_images=200)
    assert (sub_mean, sub_std) == channel_stats(x, max_images=200)
    assert sub_mean == pytest.approx(full_mean, abs=0.03)
    assert sub_std == pytest.approx(full_std, abs=0.03)
    assert full_mean == pytest.approx([0.5, 0.25, 0.05], abs=0.03)


def test_statistics_are_buffers():
    t = BatchTransform(3, None, [0.1, 0.2, 0.3], [1.0, 1.0, 1.0])
    names = dict(t.named_buffers())
    assert set(names) == {"mean", "std"}  # moved with .to(device) and saved in state_dict
    assert tuple(t.mean.shape) == (1, 3, 1, 1)


def test_cutout_zeroes_one_square_of_the_given_size_per_image():
    from adlab.data.transforms import random_cutout

    torch.manual_seed(0)
    x = torch.ones(64, 1, 28, 28)
    out = random_cutout(x, 8)
    zeros = (out == 0).sum(dim=(1, 2, 3))
    assert zeros.max() == 64  # a whole 8x8 square inside the image
    assert (zeros > 0).all() and (zeros <= 64).all()  # squares over the border are cut, never bigger
    corners = [(out[i, 0] == 0).nonzero() for i in range(64)]
    spans = [(c[:, 0].max() - c[:, 0].min() + 1, c[:, 1].max() - c[:, 1].min() + 1) for c in corners]
    assert all(h <= 8 and w <= 8 for h, w in spans)
    assert len({tuple(c[0].tolist()) for c in corners}) > 10  # a different place per image
    assert torch.equal(x, torch.ones_like(x)), "the input was modified in place"
