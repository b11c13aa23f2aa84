"""Tests of the RSSM: shapes, episode resets, free nats, KL balancing, straight-through latents."""

from __future__ import annotations

import math

import pytest
import torch

from wmbench.agents.config import RSSMConfig
from wmbench.nn.rssm import RSSM, NormGRUCell
from wmbench.types import RSSMState

B, T, E, A = 2, 3, 8, 2
GAUSS = RSSMConfig(deter=8, stoch=4, classes=0, hidden=8)
CATEG = RSSMConfig(deter=8, stoch=3, classes=4, hidden=8)


def make(config: RSSMConfig, seed: int = 0) -> RSSM:
    torch.manual_seed(seed)
    return RSSM(config, E, A)


def inputs(seed: int = 1, batch: int = B, steps: int = T):
    g = torch.Generator().manual_seed(seed)
    embed = torch.randn(batch, steps, E, generator=g)
    prev_action = torch.rand(batch, steps, A, generator=g) * 2 - 1
    is_first = torch.zeros(batch, steps, dtype=torch.bool)
    is_first[:, 0] = True
    return embed, prev_action, is_first


@pytest.mark.parametrize("config", [GAUSS, CATEG], ids=["gaussian", "categorical"])
def test_observe_and_imagine_shapes(config):
    rssm = make(config)
    embed, prev_action, is_first = inputs()
    post, prior = rssm.observe(embed, prev_action, is_first)
    stoch_shape = (config.stoch, config.classes) if config.classes else (config.stoch,)
    for state in (post, prior):
        assert state.deter.shape == (B, T, config.deter)
        assert state.stoch.shape == (B, T, *stoch_shape)
        if config.classes:
            assert state.mean is None and state.std is None
            assert state.logits.shape == (B, T, config.stoch, config.classes)
            assert torch.isfinite(state.logits).all()
            # unimix: every class keeps at least unimix / K probability
            assert (state.logits.exp() >= config.unimix / config.classes - 1e-6).all()
            torch.testing.assert_close(state.logits.exp().sum(-1), torch.ones(B, T, config.stoch))
        else:
            assert state.logits is None
            assert state.mean.shape == state.std.shape == (B, T, config.stoch)
            assert (state.std >= config.min_std).all()
        for x in (state.deter, state.stoch):
            assert torch.isfinite(x).all()
    # posterior and prior share the deterministic state
    assert torch.equal(post.deter, prior.deter)
    feat = rssm.feat(post)
    assert feat.shape == (B, T, config.feat_dim)

    start = post.map(lambda x: x.flatten(0, 1))
    n, horizon = B * T, 4

    def policy(f):
        assert f.shape == (n, config.feat_dim)
        return torch.tanh(f[:, :A])

    states, actions = rssm.imagine(start, policy, horizon)
    assert states.deter.shape == (horizon + 1, n, config.deter)
    assert states.stoch.shape == (horizon + 1, n, *stoch_shape)
    assert actions.shape == (horizon, n, A)
    assert torch.equal(states.deter[0], start.deter) and torch.equal(states.stoch[0], start.stoch)
    assert torch.isfinite(rssm.feat(states)).all()
    # imagination really moves the state
    assert not torch.allclose(states.deter[1], states.deter[0])


def _deterministic_parts(state: RSSMState) -> list[torch.Tensor]:
    return [state.deter] + [x for x in (state.mean, state.std, state.logits) if x is not None]


