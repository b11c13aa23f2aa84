"""Behaviour learning in imagination: λ-returns, actor and critic.

Hafner et al., *Dream to Control* (ICLR 2020), Sec. 3: from posterior start states the actor rolls
the prior forward for H steps; the critic regresses λ-returns (eq. 6) and the actor maximises them
by backpropagating through the learned dynamics ("dynamics backpropagation", eq. 7). Nothing here
touches the environment or images.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Independent, Normal, TanhTransform, TransformedDistribution

from wmbench.agents.config import ActorCriticConfig
from wmbench.nn.nets import MLP, ScalarHead


def lambda_return(reward: Tensor, value: Tensor, discount: Tensor, lam: float) -> Tensor:
    """λ-returns V_λ of Dream to Control, eq. 6, computed backwards in time.

    ``G_t = r_t + d_t · ((1 − λ) · v_{t+1} + λ · G_{t+1})`` with ``G_T = v_T``.

    Args:
        reward: ``[T, ...]``; ``reward[t]`` is received on the transition out of state t.
        value: ``[T + 1, ...]``; ``value[t]`` estimates state t, ``value[T]`` bootstraps the end.
        discount: ``[T, ...]``; γ times the probability that the episode continues after the
            transition out of state t (0 at a true terminal: no bootstrap beyond it; a truncated
            horizon keeps γ and bootstraps from ``value``).
        lam: λ in [0, 1].

    Returns:
        ``[T, ...]`` returns for states 0..T-1.
    """
    if value.shape[0] != reward.shape[0] + 1:
        raise ValueError(f"value needs T+1 = {reward.shape[0] + 1} steps, got {value.shape[0]}")
    out = []
    last = value[-1]
    for t in reversed(range(reward.shape[0])):
        last = reward[t] + discount[t] * ((1 - lam) * value[t + 1] + lam * last)
        out.append(last)
    return torch.stack(out[::-1], 0)


class Actor(nn.Module):
    """Tanh-transformed diagonal Gaussian policy over actions in [-1, 1] (Dream to Control, App. A).

    Input feat ``[..., F]``; ``forward`` returns a distribution with event shape ``[A]``.
    """

    def __init__(self, feat_dim: int, action_dim: int, config: ActorCriticConfig) -> None:
        super().__init__()
        self.config = config
        self.mlp = MLP(feat_dim, 2 * action_dim, config.units, config.layers)

    def forward(self, feat: Tensor) -> torch.distributions.Distribution:
        mean, std = self.mlp(feat).chunk(2, -1)
        mean = 5 * torch.tanh(mean / 5)
        std = F.softplus(std + self.config.init_std) + self.config.min_std
        return Independent(
            TransformedDistribution(Normal(mean, std), [TanhTransform(cache_size=1)]), 1
        )

    def mode(self, feat: Tensor) -> Tensor:
        """Deterministic action tanh(mean), ``[..., A]`` (used for evaluation)."""
        mean, _ = self.mlp(feat).chunk(2, -1)
        return torch.tanh(5 * torch.tanh(mean / 5))


class ActorCritic(nn.Module):
    """Actor, critic (a unit-variance Gaussian over the return, i.e. squared error) and slow critic.

    The slow critic supplies the values inside the λ-return targets; it has no optimizer and is
    moved toward the critic by ``update_slow_critic``.
    """

    def __init__(self, feat_dim: int, action_dim: int, config: ActorCriticConfig) -> None:
        super().__init__()
        self.config = config
        self.actor = Actor(feat_dim, action_dim, config)
        self.critic = ScalarHead(feat_dim, config.units, config.layers)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)

    def returns(self, feat: Tensor, reward: Tensor, cont: Tensor) -> tuple[Tensor, Tensor]:
        """λ-returns and trajectory weights of an imagined rollout.

        Args:
            feat: imagined features ``[H + 1, N, F]`` (index 0: start states).
            reward: predicted reward of each transition, ``[H, N]`` (from states 1..H).
            cont: predicted continue probability after each transition, ``[H, N]``.

        Returns:
            ``(returns, weight)``: returns ``[H, N]`` for states 0..H-1, differentiable into
            ``feat`` (through the slow critic's inputs) and ``reward``; weight ``[H, N]``, detached,
            the cumulative discount probability of reaching each state (start states weigh 1).
        """
        discount = self.config.discount * cont
        value = self.slow_critic(feat)
        ret = lambda_return(reward, value, discount, self.config.lam)
        weight = torch.cumprod(
            torch.cat([torch.ones_like(discount[:1]), discount[:-1]], 0), 0
        ).detach()
        return ret, weight

    def actor_loss(
        self, ret: Tensor, weight: Tensor, entropy: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Dynamics backpropagation (Dream to Control, eq. 7): maximise weighted λ-returns.

        Args:
            ret, weight: ``[H, N]`` from ``returns``.
            entropy: sample estimate of the policy entropy at states 0..H-1, ``[H, N]`` (nats).

        Returns:
            Scalar loss and detached metrics.
        """
        loss = -(weight * (ret + self.config.actor_entropy * entropy)).mean()
        return loss, {"actor_entropy": entropy.detach().mean(), "imag_return": ret.detach().mean()}

    def critic_loss(
        self, feat: Tensor, ret: Tensor, weight: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Regress the critic onto λ-returns (Dream to Control, eq. 8), on detached inputs.

        Args:
            feat: ``[H, N, F]`` states 0..H-1.
            ret, weight: ``[H, N]``.
        """
        value = self.critic(feat.detach())
        loss = (weight * 0.5 * (value - ret.detach()) ** 2).mean()
        return loss, {"value": value.detach().mean()}

    @torch.no_grad()
    def update_slow_critic(self) -> None:
        """slow ← (1 − τ) · slow + τ · critic with τ = ``slow_critic_fraction``."""
        tau = self.config.slow_critic_fraction
        for slow, fast in zip(self.slow_critic.parameters(), self.critic.parameters(), strict=True):
            slow.lerp_(fast, tau)
