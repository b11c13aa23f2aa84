"""Recurrent state-space model (RSSM).

Hafner et al., *Learning Latent Dynamics for Planning from Pixels* (PlaNet, ICML 2019), Sec. 3 and
*Dream to Control* (ICLR 2020), Sec. 3:

    deterministic state   h_t = f(h_{t-1}, z_{t-1}, a_{t-1})       (GRU)
    prior (transition)    p(z_t | h_t)
    posterior (repr.)     q(z_t | h_t, e_t),  e_t = enc(o_t)

``stoch`` is either a diagonal Gaussian (Dreamer v1: S=30) or S groups of K-way categoricals with
straight-through gradients (DreamerV2, Hafner et al. 2021, Sec. 2; e.g. 32×32) mixed with 1 %
uniform (DreamerV3, Hafner et al. 2023, "unimix").

With ``norm = "layer"`` the hidden layers are LayerNorm + activation and the GRU normalises its
gate pre-activations (``NormGRUCell``), as in DreamerV3; with ``"none"`` it is Dream to Control's
RSSM (ELU layers, a standard GRU cell).

This module knows nothing of images, rewards or objectives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Independent, Normal, OneHotCategoricalStraightThrough, kl_divergence

from wmbench.agents.config import RSSMConfig
from wmbench.nn.nets import NORM_EPS, dense
from wmbench.types import RSSMState


class NormGRUCell(nn.Module):
    """GRU cell with LayerNorm on the gate pre-activations (DreamerV3's recurrent cell).

    ``[r, c, u] = LayerNorm(W [x, h])``;
    ``h' = σ(u − 1) · tanh(σ(r) · c) + (1 − σ(u − 1)) · h``. The −1 offset of the update gate makes
    the cell keep its state by default at initialisation.

    Args:
        input_size: size of x.
        hidden_size: size D of h.

    Input x ``[N, input_size]``, h ``[N, D]``; output h' ``[N, D]``.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(input_size + hidden_size, 3 * hidden_size, bias=False)
        self.norm = nn.LayerNorm(3 * hidden_size, eps=NORM_EPS)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        reset, cand, update = self.norm(self.linear(torch.cat([x, h], -1))).chunk(3, -1)
        update = torch.sigmoid(update - 1)
        return update * torch.tanh(torch.sigmoid(reset) * cand) + (1 - update) * h


class RSSM(nn.Module):
    """Recurrent state-space model with Gaussian or categorical stochastic state.

    Args:
        config: sizes, see ``RSSMConfig``.
        embed_dim: E, size of the observation embedding.
        action_dim: A.
    """

    def __init__(self, config: RSSMConfig, embed_dim: int, action_dim: int) -> None:
        super().__init__()
        self.config = config
        c = config
        stats = 2 * c.stoch if not c.classes else c.stoch * c.classes
        self.img_in = nn.Sequential(*dense(c.stoch_flat + action_dim, c.hidden, c.act, c.norm))
        self.cell = (
            NormGRUCell(c.hidden, c.deter) if c.norm == "layer" else nn.GRUCell(c.hidden, c.deter)
        )
        self.prior_net = nn.Sequential(
            *dense(c.deter, c.hidden, c.act, c.norm), nn.Linear(c.hidden, stats)
        )
        self.post_net = nn.Sequential(
            *dense(c.deter + embed_dim, c.hidden, c.act, c.norm), nn.Linear(c.hidden, stats)
        )

    # --- states and distributions -------------------------------------------------------------
    def initial(self, batch: int, device: torch.device | None = None) -> RSSMState:
        """All-zero state for ``batch`` sequences: deter ``[B, D]``, stoch ``[B, S(, K)]``."""
        c = self.config
        deter = torch.zeros(batch, c.deter, device=device)
        if c.classes:
            zeros = torch.zeros(batch, c.stoch, c.classes, device=device)
            return RSSMState(deter=deter, stoch=zeros, logits=zeros)
        zeros = torch.zeros(batch, c.stoch, device=device)
        return RSSMState(deter=deter, stoch=zeros, mean=zeros, std=torch.ones_like(zeros))

    def _state(self, deter: Tensor, raw: Tensor) -> RSSMState:
        """Turn the raw output of the prior/posterior net into a sampled state."""
        c = self.config
        if c.classes:  # float32 under bf16 autocast, where bf16 probabilities miss the simplex
            logits = raw.float().reshape(*raw.shape[:-1], c.stoch, c.classes)
            probs = (1 - c.unimix) * logits.softmax(-1) + c.unimix / c.classes
            logits = probs.log()
            stoch = OneHotCategoricalStraightThrough(logits=logits).rsample()
            return RSSMState(deter=deter, stoch=stoch, logits=logits)
        mean, std = raw.chunk(2, -1)
        std = F.softplus(std) + c.min_std
        stoch = mean + std * torch.randn_like(std)
        return RSSMState(deter=deter, stoch=stoch, mean=mean, std=std)

    def dist(self, state: RSSMState) -> torch.distributions.Distribution:
        """The distribution over stoch described by ``state`` (event dims: the latent dims)."""
        if self.config.classes:
            return Independent(OneHotCategoricalStraightThrough(logits=state.logits), 1)
        return Independent(Normal(state.mean, state.std), 1)

    def feat(self, state: RSSMState) -> Tensor:
        """Features ``[..., F]`` = concat(deter, flattened stoch)."""
        stoch = state.stoch.flatten(-2) if self.config.classes else state.stoch
        return torch.cat([state.deter, stoch], -1)

    # --- one step ---------------------------------------------------------------------------
    def img_step(self, prev: RSSMState, prev_action: Tensor) -> RSSMState:
        """Prior step: h_t = GRU(h_{t-1}, [z_{t-1}, a_{t-1}]), z_t ~ p(z_t | h_t).

        Args:
            prev: state at t-1, leading shape ``[B]``.
            prev_action: a_{t-1}, float32 ``[B, A]``; an action outside [-1, 1] (a sample of an
                unsquashed policy) is scaled back onto the box, ``a / max(1, |a|)``, with the scale
                treated as a constant for gradients (DreamerV3's action clipping).

        Returns:
            The prior state at t, leading shape ``[B]``.
        """
        stoch = prev.stoch.flatten(-2) if self.config.classes else prev.stoch
        prev_action = prev_action / prev_action.detach().abs().clamp(min=1.0)
        x = self.img_in(torch.cat([stoch, prev_action], -1))
        deter = self.cell(x, prev.deter)
        return self._state(deter, self.prior_net(deter))

    def obs_step(
        self, prev: RSSMState, prev_action: Tensor, embed: Tensor, is_first: Tensor
    ) -> tuple[RSSMState, RSSMState]:
        """Posterior step with state reset at episode starts.

        Where ``is_first`` is true, the previous state and the previous action are replaced by
        zeros before the transition, so no information crosses an episode boundary.

        Args:
            prev: state at t-1, leading shape ``[B]``.
            prev_action: a_{t-1}, ``[B, A]``.
            embed: e_t, ``[B, E]``.
            is_first: bool ``[B]``.

        Returns:
            ``(post, prior)`` at t, each with leading shape ``[B]``.
        """
        keep = (~is_first).float()
        prev = prev.map(lambda x: x * keep.reshape(-1, *([1] * (x.dim() - 1))))
        prior = self.img_step(prev, prev_action * keep[:, None])
        post = self._state(prior.deter, self.post_net(torch.cat([prior.deter, embed], -1)))
        return post, prior

    # --- sequences --------------------------------------------------------------------------
    def observe(
        self, embed: Tensor, prev_action: Tensor, is_first: Tensor, state: RSSMState | None = None
    ) -> tuple[RSSMState, RSSMState]:
        """Filter a batch of sequences.

        Args:
            embed: ``[B, T, E]``.
            prev_action: a_{t-1}, ``[B, T, A]``.
            is_first: bool ``[B, T]``.
            state: state before the first step (``[B]``); zeros when ``None``.

        Returns:
            ``(post, prior)`` with leading shape ``[B, T]``.
        """
        batch, steps = embed.shape[:2]
        if state is None:
            state = self.initial(batch, embed.device)
        posts, priors = [], []
        for t in range(steps):
            state, prior = self.obs_step(state, prev_action[:, t], embed[:, t], is_first[:, t])
            posts.append(state)
            priors.append(prior)
        return RSSMState.stack(posts, 1), RSSMState.stack(priors, 1)

    def kl_loss(
        self, post: RSSMState, prior: RSSMState, free_nats: float, per: str = "position"
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """The two sides of the balanced KL term, each with free nats, unscaled.

        ``dyn = KL(sg(q) || p)`` trains the prior and ``rep = KL(q || sg(p))`` the posterior; each
        KL is summed over the latent dimensions at one ``(B, T)`` position. Free nats clamp each
        side from below, where ``per`` says:

        - ``"position"``: at every position, before any mean (DreamerV3, Hafner et al. 2023,
          Sec. 2, "free bits");
        - ``"batch"``: on the mean over the batch, ``max(free_nats, mean KL)`` (Dream to Control,
          Hafner et al. 2020, App. A, with 3 free nats); every position then holds that mean.

        Below the clamp a side has zero gradient. The caller weighs them
        (``dyn_scale · dyn + rep_scale · rep``, see ``wmbench.agents.config.KLConfig``).

        Args:
            post, prior: states with leading shape ``[B, T]``.
            free_nats: lower clamp of each side, nats.
            per: ``"position"`` or ``"batch"``.

        Returns:
            ``(dyn, rep, metrics)``: float ``[B, T]`` each (nats); metrics hold the unclamped mean
            KL (nats, detached) as ``kl``.
        """
        dyn = kl_divergence(self.dist(post.detach()), self.dist(prior))
        rep = kl_divergence(self.dist(post), self.dist(prior.detach()))
        metrics = {"kl": dyn.detach().mean()}
        if per == "batch":
            return (
                dyn.mean().clamp(min=free_nats).expand_as(dyn),
                rep.mean().clamp(min=free_nats).expand_as(rep),
                metrics,
            )
        return dyn.clamp(min=free_nats), rep.clamp(min=free_nats), metrics

    def imagine(self, start: RSSMState, policy, horizon: int) -> tuple[RSSMState, Tensor]:
        """Roll the prior forward under a policy.

        Args:
            start: start states, leading shape ``[N]``.
            policy: callable ``feat [N, F] -> action [N, A]`` (may be stochastic, differentiable).
            horizon: H imagined steps.

        Returns:
            ``(states, actions)``: states ``[H+1, N]`` (index 0 is ``start``), actions ``[H, N, A]``
            where ``actions[t]`` was taken in ``states[t]``.
        """
        states, actions = [start], []
        state = start
        for _ in range(horizon):
            action = policy(self.feat(state))
            state = self.img_step(state, action)
            states.append(state)
            actions.append(action)
        return RSSMState.stack(states, 0), torch.stack(actions, 0)