@pytest.mark.parametrize("config", [GAUSS, CATEG], ids=["gaussian", "categorical"])
def test_is_first_resets_state_and_prev_action(config):
    rssm = make(config)
    embed, prev_action, is_first = inputs(steps=4)
    prev_action = prev_action * 5  # large prev_action at the reset: must be ignored
    is_first[:, 2] = True
    post, prior = rssm.observe(embed, prev_action, is_first)

    # a fresh sequence started at t=2 with a zero previous action
    fresh_action = prev_action[:, 2:].clone()
    fresh_action[:, 0] = 0
    fpost, fprior = rssm.observe(embed[:, 2:], fresh_action, is_first[:, 2:])
    for got, want in zip(_deterministic_parts(post), _deterministic_parts(fpost), strict=True):
        torch.testing.assert_close(got[:, 2], want[:, 0], rtol=0, atol=0)
    for got, want in zip(_deterministic_parts(prior), _deterministic_parts(fprior), strict=True):
        torch.testing.assert_close(got[:, 2], want[:, 0], rtol=0, atol=0)

    # ... and with the same random stream for the fresh part the whole tail matches
    torch.manual_seed(7)
    state, _ = rssm.obs_step(
        post.map(lambda x: x[:, 1]), prev_action[:, 2], embed[:, 2], is_first[:, 2]
    )
    tail = [state]
    tail.append(rssm.obs_step(state, prev_action[:, 3], embed[:, 3], is_first[:, 3])[0])
    torch.manual_seed(7)
    ref = rssm.observe(embed[:, 2:], fresh_action, is_first[:, 2:])[0]
    for t, s in enumerate(tail):
        torch.testing.assert_close(s.deter, ref.deter[:, t], rtol=0, atol=0)
        torch.testing.assert_close(s.stoch, ref.stoch[:, t], rtol=0, atol=0)

    # control: without the reset flag the history leaks into t=2 (the test above can fail)
    is_first[:, 2] = False
    post2, _ = rssm.observe(embed, prev_action, is_first)
    assert not torch.allclose(post2.deter[:, 2], fpost.deter[:, 0])


@pytest.mark.parametrize("config", [GAUSS, CATEG], ids=["gaussian", "categorical"])
def test_obs_step_reset_ignores_prev_state_and_action_separately(config):
    rssm = make(config)
    embed = torch.randn(B, E)
    zero = rssm.initial(B)
    junk = RSSMState(
        deter=torch.randn(B, config.deter) * 3,
        stoch=torch.randn(B, *zero.stoch.shape[1:]),
        mean=None if config.classes else torch.randn(B, config.stoch),
        std=None if config.classes else torch.rand(B, config.stoch) + 0.5,
        logits=torch.randn(B, config.stoch, config.classes) if config.classes else None,
    )
    action = torch.ones(B, A)
    first = torch.tensor([True, False])
    ref_post, ref_prior = rssm.obs_step(
        zero, torch.zeros(B, A), embed, torch.ones(B, dtype=torch.bool)
    )
    # only the previous action is non-zero
    post_a, _ = rssm.obs_step(zero, action, embed, first)
    # only the previous state is non-zero
    post_s, _ = rssm.obs_step(junk, torch.zeros(B, A), embed, first)
    for post in (post_a, post_s):
        for got, want in zip(
            _deterministic_parts(post), _deterministic_parts(ref_post), strict=True
        ):
            torch.testing.assert_close(got[0], want[0], rtol=0, atol=0)  # reset row
            assert not torch.allclose(got[1], want[1])  # non-reset row sees action / state


def _gauss_state(mean: torch.Tensor, std: torch.Tensor) -> RSSMState:
    return RSSMState(deter=torch.zeros(*mean.shape[:-1], 1), stoch=mean, mean=mean, std=std)


