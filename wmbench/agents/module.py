"""The Lightning module: the only owner of optimizers, loss scales, logging and the update order.

One update on a replayed batch ``[B, T]`` (Dream to Control, Algorithm 1):

1. world model (with its objective): loss on the batch, backward, clip, Adam step, then the
   objective's ``after_update`` hook (its EMA targets move);
2. actor: imagine H steps from the posterior states (``N = B·T`` starts, or ``imag_starts`` of
   them; detached) with the world model frozen, maximise λ-returns by dynamics backpropagation;
3. critic: regress the λ-returns of the same rollout; then move the slow critic.

Besides the losses, every logged row holds three signs of a collapsing actor (``train/``):
``actor_saturation`` (share of the batch's posterior states where the deterministic action is
beyond ±0.95 in some dimension), ``actor_grad_agreement`` (|mean sign| of the actor loss's
gradient with respect to the first imagined action, averaged over action dimensions: 1 when every
start state is pushed the same way, ≈ 0 when the push depends on the state) and ``value`` (the
critic's mean prediction, whose growth per update shows how fast values are learned).

Loss scales: ``WorldModel.loss`` returns unscaled per-position terms; ``world_model_loss`` weighs
them (``reward_scale``, ``cont_scale``, the KL sides' ``dyn_scale``/``rep_scale``,
``objective_scales``), averages each over ``B, T`` and sums.

Logging: every ``log_every`` updates ``training_step`` returns the update's metrics row
(``train/*`` and ``updates``); the runtime writes it with the batch's ``env_frames`` and
``wall_time`` (``wmbench.runtime.stream.StreamBase.log``, the one writer of metric rows).

Lightning counts ``global_step`` once per optimizer step (three per update); wmbench's own
``updates`` counter counts updates.

Every update is checked for non-finite values (``NonFiniteLossError``): the world model's loss and
gradient norm before its Adam step (so imagination never runs on a broken world model), the actor's
and critic's after theirs — two host syncs per update.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import Tensor

from wmbench.agents.config import AgentConfig
from wmbench.agents.imagination import ActorCritic
from wmbench.agents.world_model import WorldModel
from wmbench.errors import RunError
from wmbench.objectives import Objective
from wmbench.types import Batch, RSSMState


class NonFiniteLossError(RunError):
    """A loss or gradient norm of an update is NaN or infinite; the run must stop.

    Attributes:
        updates: the update at which it happened (1-based: the first update is update 1).
        names: the non-finite values, e.g. ``["loss/objective/image", "loss/world_model",
            "grad_norm/world_model"]``.
        last_checkpoint: where training can be resumed from, or ``None`` if unknown or none was
            written.
    """

    def __init__(self, updates: int, names: list[str], last_checkpoint: str | None = None) -> None:
        self.updates, self.names, self.last_checkpoint = updates, names, last_checkpoint
        where = (
            f"last good checkpoint: {last_checkpoint}"
            if last_checkpoint
            else "no checkpoint was written before it"
        )
        super().__init__(
            f"non-finite {', '.join(names)} at update {updates}; training stopped, {where}"
        )


def objective_scale(world_model: WorldModel, name: str) -> float:
    """The weight of objective loss ``name``: ``objective_scales[name]`` if set, else the default
    the objective declares (``Objective.loss_scales[name]``; its check requires every loss to be
    declared)."""
    given = world_model.config.objective_scales
    return float(given.get(name, world_model.objective.loss_scales[name]))


def world_model_loss(
    world_model: WorldModel, batch: Batch, grad_norms: bool = False
) -> tuple[Tensor, RSSMState, dict[str, Tensor]]:
    """The world model's scalar loss: each term of ``WorldModel.loss`` weighed, averaged over
    ``B, T``, summed.

    The weights are the world model's config: ``reward_scale``, ``cont_scale``, the KL sides'
    ``kl.dyn_scale`` and ``kl.rep_scale``, and each objective loss's ``objective_scale``.

    Args:
        world_model: the world model and its objective.
        batch: a replayed batch.
        grad_norms: also measure, for every weighed term and for the objective's terms together,
            the norm of its gradient on the parameters every objective shares (encoder and RSSM):
            one extra backward pass each.

    Returns:
        ``(loss, post, metrics)``: the scalar loss; posterior states ``[B, T]``; detached scalar
        metrics, the world model's and every weighed term as ``loss/<name>`` (``reward``, ``cont``,
        ``kl`` = dyn_scale · dyn + rep_scale · rep, ``objective/<name>``), the scale each objective
        loss was weighed with as ``scale/objective/<name>``, with ``grad_norms`` also
        ``grad_norm/shared/<name>`` for each and ``grad_norm/shared/objective`` (all objective
        terms; absent for an objective without losses).
    """
    wm = world_model.config
    terms, post, metrics = world_model.loss(batch)
    weighed = {
        "reward": wm.reward_scale * terms.pop("reward"),
        "cont": wm.cont_scale * terms.pop("cont"),
        "kl": wm.kl.dyn_scale * terms.pop("kl_dyn") + wm.kl.rep_scale * terms.pop("kl_rep"),
    }
    for name, value in terms.items():  # objective/<loss name>
        scale = objective_scale(world_model, name.removeprefix("objective/"))
        weighed[name] = scale * value
        metrics[f"scale/{name}"] = value.new_tensor(scale)
    means = {name: value.mean() for name, value in weighed.items()}
    metrics.update({f"loss/{k}": v.detach() for k, v in means.items()})
    if grad_norms:
        shared = [p for m in (world_model.encoder, world_model.rssm) for p in m.parameters()]
        own = [v for k, v in means.items() if k.startswith("objective/")]
        for name, value in {**means, **({"objective": sum(own)} if own else {})}.items():
            grads = torch.autograd.grad(value, shared, retain_graph=True, allow_unused=True)
            norms = [g.norm() for g in grads if g is not None]
            metrics[f"grad_norm/shared/{name}"] = (
                torch.stack(norms).norm() if norms else value.new_zeros(())
            ).detach()
    return torch.stack(list(means.values())).sum(), post, metrics


class DreamerModule(L.LightningModule):
    """World model + objective + actor-critic, trained with manual optimisation and three
    optimizers.

    Args:
        config: see ``AgentConfig``.
        image_shape: ``(3, 64, 64)``.
        action_dim: A.
        objective_cls: objective class from the registry.
        objective_config: instance of ``objective_cls.Config``.

    Batches (from the runtime's replay loader) are ``wmbench.types.Batch`` es of ``[B, T]`` windows.
    """

    def __init__(
        self,
        config: AgentConfig,
        image_shape: tuple[int, int, int],
        action_dim: int,
        objective_cls: type[Objective],
        objective_config: Any,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.config = config
        self.world_model = WorldModel(
            config.world_model, image_shape, action_dim, objective_cls, objective_config
        )
        self.actor_critic = ActorCritic(
            config.world_model.rssm.feat_dim, action_dim, config.actor_critic
        )
        self.updates = 0
        # compiled into CUDA graphs (``compile_mode=reduce-overhead``, set by
        # ``wmbench.runtime.device.Placement.compile_module``): acting marks its own graph steps
        self.cuda_graphs = False

    def configure_optimizers(self):
        wm, ac = self.config.world_model, self.config.actor_critic
        return [
            torch.optim.Adam(self.world_model.parameters(), lr=wm.lr, eps=wm.eps),
            torch.optim.Adam(self.actor_critic.actor.parameters(), lr=ac.actor_lr, eps=ac.eps),
            torch.optim.Adam(self.actor_critic.critic.parameters(), lr=ac.critic_lr, eps=ac.eps),
        ]

    def _step(
        self, opt, loss: Tensor, clip: float, check: tuple[str, dict[str, Tensor]] | None = None
    ) -> Tensor:
        """Backward, gradient clipping and the optimizer step; returns the gradient norm before
        clipping.

        With ``check = (name, terms)`` the loss (``loss/<name>``), the gradient norm
        (``grad_norm/<name>``) and the ``loss/*`` terms are checked before the step
        (``_check_finite``). torch's clipping is called directly because Lightning's
        ``clip_gradients`` discards the norm; it is the same operation for the ``32-true`` and
        ``bf16-mixed`` precisions, which do not scale gradients.
        """
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, clip)
        if check is not None:
            name, terms = check
            self._check_finite({f"loss/{name}": loss, f"grad_norm/{name}": norm}, terms)
        opt.step()
        return norm

    def _check_finite(
        self, values: dict[str, Tensor], terms: dict[str, Tensor] | None = None
    ) -> None:
        """Raises ``NonFiniteLossError`` unless every scalar in ``values`` is finite (one host
        sync).

        The error names the non-finite ``values`` and, first, the non-finite ``loss/*`` entries of
        ``terms`` (the world model's metrics, which hold the terms of its loss).
        """
        if bool(torch.isfinite(torch.stack([v.detach().float() for v in values.values()])).all()):
            return
        named = {k: v for k, v in (terms or {}).items() if k.startswith("loss/")}
        bad = [k for k, v in {**named, **values}.items() if not math.isfinite(float(v.detach()))]
        raise NonFiniteLossError(self.updates + 1, bad)

    def training_step(self, batch: Batch, batch_idx: int) -> dict[str, float] | None:
        """One update (see the module docstring).

        Returns:
            Every ``log_every`` updates the update's metrics row: ``train/<name>`` floats and
            ``updates``; else ``None``. Lightning hands it to the runtime's ``on_train_batch_end``.

        Raises:
            NonFiniteLossError: a loss or gradient norm is NaN or infinite.
        """
        wm_opt, actor_opt, critic_opt = self.optimizers()
        wm_cfg, ac_cfg = self.config.world_model, self.config.actor_critic

        every = self.config.grad_norm_every
        with self.toggled_optimizer(wm_opt):
            wm_loss, post, metrics = world_model_loss(
                self.world_model, batch, grad_norms=bool(every) and (self.updates + 1) % every == 0
            )
            self._step(wm_opt, wm_loss, wm_cfg.grad_clip, check=("world_model", metrics))
        self.world_model.after_update()  # the objective's EMA targets follow the stepped weights

        start = post.detach().map(lambda x: x.flatten(0, 1))
        if 0 < ac_cfg.imag_starts < len(start.deter):
            chosen = torch.randperm(len(start.deter), device=start.deter.device)[
                : ac_cfg.imag_starts
            ]
            start = start.map(lambda x: x[chosen])
        with self.toggled_optimizer(actor_opt):
            feat, ret, weight, entropy, first_action = self._imagine(start)
            actor_loss, ac_metrics = self.actor_critic.actor_loss(ret, weight, entropy)
            first_action.retain_grad()
            actor_norm = self._step(actor_opt, actor_loss, ac_cfg.grad_clip)

        with self.toggled_optimizer(critic_opt):
            critic_loss, critic_metrics = self.actor_critic.critic_loss(feat[:-1], ret, weight)
            critic_norm = self._step(critic_opt, critic_loss, ac_cfg.grad_clip)
        self._check_finite(
            {
                "loss/actor": actor_loss,
                "grad_norm/actor": actor_norm,
                "loss/critic": critic_loss,
                "grad_norm/critic": critic_norm,
            }
        )
        self.actor_critic.update_slow_critic()

        self.updates += 1
        if self.updates % self.config.log_every:
            return None
        # One row per logging update, written by the runtime: self.log() would repeat the cached
        # values at every later optimizer step (three per update in manual optimisation).
        with torch.no_grad():
            deterministic = self.actor_critic.actor.mode(self.world_model.rssm.feat(post.detach()))
        metrics["actor_saturation"] = (deterministic.abs() > 0.95).any(-1).float().mean()
        metrics["actor_grad_agreement"] = first_action.grad.sign().mean(0).abs().mean()
        metrics.update(ac_metrics)
        metrics.update(critic_metrics)
        metrics.update(
            {
                "loss/world_model": wm_loss.detach(),
                "loss/actor": actor_loss.detach(),
                "loss/critic": critic_loss.detach(),
            }
        )
        return {f"train/{k}": float(v) for k, v in metrics.items()} | {
            "updates": float(self.updates)
        }

    def _imagine(self, start: RSSMState) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Imagined rollout from ``start`` (``[N]``).

        The actor sees detached features (both papers): its gradient reaches earlier actions only
        through the dynamics.

        Returns:
            ``(feat, ret, weight, entropy, first_action)``: features ``[H + 1, N, F]``; λ-returns,
            weights and policy entropies ``[H, N]``; the first imagined actions ``[N, A]`` (the
            tensor the rollout used, for gradient diagnostics).
        """
        wm, actor = self.world_model, self.actor_critic.actor
        entropies, actions = [], []

        def policy(feat: Tensor) -> Tensor:
            dist = actor(feat.detach())
            action = dist.rsample()
            entropies.append(actor.entropy(dist, action))
            actions.append(action)
            return action

        states, _ = wm.rssm.imagine(start, policy, self.config.actor_critic.imag_horizon)
        feat = wm.rssm.feat(states)
        reward = wm.reward(feat[1:]).mean
        cont = torch.sigmoid(wm.cont_head(feat[1:]))
        ret, weight = self.actor_critic.returns(feat, reward, cont)
        return feat, ret, weight, torch.stack(entropies, 0), actions[0]

    @torch.no_grad()
    def act(
        self,
        image: Tensor,
        prev_action: Tensor,
        is_first: Tensor,
        state: RSSMState | None,
        explore: bool,
    ) -> tuple[Tensor, RSSMState]:
        """One policy step from a real observation.

        Args:
            image: uint8 ``[N, 3, 64, 64]``.
            prev_action: a_{t-1}, float32 ``[N, A]`` (zeroed where ``is_first``).
            is_first: bool ``[N]``.
            state: posterior at t-1 (``[N]``), or ``None`` at the start.
            explore: sample from the actor (plus ``expl_noise``) if true, else its mode.

        Returns:
            ``(action, post)``: action float32 ``[N, A]`` in [-1, 1]; posterior at t.
        """
        wm = self.world_model
        if state is None:
            state = wm.rssm.initial(len(image), image.device)
        post, _ = wm.rssm.obs_step(state, prev_action, wm.encoder(image), is_first)
        feat = wm.rssm.feat(post)
        actor = self.actor_critic.actor
        if not explore:
            return actor.mode(feat).clamp(-1, 1), post
        action = actor(feat).sample()
        noise = self.config.actor_critic.expl_noise
        if noise:
            action = action + noise * torch.randn_like(action)
        return action.clamp(-1, 1), post

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["wmbench_updates"] = self.updates

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.updates = checkpoint.get("wmbench_updates", 0)
