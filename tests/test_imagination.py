"""Tests of λ-returns, trajectory weights, the slow critic, the return scale, the actors and the
critic loss."""

from __future__ import annotations

import pytest
import torch

from wmbench.agents.config import ActorCriticConfig
from wmbench.agents.imagination import ActorCritic, ReturnNorm, lambda_return


def naive_lambda_return(reward, value, discount, lam):
    """Per element, as a λ-weighted mix of n-step returns (no recursion).

    n-step: G^(n)_t = Σ_{k<n} (Π_{j<k} d_{t+j}) r_{t+k} + (Π_{j<n} d_{t+j}) v_{t+n};
    G^λ_t = (1-λ) Σ_{n=1}^{T-t-1} λ^{n-1} G^(n)_t + λ^{T-t-1} G^(T-t)_t.
    """
    steps = reward.shape[0]
    out = torch.zeros(reward.shape, dtype=torch.float64)
    for idx in range(reward[0].numel()):
        r = reward.reshape(steps, -1)[:, idx].tolist()
        v = value.reshape(steps + 1, -1)[:, idx].tolist()
        d = discount.reshape(steps, -1)[:, idx].tolist()
        for t in range(steps):

            def nstep(n, r=r, d=d, v=v, t=t):
                total, disc = 0.0, 1.0
                for k in range(n):
                    total += disc * r[t + k]
                    disc *= d[t + k]
                return total + disc * v[t + n]

            horizon = steps - t
            g = sum((1 - lam) * lam ** (n - 1) * nstep(n) for n in range(1, horizon))
            g += lam ** (horizon - 1) * nstep(horizon)
            out.reshape(steps, -1)[t, idx] = g
    return out


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.95, 1.0])
def test_lambda_return_matches_naive(lam):
    g = torch.Generator().manual_seed(int(lam * 100))
    steps, n, m = 5, 3, 2
    reward = torch.randn(steps, n, m, generator=g, dtype=torch.float64)
    value = torch.randn(steps + 1, n, m, generator=g, dtype=torch.float64)
    discount = 0.99 * (torch.rand(steps, n, m, generator=g, dtype=torch.float64) > 0.2)
    discount = discount * torch.rand(steps, n, m, generator=g, dtype=torch.float64)
    got = lambda_return(reward, value, discount, lam)
    assert got.shape == (steps, n, m)
    torch.testing.assert_close(
        got, naive_lambda_return(reward, value, discount, lam), rtol=1e-10, atol=1e-10
    )
    if lam == 0.0:  # one-step TD target
        torch.testing.assert_close(got, reward + discount * value[1:], rtol=1e-12, atol=1e-12)
    if lam == 1.0:  # discounted Monte-Carlo sum bootstrapped by the last value
        mc = value[-1].clone()
        for t in reversed(range(steps)):
            mc = reward[t] + discount[t] * mc
        torch.testing.assert_close(got[0], mc, rtol=1e-12, atol=1e-12)


def test_lambda_return_hand_worked_terminal_vs_truncation():
    # T=3, λ=0.5; columns: terminal after step 1 | no terminal (truncated) | terminal after step 2
    reward = torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [3.0, 3.0, 3.0]], dtype=torch.float64)
    value = torch.tensor([[10.0] * 3, [20.0] * 3, [30.0] * 3, [40.0] * 3], dtype=torch.float64)
    discount = torch.tensor(
        [[0.9, 0.9, 0.9], [0.0, 0.9, 0.9], [0.9, 0.9, 0.0]], dtype=torch.float64
    )
    # column 0: G2 = 3 + .9(.5*40 + .5*40) = 39;  G1 = 2 + 0 = 2;  G0 = 1 + .9(.5*20 + .5*2) = 10.9
    # column 1: G2 = 39;  G1 = 2 + .9(.5*30 + .5*39) = 33.05;  G0 = 1 + .9(.5*20 + .5*33.05) =
    # 24.8725 column 2: G2 = 3 + 0 = 3;  G1 = 2 + .9(.5*30 + .5*3) = 16.85;  G0 = 1 + .9(.5*20 +
    # .5*16.85) = 17.5825
    expected = torch.tensor(
        [[10.9, 24.8725, 17.5825], [2.0, 33.05, 16.85], [39.0, 39.0, 3.0]], dtype=torch.float64
    )
    torch.testing.assert_close(
        lambda_return(reward, value, discount, 0.5), expected, rtol=0, atol=1e-12
    )


def test_lambda_return_rejects_wrong_value_length():
    with pytest.raises(ValueError, match="T\\+1"):
        lambda_return(torch.zeros(3, 2), torch.zeros(3, 2), torch.ones(3, 2), 0.9)


def _actor_critic(**kw) -> ActorCritic:
    torch.manual_seed(0)
    return ActorCritic(
        6, 2, ActorCriticConfig(units=8, actor_layers=1, critic_layers=1, imag_horizon=4, **kw)
    )