def test_free_nats_clamp_per_position_on_summed_kl():
    rssm = make(RSSMConfig(deter=4, stoch=4, classes=0, hidden=4))
    free_nats = 1.0
    # [B=1, T=3, S=4]; unit std so that KL per dim is 0.5 * (mu_q - mu_p)^2
    diffs = torch.tensor([[0.1, math.sqrt(0.8), 1.5]])  # summed KL: 0.02, 1.6 (0.4 per dim), 4.5
    prior_mean = torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(0))
    post_mean = (prior_mean + diffs[..., None]).requires_grad_(True)
    prior_mean = prior_mean.clone().requires_grad_(True)
    std = torch.ones(1, 3, 4)
    post, prior = _gauss_state(post_mean, std), _gauss_state(prior_mean, std)
    dyn, rep, metrics = rssm.kl_loss(post, prior, free_nats)
    kl = 4 * 0.5 * diffs**2
    expected = torch.stack([torch.tensor(free_nats), kl[0, 1], kl[0, 2]])[None]
    for side in (dyn, rep):  # with equal stds both sides have the same value
        assert side.shape == (1, 3)
        torch.testing.assert_close(side, expected)
        # position 0 is exactly at the floor; position 1 is NOT clamped although each dim KL (0.4) <
        # free nats
        assert side[0, 0].item() == pytest.approx(free_nats, rel=1e-6)
        assert side[0, 1].item() == pytest.approx(1.6, rel=1e-5)
    # metric: the unclamped mean KL
    assert metrics["kl"].item() == pytest.approx(kl.mean().item(), rel=1e-5)
    assert not metrics["kl"].requires_grad

    dyn_scale, rep_scale = 0.5, 0.1
    (dyn_scale * dyn + rep_scale * rep).sum().backward()
    assert torch.equal(post_mean.grad[0, 0], torch.zeros(4))
    assert torch.equal(prior_mean.grad[0, 0], torch.zeros(4))
    # above the floor: d/dmu_q [rep * 0.5 (mu_q - mu_p)^2] = rep_scale * diff (dyn side is
    # stop-gradiented)
    torch.testing.assert_close(post_mean.grad[0, 1:], rep_scale * diffs[0, 1:, None].expand(2, 4))
    torch.testing.assert_close(prior_mean.grad[0, 1:], -dyn_scale * diffs[0, 1:, None].expand(2, 4))


def test_free_nats_categorical_below_floor_gives_constant_and_no_grad():
    rssm = make(CATEG)
    embed, prev_action, is_first = inputs()
    post, prior = rssm.observe(embed, prev_action, is_first)
    dyn, rep, _ = rssm.kl_loss(post, prior, 1e6)
    torch.testing.assert_close(dyn, torch.full((B, T), 1e6), rtol=0, atol=0)
    torch.testing.assert_close(rep, torch.full((B, T), 1e6), rtol=0, atol=0)
    (dyn + rep).sum().backward()
    for name, p in rssm.named_parameters():
        assert p.grad is None or torch.count_nonzero(p.grad) == 0, name


def _grads(rssm: RSSM, dyn: float, rep: float, config: RSSMConfig) -> dict[str, bool]:
    """Which RSSM submodules get a non-zero gradient from the KL with the given scales."""
    rssm.zero_grad(set_to_none=True)
    embed, prev_action, is_first = inputs(steps=3)
    post, prior = rssm.observe(embed, prev_action, is_first)
    dyn_kl, rep_kl, _ = rssm.kl_loss(post, prior, 0.0)
    (dyn * dyn_kl + rep * rep_kl).mean().backward()
    out = {}
    for name in ("img_in", "cell", "prior_net", "post_net"):
        grads = [p.grad for p in getattr(rssm, name).parameters()]
        out[name] = any(g is not None and torch.count_nonzero(g) > 0 for g in grads)
    return out


@pytest.mark.parametrize("config", [GAUSS, CATEG], ids=["gaussian", "categorical"])
def test_kl_balancing_routes_gradients(config):
    rssm = make(config)
    dyn = _grads(rssm, 1.0, 0.0, config)
    rep = _grads(rssm, 0.0, 1.0, config)
    # dynamics side trains the prior: prior head and the transition (GRU and its input layer)
    assert dyn["prior_net"] and dyn["cell"] and dyn["img_in"]
    # representation side trains the posterior and never the prior head
    assert rep["post_net"]
    assert not rep["prior_net"]


@pytest.mark.parametrize("config", [GAUSS, CATEG], ids=["gaussian", "categorical"])
def test_dyn_side_does_not_reach_post_net_within_a_step(config):
    """KL(sg(q) || p) at a position has no gradient path into post_net (every step a reset here,
    so no posterior sample of t-1 feeds the prior of t)."""
    rssm = make(config)
    embed, prev_action, _ = inputs(steps=3)
    is_first = torch.ones(B, 3, dtype=torch.bool)
    post, prior = rssm.observe(embed, prev_action, is_first)
    dyn, _, _ = rssm.kl_loss(post, prior, 0.0)
    dyn.mean().backward()
    assert all(
        p.grad is None or torch.count_nonzero(p.grad) == 0 for p in rssm.post_net.parameters()
    )
    assert any(
        p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in rssm.prior_net.parameters()
    )


