"""Behaviour learning in imagination: λ-returns, actor and critic.

Hafner et al., *Dream to Control* (ICLR 2020), Sec. 3: from posterior start states the actor rolls
the prior forward for H steps; the critic regresses λ-returns (eq. 6) and the actor maximises them
by backpropagating through the learned dynamics ("dynamics backpropagation", eq. 7). DreamerV3
(Hafner et al. 2023, Sec. 2) keeps dynamics backpropagation for continuous actions and adds what
makes one set of hyperparameters work across reward scales: a bounded-std actor, percentile return
normalisation with a fixed entropy bonus, and a symlog two-hot critic regularised towards its EMA
(``wmbench.agents.config.ActorCriticConfig`` selects each piece). Nothing here touches the
environment or images.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Independent, Normal, TanhTransform, TransformedDistribution

from wmbench.agents.config import ActorCriticConfig
from wmbench.nn.dists import TwoHot
from wmbench.nn.nets import MLP, ScalarHead, TwoHotHead


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
    """The policy π(a_t | s_t) over actions in [-1, 1]^A.

    ``config.actor_dist`` chooses the distribution:

    - ``bounded_normal`` (DreamerV3, Hafner et al. 2023, Sec. 2 and App. B): Normal with mean
      tanh(x) and std ``(max_std − min_std) · σ(y + 2) + min_std``, so the policy can neither
      collapse to a point nor spread wider than the action box; the output layer starts near zero
      (``actor_out_scale``). Samples can leave [-1, 1]: the env clips them and the RSSM scales them
      back (``wmbench.nn.rssm.RSSM.img_step``).
    - ``tanh_normal`` (Dream to Control, App. A): tanh of a Normal with mean 5 tanh(x / 5) and std
      softplus(y + init_std) + min_std.

    Input feat ``[..., F]``; ``forward`` returns a distribution with event shape ``[A]``.
    """

    def __init__(self, feat_dim: int, action_dim: int, config: ActorCriticConfig) -> None:
        super().__init__()
        self.config = config
        self.mlp = MLP(
            feat_dim,
            2 * action_dim,
            config.units,
            config.actor_layers,
            config.act,
            config.norm,
            config.actor_out_scale,
        )

    def forward(self, feat: Tensor) -> torch.distributions.Distribution:
        c = self.config
        mean, std = self.mlp(feat).chunk(2, -1)
        if c.actor_dist == "bounded_normal":
            std = (c.max_std - c.min_std) * torch.sigmoid(std + 2.0) + c.min_std
            return Independent(Normal(torch.tanh(mean), std), 1)
        mean = 5 * torch.tanh(mean / 5)
        std = F.softplus(std + c.init_std) + c.min_std
        return Independent(
            TransformedDistribution(Normal(mean, std), [TanhTransform(cache_size=1)]), 1
        )

    def mode(self, feat: Tensor) -> Tensor:
        """Deterministic action ``[..., A]`` in (-1, 1): tanh of either distribution's mean."""
        mean, _ = self.mlp(feat).chunk(2, -1)
        if self.config.actor_dist == "bounded_normal":
            return torch.tanh(mean)
        return torch.tanh(5 * torch.tanh(mean / 5))

    def entropy(self, dist: torch.distributions.Distribution, action: Tensor) -> Tensor:
        """Entropy of ``dist`` in nats, ``[...]``: exact for ``bounded_normal``; for
        ``tanh_normal`` (no closed form) the one-sample estimate −ln π(action)."""
        if self.config.actor_dist == "bounded_normal":
            return dist.entropy()
        return -dist.log_prob(action)


class Critic(nn.Module):
    """The value v(s_t) of the imagined policy: ``symlog_twohot`` (DreamerV3) or a unit-variance
    ``gaussian`` (Dream to Control; its log-likelihood is a squared error).

    Input feat ``[..., F]``; output a distribution over the value with ``mean`` ``[...]`` and
    ``log_prob(value [...])`` (``wmbench.nn.dists.TwoHot`` or ``torch.distributions.Normal``).
    """

    def __init__(self, feat_dim: int, config: ActorCriticConfig) -> None:
        super().__init__()
        args = (feat_dim, config.units, config.critic_layers, config.act, config.norm)
        self.twohot = config.critic_dist == "symlog_twohot"
        self.head = TwoHotHead(*args) if self.twohot else ScalarHead(*args)

    def forward(self, feat: Tensor) -> TwoHot | Normal:
        out = self.head(feat)
        return out if self.twohot else Normal(out, 1.0)


