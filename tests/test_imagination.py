"""Tests of λ-returns, trajectory weights and the slow critic."""

from __future__ import annotations

import pytest
import torch

from wmbench.agents.config import ActorCriticConfig
from wmbench.agents.imagination import ActorCritic, lambda_return


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
    return ActorCritic(6, 2, ActorCriticConfig(units=8, layers=1, imag_horizon=4, **kw))


def test_returns_weight_is_cumulative_discount_and_returns_use_slow_critic():
    ac = _actor_critic(discount=0.9, lam=0.8)
    horizon, n = 4, 5
    g = torch.Generator().manual_seed(3)
    feat = torch.randn(horizon + 1, n, 6, generator=g, requires_grad=True)
    reward = torch.randn(horizon, n, generator=g, requires_grad=True)
    cont = torch.rand(horizon, n, generator=g)
    # the slow critic (not the critic) supplies the bootstrap values
    with torch.no_grad():
        for p in ac.critic.parameters():
            p.add_(1.0)
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
        expected_ret = lambda_return(reward, ac.slow_critic(feat), d, 0.8)
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
