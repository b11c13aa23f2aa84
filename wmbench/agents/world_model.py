"""The world model: encoder, RSSM, reward and continue heads (core), plus one objective.

``WorldModel.loss`` returns the unscaled per-position terms of the world-model loss (Dream to
Control, eq. 10, with KL balancing and free nats from DreamerV3): −ln p(r_t | s_t),
−ln p(c_t | s_t), the two KL sides and each objective loss. ``wmbench.agents.module`` weighs them
(``WorldModelConfig``'s scales), averages each over ``B, T`` and sums.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Normal

from wmbench.agents.config import WorldModelConfig
from wmbench.nn.dists import TwoHot
from wmbench.nn.nets import ConvEncoder, ScalarHead, TwoHotHead
from wmbench.nn.rssm import RSSM
from wmbench.objectives import ModelDims, Objective, ObjectiveInputs
from wmbench.objectives.check import check_output
from wmbench.types import Batch, RSSMState


class WorldModel(nn.Module):
    """Encoder + RSSM + reward/continue heads + a representation objective.

    Args:
        config: see ``WorldModelConfig``.
        image_shape: ``(3, 64, 64)``.
        action_dim: A.
        objective_cls: the objective's class (from ``wmbench.objectives.get``).
        objective_config: an instance of ``objective_cls.Config``.
    """

    def __init__(
        self,
        config: WorldModelConfig,
        image_shape: tuple[int, int, int],
        action_dim: int,
        objective_cls: type[Objective],
        objective_config: Any,
    ) -> None:
        super().__init__()
        self.config = config
        self.encoder = ConvEncoder(config.cnn_depth, image_shape[0], config.cnn_act, config.norm)
        self.rssm = RSSM(config.rssm, self.encoder.embed_dim, action_dim)
        feat = config.rssm.feat_dim
        head = (feat, config.units, config.layers, config.act, config.norm)
        self.reward_head = (
            TwoHotHead(*head) if config.reward_head == "symlog_twohot" else ScalarHead(*head)
        )
        self.cont_head = ScalarHead(*head)
        self.dims = ModelDims(
            image_shape=tuple(image_shape),
            embed=self.encoder.embed_dim,
            deter=config.rssm.deter,
            stoch=config.rssm.stoch_flat,
            feat=feat,
            action=action_dim,
            cnn_depth=config.cnn_depth,
            cnn_act=config.cnn_act,
            act=config.act,
            norm=config.norm,
        )
        self.objective = objective_cls(objective_config, self.dims)
        self.after_update()  # the objective's targets start as copies of the online networks

    @torch.no_grad()
    def after_update(self) -> None:
        """The objective's ``after_update`` hook (EMA targets move): called when the world model is
        built and by ``DreamerModule`` after each world-model optimizer step."""
        self.objective.after_update(self.encoder, self.rssm)

    def reward(self, feat: Tensor) -> TwoHot | Normal:
        """p(r_t | s_t): a ``TwoHot`` (``symlog_twohot``) or a unit-variance ``Normal``
        (``gaussian``) over the reward, batch shape ``feat.shape[:-1]``."""
        out = self.reward_head(feat)
        return Normal(out, 1.0) if isinstance(out, Tensor) else out

    def loss(self, batch: Batch) -> tuple[dict[str, Tensor], RSSMState, dict[str, Tensor]]:
        """The unscaled terms of the world-model loss on one replayed batch.

        Every row is trained, the first row of each window included: the RSSM resets there
        (``prev_action`` is zeroed where ``is_first``) and the reward and continue heads learn that
        row's stored ``reward`` and ``is_terminal`` (see ``wmbench.data.replay.Replay.sample``).

        Args:
            batch: a replayed batch (``wmbench.types.Batch``); ``is_last`` is not used.

        Returns:
            ``(terms, post, metrics)``: float ``[B, T]`` per-position terms ``reward`` (NLL of r_t
            under ``reward``), ``cont`` (Bernoulli NLL of c_t = 1 − is_terminal), ``kl_dyn`` and
            ``kl_rep`` (nats, free nats applied, see ``RSSM.kl_loss``) and ``objective/<name>`` per
            objective loss; posterior states ``[B, T]`` (imagination starts); detached scalar
            metrics ``kl`` (unclamped mean KL, nats) and ``objective/<name>`` (the objective's
            metrics).
        """
        is_first = batch.is_first
        prev_action = batch.prev_action * (~is_first)[..., None].float()
        embed = self.encoder(batch.image)
        post, prior = self.rssm.observe(embed, prev_action, is_first)
        feat = self.rssm.feat(post)
        dyn, rep, metrics = self.rssm.kl_loss(
            post, prior, self.config.kl.free_nats, self.config.kl.per
        )
        terms = {
            "reward": -self.reward(feat).log_prob(batch.reward),
            "cont": F.binary_cross_entropy_with_logits(
                self.cont_head(feat), (~batch.is_terminal).float(), reduction="none"
            ),
            "kl_dyn": dyn,
            "kl_rep": rep,
        }
        out = self.objective(
            ObjectiveInputs(
                image=batch.image,
                embed=embed,
                post=post,
                prior=prior,
                feat=feat,
                prev_action=prev_action,
                reward=batch.reward,
                is_first=is_first,
                encoder=self.encoder,
                rssm=self.rssm,
            )
        )
        check_output(self.objective, out, tuple(feat.shape[:2]))
        terms.update({f"objective/{name}": value for name, value in out.losses.items()})
        metrics.update({f"objective/{k}": v.detach() for k, v in out.metrics.items()})
        return terms, post, metrics
