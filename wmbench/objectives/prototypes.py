"""Prototypical representations (Deng, Jang & Ahn, *DreamerPro*, ICML 2022, Sec. 3), built on SwAV
(Caron et al., NeurIPS 2020, Sec. 3.1).

M learnable prototypes c_1..c_M (unit vectors of size P) stand in for the image decoder:

1. Two views o^(1), o^(2) of every observation sequence by random shifts (DrQ), one shift per
   sequence. An EMA target of the encoder and of the observation projection maps each view to a
   unit vector; its prototype scores go through Sinkhorn–Knopp (``sinkhorn``), which returns
   assignments w_t^(v) ∈ Δ^M that use every prototype equally over the batch.
2. SwAV term (swapped prediction): the online encoder's projection of one view predicts the other
   view's assignment, p_t^(v) = softmax_k(x_t^(v) · c_k / temperature) and

       L_swav = −½ Σ_k [w_{t,k}^(2) ln p_{t,k}^(1) + w_{t,k}^(1) ln p_{t,k}^(2)].

3. Temporal term: the projection y_t of the model state s_t = (h_t, z_t) predicts the same
   assignments, L_temp = −½ Σ_v Σ_k w_{t,k}^(v) ln softmax_k(y_t · c_k / temperature). The state
   carries the past observations and actions through h_t, which is how the prototypes learn the
   temporal structure.

Difference from the paper: DreamerPro runs the RSSM on both augmented views; here the world model
observes the unaugmented images (the core losses are the same for every objective), so the temporal
term predicts the views' assignments from the posterior state of the unaugmented sequence. The
prototype freezing of the first updates and the projection-norm penalty of DreamerPro's code are
left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmbench.objectives import (
    EMATarget,
    ModelDims,
    Objective,
    ObjectiveInputs,
    ObjectiveOutput,
    random_shift,
)


@dataclass(frozen=True)
class PrototypesConfig:
    """Options of the prototypes objective.

    Attributes:
        prototypes: M, number of prototypes (2500).
        proj_dim: P, size of the projections and prototypes (32).
        temperature: softmax temperature of the online predictions (0.1).
        sinkhorn_eps: ε, entropic regularisation of the Sinkhorn–Knopp assignment (0.0125);
            smaller is closer to hard assignments.
        sinkhorn_iters: Sinkhorn–Knopp iterations (3).
        target_fraction: share of the online encoder/projection moved into the EMA target per
            update, 1 − τ in BYOL's notation (0.05).
        shift: largest random shift of the augmented views in pixels (4, DrQ).
    """

    prototypes: int = 2500
    proj_dim: int = 32
    temperature: float = 0.1
    sinkhorn_eps: float = 0.0125
    sinkhorn_iters: int = 3
    target_fraction: float = 0.05
    shift: int = 4

    def __post_init__(self) -> None:
        if self.prototypes < 1 or self.proj_dim < 1 or self.sinkhorn_iters < 1 or self.shift < 0:
            raise ValueError("prototypes, proj_dim and sinkhorn_iters must be >= 1, shift >= 0")
        if self.temperature <= 0 or self.sinkhorn_eps <= 0 or not 0 < self.target_fraction <= 1:
            raise ValueError(
                "temperature and sinkhorn_eps must be > 0, target_fraction in (0, 1]"
            )


@torch.no_grad()
def sinkhorn(scores: Tensor, eps: float, iters: int) -> Tensor:
    """Sinkhorn–Knopp soft assignment of N samples to M prototypes (SwAV, Sec. 3.1).

    Starts from Q = exp(scores / ε) and alternately rescales so that each prototype's column holds
    1/M of the mass and each sample's row 1/N (the equipartition constraint), in log space; the
    result is scaled by N so that each row is a distribution over prototypes.

    Args:
        scores: float ``[N, M]`` similarities (e.g. cosines of unit projections and prototypes).
        eps: ε > 0.
        iters: number of (column, row) rescaling rounds.

    Returns:
        ``[N, M]`` assignments, no gradient: every row sums to 1 exactly and every column to N/M
        approximately (exactly in the limit of many iterations).
    """
    num, protos = scores.shape
    log_q = scores.to(torch.promote_types(scores.dtype, torch.float32)) / eps
    log_q = log_q - torch.logsumexp(log_q.flatten(), 0)
    for _ in range(iters):
        log_q = log_q - torch.logsumexp(log_q, 0, keepdim=True) - math.log(protos)
        log_q = log_q - torch.logsumexp(log_q, 1, keepdim=True) - math.log(num)
    return (log_q + math.log(num)).exp()


class PrototypesObjective(Objective):
    """DreamerPro's SwAV and temporal prototype losses, per step in nats."""

    name = "prototypes"
    Config = PrototypesConfig
    # Matched to reconstruction's gradient norm on the shared encoder and RSSM at initialisation
    # (reports/objective-scales.md; wmbench.diagnostics.scales).
    loss_scales = {"swav": 23.0, "temporal": 23.0}

    def __init__(self, config: PrototypesConfig, dims: ModelDims) -> None:
        super().__init__(config, dims)
        self.prototypes = nn.Parameter(
            F.normalize(torch.randn(config.prototypes, config.proj_dim), dim=-1)
        )
        self.obs_proj = nn.Linear(dims.embed, config.proj_dim)
        self.feat_proj = nn.Linear(dims.feat, config.proj_dim)
        self.target = EMATarget.with_encoder(
            dims, config.target_fraction, proj=nn.Linear(dims.embed, config.proj_dim)
        )

    def after_update(self, encoder: nn.Module, rssm: nn.Module) -> None:
        """Moves the EMA target encoder and projection toward the online ones."""
        self.target.update(encoder=encoder, proj=self.obs_proj)

    def _log_probs(self, proj: Tensor, protos: Tensor) -> Tensor:
        """``[..., P]`` projections to log-softmax over prototypes ``[..., M]``."""
        return F.log_softmax(F.normalize(proj, dim=-1) @ protos.T / self.config.temperature, dim=-1)

    def forward(self, inp: ObjectiveInputs) -> ObjectiveOutput:
        """Returns losses ``"swav"`` and ``"temporal"``, each ``[B, T]`` cross-entropies in nats."""
        cfg = self.config
        views = torch.cat(
            [random_shift(inp.image, cfg.shift), random_shift(inp.image, cfg.shift)], 0
        )  # [2B, T, ...]
        protos = F.normalize(self.prototypes, dim=-1)
        with torch.no_grad():
            target = F.normalize(self.target["proj"](self.target["encoder"](views)), dim=-1)
            assign = sinkhorn(
                (target @ protos.T).flatten(0, 1), cfg.sinkhorn_eps, cfg.sinkhorn_iters
            )
            w1, w2 = assign.reshape(*target.shape[:2], -1).chunk(2, 0)
        p1, p2 = self._log_probs(self.obs_proj(inp.encoder(views)), protos).chunk(2, 0)
        swav = -0.5 * ((w2 * p1).sum(-1) + (w1 * p2).sum(-1))
        temporal = -0.5 * ((w1 + w2) * self._log_probs(self.feat_proj(inp.feat), protos)).sum(-1)
        used = torch.unique(assign.argmax(-1)).numel() / cfg.prototypes
        return ObjectiveOutput(
            losses={"swav": swav, "temporal": temporal},
            metrics={"prototypes_used": torch.tensor(float(used))},
        )
