"""Building blocks: shapes, the fast paths equal the plain computations, DreamerV3's symlog two-hot
maths and layer norms against hand values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import Normal

from wmbench.nn.dists import BINS_HIGH, BINS_LOW, TwoHot, symexp, symlog
from wmbench.nn.nets import (
    MLP,
    ChannelNorm,
    ConvDecoder,
    ConvEncoder,
    TwoHotHead,
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


def test_symlog_hand_values_and_symexp_inverts_it():
    x = torch.tensor([0.0, math.e - 1, -(math.e**2 - 1), 1e6])
    torch.testing.assert_close(symlog(x), torch.tensor([0.0, 1.0, -2.0, math.log1p(1e6)]))
    grid = torch.linspace(-1e4, 1e4, 101, dtype=torch.float64)
    torch.testing.assert_close(symexp(symlog(grid)), grid)


def test_two_hot_log_prob_splits_a_target_between_its_two_bins():
    logits = torch.randn(255, generator=torch.Generator().manual_seed(0))
    log_probs = logits.log_softmax(-1)
    dist = TwoHot(logits)
    step = (BINS_HIGH - BINS_LOW) / 254
    on_bin = symexp(torch.tensor(BINS_LOW + 130 * step))  # exactly bin 130
    assert dist.log_prob(on_bin).item() == pytest.approx(log_probs[130].item(), rel=1e-4)
    between = symexp(torch.tensor(BINS_LOW + 130.25 * step))  # 3/4 on bin 130, 1/4 on bin 131
    expected = 0.75 * log_probs[130] + 0.25 * log_probs[131]
    assert dist.log_prob(between).item() == pytest.approx(expected.item(), rel=1e-4)
    # beyond the range: all weight on the end bin
    assert dist.log_prob(torch.tensor(1e12)).item() == pytest.approx(log_probs[-1].item(), rel=1e-5)


def test_two_hot_round_trip_recovers_the_target():
    targets = torch.tensor([-3000.0, -1.5, 0.0, 0.3, 7.0, 812.5], dtype=torch.float64)
    bins = torch.linspace(BINS_LOW, BINS_HIGH, 255, dtype=torch.float64)
    # the two-hot weights of each target, as logits (log of the weights; -inf elsewhere)
    position = (symlog(targets) - BINS_LOW) / (bins[1] - bins[0])
    below = position.floor().long()
    weights = torch.zeros(len(targets), 255, dtype=torch.float64)
    weights[torch.arange(len(targets)), below] = 1 - (position - below)
    weights[torch.arange(len(targets)), below + 1] = position - below
    dist = TwoHot(weights.log())
    torch.testing.assert_close(dist.mean, targets)
    # the cross-entropy with the encoding is minimal at the encoding itself
    assert torch.all(
        dist.log_prob(targets) >= TwoHot(torch.zeros(len(targets), 255)).log_prob(targets)
    )


def test_two_hot_head_starts_at_zero_with_uniform_bins():
    head = TwoHotHead(6, 8, 1)
    out = head(torch.randn(4, 6))
    assert out.logits.shape == (4, 255)
    assert torch.equal(out.logits, torch.zeros(4, 255))
    torch.testing.assert_close(out.mean, torch.zeros(4))


@pytest.mark.parametrize("scale", [0.0, 0.01])
def test_mlp_out_scale_scales_the_initial_output_layer(scale):
    torch.manual_seed(0)
    plain = MLP(5, 3, 8, 2, "silu", "layer")
    torch.manual_seed(0)
    scaled = MLP(5, 3, 8, 2, "silu", "layer", out_scale=scale)
    x = torch.randn(10, 5)
    torch.testing.assert_close(scaled(x), scale * plain(x))


def test_layer_norm_blocks_normalise_features_and_channels():
    mlp = MLP(5, 3, 16, 1, "silu", "layer")
    assert isinstance(mlp.net[1], nn.LayerNorm) and mlp.net[0].bias is None
    hidden = mlp.net[:2](torch.randn(64, 5) * 10 + 3)
    torch.testing.assert_close(hidden.mean(-1), torch.zeros(64), atol=1e-5, rtol=0)
    x = torch.randn(2, 6, 4, 4) * 5 + 1
    normed = ChannelNorm(6)(x)
    torch.testing.assert_close(normed.mean(1), torch.zeros(2, 4, 4), atol=1e-5, rtol=0)
    enc = ConvEncoder(depth=4, act="silu", norm="layer")
    assert sum(isinstance(m, ChannelNorm) for m in enc.modules()) == 4
    dec = ConvDecoder(10, depth=4, act="silu", norm="layer")
    assert dec(torch.randn(2, 10)).shape == (2, 3, 64, 64)