class ReturnNorm(nn.Module):
    """Percentile return scale of DreamerV3 (Hafner et al. 2023, Sec. 2, "Actor learning").

    ``S = EMA(P95(R)) − EMA(P5(R))`` over the λ-returns of each update's imagined rollouts (EMA
    decay ``decay``, both starting at 0); the actor maximises ``R / max(1, S)``. Large returns are
    scaled down to about [0, 1] while small ones, below one unit, are left as they are, so the
    entropy bonus keeps its weight where rewards are sparse. Buffers, so checkpoints keep them.
    """

    def __init__(self, decay: float) -> None:
        super().__init__()
        self.decay = decay
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))

    @torch.no_grad()
    def update(self, ret: Tensor) -> None:
        """Moves both percentile EMAs towards those of ``ret`` (any shape, all entries pooled)."""
        q = torch.quantile(ret.detach().flatten().float(), ret.new_tensor([0.05, 0.95]).float())
        self.low.lerp_(q[0], 1 - self.decay)
        self.high.lerp_(q[1], 1 - self.decay)

    def scale(self) -> Tensor:
        """``max(1, S)``, a scalar tensor."""
        return (self.high - self.low).clamp(min=1.0)


class ActorCritic(nn.Module):
    """Actor, critic and slow critic (an EMA copy of the critic, moved by ``update_slow_critic``).

    The λ-return targets use the critic's own values (``critic_target = "critic"``, DreamerV3 and
    Dream to Control) or the slow critic's (``"slow"``, DreamerV2's target network); with
    ``slow_reg > 0`` the critic is also pulled towards the slow critic's values (DreamerV3).
    """

    def __init__(self, feat_dim: int, action_dim: int, config: ActorCriticConfig) -> None:
        super().__init__()
        self.config = config
        self.actor = Actor(feat_dim, action_dim, config)
        self.critic = Critic(feat_dim, config)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.return_norm = ReturnNorm(config.return_norm_decay)

    def returns(self, feat: Tensor, reward: Tensor, cont: Tensor) -> tuple[Tensor, Tensor]:
        """λ-returns and trajectory weights of an imagined rollout.

        Args:
            feat: imagined features ``[H + 1, N, F]`` (index 0: start states).
            reward: predicted reward of each transition, ``[H, N]`` (from states 1..H).
            cont: predicted continue probability after each transition, ``[H, N]``.

        Returns:
            ``(returns, weight)``: returns ``[H, N]`` for states 0..H-1, differentiable into
            ``feat`` (through the target critic's inputs) and ``reward``; weight ``[H, N]``,
            detached, the cumulative discount probability of reaching each state (start states
            weigh 1).
        """
        discount = self.config.discount * cont
        target = self.slow_critic if self.config.critic_target == "slow" else self.critic
        ret = lambda_return(reward, target(feat).mean, discount, self.config.lam)
        weight = torch.cumprod(
            torch.cat([torch.ones_like(discount[:1]), discount[:-1]], 0), 0
        ).detach()
        return ret, weight

    def actor_loss(
        self, ret: Tensor, weight: Tensor, entropy: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Dynamics backpropagation (Dream to Control, eq. 7): maximise weighted λ-returns, divided
        by the percentile scale when ``return_norm = "percentile"`` (DreamerV3), plus the entropy
        bonus: ``−mean(w · (R / max(1, S) + η H))``.

        Args:
            ret, weight: ``[H, N]`` from ``returns``.
            entropy: policy entropy at states 0..H-1, ``[H, N]`` (nats; ``Actor.entropy``).

        Returns:
            Scalar loss and detached metrics ``actor_entropy``, ``imag_return`` (mean λ-return)
            and ``return_scale`` (max(1, S); 1 without normalisation).
        """
        scale = ret.new_ones(())
        if self.config.return_norm == "percentile":
            self.return_norm.update(ret)
            scale = self.return_norm.scale()
        loss = -(weight * (ret / scale + self.config.actor_entropy * entropy)).mean()
        return loss, {
            "actor_entropy": entropy.detach().mean(),
            "imag_return": ret.detach().mean(),
            "return_scale": scale.detach(),
        }

    def critic_loss(
        self, feat: Tensor, ret: Tensor, weight: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Negative log-likelihood of the λ-returns under the critic (Dream to Control, eq. 8), on
        detached inputs, plus ``slow_reg`` times that of the slow critic's mean values
        (DreamerV3), weighted by ``weight`` and averaged.

        Args:
            feat: ``[H, N, F]`` states 0..H-1.
            ret, weight: ``[H, N]``.

        Returns:
            Scalar loss and the detached metric ``value`` (mean predicted value).
        """
        feat = feat.detach()
        dist = self.critic(feat)
        nll = -dist.log_prob(ret.detach())
        if self.config.slow_reg:
            with torch.no_grad():
                slow = self.slow_critic(feat).mean
            nll = nll - self.config.slow_reg * dist.log_prob(slow)
        return (weight * nll).mean(), {"value": dist.mean.detach().mean()}

    @torch.no_grad()
    def update_slow_critic(self) -> None:
        """slow ← (1 − τ) · slow + τ · critic with τ = ``slow_critic_fraction``."""
        tau = self.config.slow_critic_fraction
        for slow, fast in zip(self.slow_critic.parameters(), self.critic.parameters(), strict=True):
            slow.lerp_(fast, tau)