def test_categorical_straight_through_is_one_hot_with_gradient():
    rssm = make(CATEG)
    embed, prev_action, is_first = inputs()
    post, prior = rssm.observe(embed, prev_action, is_first)
    for stoch in (post.stoch, prior.stoch):
        assert set(stoch.unique().tolist()) <= {0.0, 1.0}
        torch.testing.assert_close(stoch.sum(-1), torch.ones(B, T, CATEG.stoch), rtol=0, atol=0)
    w = torch.randn_like(post.stoch)
    (post.stoch * w).sum().backward()
    # straight-through: gradient reaches the posterior net through the one-hot sample
    assert any(torch.count_nonzero(p.grad) > 0 for p in rssm.post_net.parameters())
    feat = rssm.feat(post)
    assert feat.shape == (B, T, CATEG.deter + CATEG.stoch * CATEG.classes)


def test_free_nats_on_the_batch_mean_clamp_once_for_all_positions():
    rssm = make(RSSMConfig(deter=4, stoch=4, classes=0, hidden=4))
    diffs = torch.tensor([[0.5, 1.0, 3.0]])  # summed KL per position: 0.5, 2.0, 18.0 (mean 6.83)
    prior_mean = torch.zeros(1, 3, 4)
    post_mean = (prior_mean + diffs[..., None]).requires_grad_(True)
    std = torch.ones(1, 3, 4)
    post, prior = _gauss_state(post_mean, std), _gauss_state(prior_mean, std)
    dyn, rep, _ = rssm.kl_loss(post, prior, 3.0, per="batch")
    mean_kl = (4 * 0.5 * diffs**2).mean()
    torch.testing.assert_close(dyn, mean_kl.expand(1, 3))
    rep.sum().backward()  # above the floor: every position gets the gradient of the mean
    torch.testing.assert_close(post_mean.grad, (diffs[..., None] / 3 * 3).expand(1, 3, 4))
    low = _gauss_state((prior_mean + 0.1).requires_grad_(True), std)
    dyn, rep, _ = rssm.kl_loss(low, prior, 3.0, per="batch")
    assert torch.equal(dyn, torch.full((1, 3), 3.0))  # below the floor: the constant, no gradient


def test_norm_gru_cell_keeps_most_of_its_state_when_its_weights_are_zero():
    cell = NormGRUCell(3, 4)
    torch.nn.init.zeros_(cell.linear.weight)
    h = torch.tensor([[1.0, -2.0, 0.5, 0.0]])
    # LayerNorm of zeros is 0: reset = σ(0), candidate = tanh(0) = 0, update = σ(0 - 1)
    expected = (1 - torch.sigmoid(torch.tensor(-1.0))) * h
    torch.testing.assert_close(cell(torch.randn(1, 3), h), expected)


def test_layer_norm_rssm_uses_the_norm_gru_and_scales_actions_back_onto_the_box():
    rssm = make(RSSMConfig(deter=8, stoch=2, classes=3, hidden=8, act="silu", norm="layer"))
    assert isinstance(rssm.cell, NormGRUCell)
    state = rssm.initial(2)
    torch.manual_seed(0)
    out = rssm.img_step(state, torch.tensor([[3.0, -0.5], [1.0, 0.25]]))
    torch.manual_seed(0)
    same = rssm.img_step(state, torch.tensor([[1.0, -0.5], [1.0, 0.25]]))  # elementwise
    torch.testing.assert_close(out.deter, same.deter)


def test_categorical_latents_are_float32_under_bf16_autocast():
    """CPU autocast leaves softmax in bfloat16, whose probabilities miss the simplex by ~1e-3 (and
    fail the distribution's check): the latent distribution is computed in float32, as in
    DreamerV3."""
    rssm = make(RSSMConfig(deter=8, stoch=4, classes=32, hidden=8))
    embed, prev_action, is_first = inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        post, prior = rssm.observe(embed, prev_action, is_first)
        for state in (post, prior):
            assert state.logits.dtype == torch.float32
            probs = rssm.dist(state).base_dist.probs
            torch.testing.assert_close(probs.sum(-1), torch.ones(B, T, 4), rtol=0, atol=1e-6)
