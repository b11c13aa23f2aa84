"""Encoder/decoder building blocks: shapes, and the fast paths equal the plain computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import Normal

from wmbench.nn.nets import (
    ConvDecoder,
    ConvEncoder,
    VectorConvTranspose,
    gaussian_nll,
    image_to_float,
)


def test_vector_conv_transpose_equals_conv_transpose_on_a_1x1_input():
    torch.manual_seed(0)
    fast = VectorConvTranspose(16, 8, kernel_size=5, stride=2)
    plain = nn.ConvTranspose2d(16, 8, kernel_size=5, stride=2)
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(7, 16)
    out = fast(x)
    assert out.shape == (7, 8, 5, 5)
    torch.testing.assert_close(out, plain(x[:, :, None, None]), rtol=1e-5, atol=1e-6)


def test_decoder_and_encoder_shapes_keep_leading_dims():
    dec, enc = ConvDecoder(feat_dim=10, depth=4), ConvEncoder(depth=4)
    assert dec(torch.randn(2, 3, 10)).shape == (2, 3, 3, 64, 64)
    assert enc(torch.randint(0, 256, (2, 3, 3, 64, 64), dtype=torch.uint8)).shape == (
        2,
        3,
        enc.embed_dim,
    )


def test_image_to_float_range_and_it_does_not_modify_its_input():
    image = torch.tensor([0.0, 255.0, 51.0])
    assert image_to_float(image).tolist() == pytest.approx([-0.5, 0.5, -0.3])
    assert image.tolist() == [0.0, 255.0, 51.0]
    assert image_to_float(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [-0.5, 0.5]


def test_gaussian_nll_equals_unit_normal_log_prob():
    torch.manual_seed(0)
    mean, target = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    expected = -Normal(mean, 1.0).log_prob(target)
    torch.testing.assert_close(gaussian_nll(mean, target), expected)
    torch.testing.assert_close(gaussian_nll(mean, target, event_dims=2), expected.sum((-2, -1)))
    assert gaussian_nll(torch.zeros(1), torch.zeros(1)).item() == pytest.approx(
        0.5 * math.log(2 * math.pi)
    )
