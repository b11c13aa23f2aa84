"""The world model: encoder, RSSM, reward and continue heads (core), plus one objective.

World-model loss per replayed ``(B, T)`` position (Dream to Control, eq. 10, with KL balancing and
free nats from DreamerV3):

    L = reward_scale · −ln p(r_t | s_t) + cont_scale · −ln p(c_t | s_t) + KL_balanced(q, p)
        + Σ_k objective_k

Each term is averaged over ``B, T`` and summed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmbench.nn.nets import ConvEncoder, ScalarHead, gaussian_nll
from wmbench.nn.rssm import RSSM, KLConfig, RSSMConfig
from wmbench.objectives import ModelDims, Objective, ObjectiveInputs
from wmbench.objectives.base import check_output
from wmbench.types import RSSMState


@dataclass(frozen=True)
class WorldModelConfig:
    """World-model networks and loss weights.

    Attributes:
        rssm: RSSM sizes.
        kl: KL balancing and free nats.
        cnn_depth: encoder/decoder channel multiplier (Dreamer: 32).
        units: hidden width of the reward and continue heads (400).
        layers: hidden layers of the reward and continue heads (2).
        reward_scale: weight of the reward NLL (1.0).
        cont_scale: weight of the continue NLL (1.0).
        objective_scales: weight per objective loss name (missing names weigh 1.0).
        lr: Adam learning rate (6e-4, Dreamer v1).
        eps: Adam epsilon (1e-5).
        grad_clip: gradient-norm clip (100).
    """

    rssm: RSSMConfig = field(default_factory=RSSMConfig)
    kl: KLConfig = field(default_factory=KLConfig)
    cnn_depth: int = 32
    units: int = 400
    layers: int = 2
    reward_scale: float = 1.0
    cont_scale: float = 1.0
    objective_scales: dict[str, Any] = field(default_factory=dict)
    lr: float = 6e-4
    eps: float = 1e-5
    grad_clip: float = 100.0


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
        self.encoder = ConvEncoder(config.cnn_depth, image_shape[0])
        self.rssm = RSSM(config.rssm, self.encoder.embed_dim, action_dim)
        feat = config.rssm.feat_dim
        self.reward_head = ScalarHead(feat, config.units, config.layers)
        self.cont_head = ScalarHead(feat, config.units, config.layers)
        self.dims = ModelDims(
            image_shape=tuple(image_shape),
            embed=self.encoder.embed_dim,
            deter=config.rssm.deter,
            stoch=config.rssm.stoch_flat,
            feat=feat,
            action=action_dim,
            cnn_depth=config.cnn_depth,
        )
        self.objective = objective_cls(objective_config, self.dims)

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, RSSMState, dict[str, Tensor]]:
        """World-model loss on one replayed batch.

        Args:
            batch: ``image`` uint8 ``[B, T, 3, 64, 64]``, ``prev_action`` float32 ``[B, T, A]``,
                ``reward`` float32 ``[B, T]``, ``is_first``/``is_terminal`` bool ``[B, T]``.

        Returns:
            ``(loss, post, metrics)``: scalar loss; posterior states ``[B, T]`` (for imagination
            starts); detached scalar metrics, including every weighted loss term as
            ``loss/<name>``.
        """
        is_first = batch["is_first"]
        prev_action = batch["prev_action"] * (~is_first)[..., None].float()
        embed = self.encoder(batch["image"])
        post, prior = self.rssm.observe(embed, prev_action, is_first)
        feat = self.rssm.feat(post)
        kl, metrics = self.rssm.kl_loss(post, prior, self.config.kl)
        terms = {
            "reward": self.config.reward_scale * gaussian_nll(self.reward_head(feat), batch["reward"]),
            "cont": self.config.cont_scale
            * F.binary_cross_entropy_with_logits(
                self.cont_head(feat), (~batch["is_terminal"]).float(), reduction="none"
            ),
            "kl": kl,
        }
        out = self.objective(
            ObjectiveInputs(
                image=batch["image"],
                embed=embed,
                post=post,
                prior=prior,
                feat=feat,
                prev_action=prev_action,
                reward=batch["reward"],
                is_first=is_first,
                encoder=self.encoder,
                rssm=self.rssm,
            )
        )
        check_output(self.objective.name, out, tuple(feat.shape[:2]))
        for name, value in out.losses.items():
            terms[f"objective/{name}"] = float(self.config.objective_scales.get(name, 1.0)) * value
        means = {name: value.mean() for name, value in terms.items()}
        total = torch.stack(list(means.values())).sum()
        metrics.update({f"loss/{k}": v.detach() for k, v in means.items()})
        metrics.update({f"objective/{k}": v.detach() for k, v in out.metrics.items()})
        return total, post, metrics