@pytest.mark.parametrize("critic_target", ["slow", "critic"])
def test_returns_weight_is_cumulative_discount_and_returns_use_the_target_critic(critic_target):
    ac = _actor_critic(discount=0.9, lam=0.8, critic_target=critic_target)
    horizon, n = 4, 5
    g = torch.Generator().manual_seed(3)
    feat = torch.randn(horizon + 1, n, 6, generator=g, requires_grad=True)
    reward = torch.randn(horizon, n, generator=g, requires_grad=True)
    cont = torch.rand(horizon, n, generator=g)
    # the critic and the slow critic differ (and their zero-initialised outputs are not zero);
    # critic_target says which supplies the bootstrap values
    with torch.no_grad():
        for p in [*ac.critic.parameters(), *ac.slow_critic.parameters()]:
            p.copy_(torch.randn(p.shape, generator=g))
    target = ac.slow_critic if critic_target == "slow" else ac.critic
    ret, weight = ac.returns(feat, reward, cont)
    assert ret.shape == weight.shape == (horizon, n)
    d = 0.9 * cont
    expected_w = torch.ones(horizon, n)
    for t in range(1, horizon):
        expected_w[t] = expected_w[t - 1] * d[t - 1]
    torch.testing.assert_close(weight, expected_w)
    assert torch.equal(weight[0], torch.ones(n))
    assert not weight.requires_grad
    with torch.no_grad():
        expected_ret = lambda_return(reward, target(feat).mean, d, 0.8)
    torch.testing.assert_close(ret, expected_ret)
    ret.sum().backward()
    assert reward.grad is not None and torch.count_nonzero(reward.grad) == reward.numel()
    assert feat.grad is not None and torch.count_nonzero(feat.grad[1:]) > 0
    assert all(p.grad is None for p in ac.slow_critic.parameters())


@pytest.mark.parametrize("tau", [0.02, 0.5, 1.0])
def test_update_slow_critic_moves_by_ema_fraction(tau):
    ac = _actor_critic(slow_critic_fraction=tau)
    with torch.no_grad():
        for p in ac.critic.parameters():
            p.copy_(torch.randn_like(p))
    slow_before = [p.detach().clone() for p in ac.slow_critic.parameters()]
    fast_before = [p.detach().clone() for p in ac.critic.parameters()]
    assert any(not torch.equal(s, f) for s, f in zip(slow_before, fast_before, strict=True))
    ac.update_slow_critic()
    for s0, f, s1, f1 in zip(
        slow_before, fast_before, ac.slow_critic.parameters(), ac.critic.parameters(), strict=True
    ):
        torch.testing.assert_close(s1, s0 + tau * (f - s0), rtol=1e-6, atol=1e-7)
        assert torch.equal(f1, f)  # the critic itself is untouched
    assert all(not p.requires_grad for p in ac.slow_critic.parameters())


def test_return_norm_tracks_the_percentile_range_from_zero():
    norm = ReturnNorm(decay=0.9)
    ret = torch.arange(101, dtype=torch.float32)  # P5 = 5, P95 = 95
    norm.update(ret)
    assert norm.low.item() == pytest.approx(0.5) and norm.high.item() == pytest.approx(9.5)
    assert norm.scale().item() == pytest.approx(9.0)
    for _ in range(200):
        norm.update(ret)
    assert norm.scale().item() == pytest.approx(90.0, rel=1e-4)
    small = ReturnNorm(decay=0.0)
    small.update(torch.linspace(0, 0.5, 11))  # a range below one unit is not scaled up
    assert small.scale().item() == 1.0


def test_actor_loss_divides_returns_by_the_scale_and_adds_the_entropy_bonus():
    ac = _actor_critic(return_norm="percentile", return_norm_decay=0.0, actor_entropy=0.1)
    ret = torch.arange(101, dtype=torch.float32).reshape(1, 101)
    weight, entropy = torch.ones(1, 101), torch.full((1, 101), 2.0)
    loss, metrics = ac.actor_loss(ret, weight, entropy)
    assert metrics["return_scale"].item() == pytest.approx(90.0)
    assert loss.item() == pytest.approx(-(50.0 / 90.0 + 0.1 * 2.0), rel=1e-5)
    plain = _actor_critic(return_norm="none", actor_entropy=0.0)
    loss, metrics = plain.actor_loss(ret, weight, entropy)
    assert loss.item() == pytest.approx(-50.0) and metrics["return_scale"].item() == 1.0


def test_bounded_normal_actor_keeps_its_std_in_bounds_and_starts_near_zero():
    ac = _actor_critic(min_std=0.1, max_std=1.0, actor_out_scale=0.01)
    feat = torch.randn(256, 6) * 100  # extreme features
    dist = ac.actor(feat)
    std = dist.base_dist.scale
    assert std.min() >= 0.1 and std.max() <= 1.0
    assert ac.actor(torch.randn(64, 6)).mean.abs().max() < 0.05  # near-zero mean at initialisation
    torch.testing.assert_close(ac.actor.mode(feat), dist.mean)
    action = dist.rsample()
    torch.testing.assert_close(ac.actor.entropy(dist, action), dist.entropy())


def test_tanh_normal_actor_entropy_is_the_sample_estimate():
    ac = _actor_critic(actor_dist="tanh_normal")
    dist = ac.actor(torch.randn(32, 6))
    action = dist.rsample()
    assert action.abs().max() <= 1
    torch.testing.assert_close(ac.actor.entropy(dist, action), -dist.log_prob(action))


def test_critic_loss_is_the_weighted_nll_plus_the_slow_critic_regulariser():
    g = torch.Generator().manual_seed(5)
    ac = _actor_critic(slow_reg=0.5)
    with torch.no_grad():
        for p in [*ac.critic.parameters(), *ac.slow_critic.parameters()]:
            p.copy_(torch.randn(p.shape, generator=g))
    feat, ret = torch.randn(4, 3, 6, generator=g), torch.randn(4, 3, generator=g) * 10
    weight = torch.rand(4, 3, generator=g)
    loss, metrics = ac.critic_loss(feat, ret, weight)
    dist, slow = ac.critic(feat), ac.slow_critic(feat).mean
    expected = (weight * (-dist.log_prob(ret) - 0.5 * dist.log_prob(slow))).mean()
    torch.testing.assert_close(loss, expected)
    assert metrics["value"].item() == pytest.approx(dist.mean.mean().item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is None for p in ac.slow_critic.parameters())
