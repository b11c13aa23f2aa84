"""Self-predictive representations (Schwarzer et al., *SPR*, ICLR 2021, Sec. 2; loss and projection
heads of BYOL, Grill et al., NeurIPS 2020, Sec. 3.1).

From every posterior state s_t the RSSM's prior is rolled forward open-loop with the recorded
actions, ŝ_{t+k} = img_step(ŝ_{t+k−1}, a_{t+k−1}) for k = 1..K (ŝ_t = s_t). A predictor MLP maps
each imagined state into the encoder's embedding space, ẑ_{t+k} (SPR's transition output); the
online projection g and prediction head q give ŷ_{t+k} = q(g(ẑ_{t+k})). The target is
ỹ_{t+k} = g_ξ(f_ξ(o_{t+k})), the embedding of an EMA target encoder f_ξ through the EMA target
projection g_ξ (ξ ← τ ξ + (1 − τ) θ after each update; no gradient). The loss is BYOL's normalised
squared error, summed over the horizon:

    L_t = Σ_{k=1..K} m_{t,k} (2 − 2 ŷ_{t+k}·ỹ_{t+k} / (‖ŷ_{t+k}‖ ‖ỹ_{t+k}‖))

with m_{t,k} = 1 when t + k is inside the sequence and no episode starts in (t, t + k]. There are no
negatives; the prediction head and the slow target keep the representation from collapsing.

g and q are BYOL's MLPs (Linear, BatchNorm, ReLU, Linear), whose batch normalisation removes the
component shared by all embeddings: raw embeddings of unrelated frames are nearly parallel (cosine
≈ 0.98 measured on cartpole), which leaves a cosine loss on them next to no signal. The online
images are not augmented (the world model sees the same pixels under every objective), so the
target moves with τ = 0.99, SPR's value without augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wmbench.objectives import (
    MLP,
    EMATarget,
    ModelDims,
    Objective,
    ObjectiveInputs,
    ObjectiveOutput,
)


@dataclass(frozen=True)
class SelfPredictiveConfig:
    """Options of the self-predictive objective.

    Attributes:
        horizon: K, open-loop prediction steps from each posterior state (5, SPR).
        units: hidden width of the predictor MLP (400).
        layers: hidden layers of the predictor MLP (2).
        proj_dim: P, output size of the projection g and prediction head q (256); their hidden
            width is ``units``.
        target_fraction: share of the online encoder and projection moved into the EMA target per
            update, 1 − τ (0.01, SPR without augmentation).
    """

    horizon: int = 5
    units: int = 400
    layers: int = 2
    proj_dim: int = 256
    target_fraction: float = 0.01

    def __post_init__(self) -> None:
        if self.horizon < 1 or not 0 < self.target_fraction <= 1:
            raise ValueError(
                "horizon must be >= 1 and target_fraction in (0, 1], got "
                f"{self.horizon}, {self.target_fraction}"
            )


def byol_mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """BYOL's projection/prediction MLP: Linear, BatchNorm, ReLU, Linear; input ``[N, in_dim]``.

    The batch normalisation always uses the batch's statistics and keeps no running ones: they
    would be state changed by every forward (the objective only runs in training mode, where
    BatchNorm uses batch statistics anyway).
    """
    return nn.Sequential(
        nn.Linear(in_dim, hidden),
        nn.BatchNorm1d(hidden, track_running_stats=False),
        nn.ReLU(),
        nn.Linear(hidden, out_dim),
    )


class SelfPredictiveObjective(Objective):
    """K-step latent self-prediction of EMA-target embeddings, per step (Σ_k 2 − 2 cos)."""

    name = "self_predictive"
    Config = SelfPredictiveConfig
    # Matched to reconstruction's gradient norm on the shared encoder and RSSM at initialisation
    # (reports/objective-scales.md; wmbench.diagnostics.scales).
    loss_scales = {"self_predictive": 320.0}

    def __init__(self, config: SelfPredictiveConfig, dims: ModelDims) -> None:
        super().__init__(config, dims)
        self.predictor = MLP(
            dims.feat, dims.embed, config.units, config.layers, dims.act, dims.norm
        )
        self.projection = byol_mlp(dims.embed, config.units, config.proj_dim)
        self.head = byol_mlp(config.proj_dim, config.units, config.proj_dim)
        self.target = EMATarget.with_encoder(
            dims,
            config.target_fraction,
            projection=byol_mlp(dims.embed, config.units, config.proj_dim),
        )

    def after_update(self, encoder: nn.Module, rssm: nn.Module) -> None:
        """Moves the EMA target encoder and projection toward the online ones."""
        self.target.update(encoder=encoder, projection=self.projection)

    def forward(self, inp: ObjectiveInputs) -> ObjectiveOutput:
        """Returns loss ``"self_predictive"`` ``[B, T]`` in [0, 4K]; zero where no future step is
        valid."""
        batch, steps = inp.is_first.shape
        with torch.no_grad():
            embed = self.target["encoder"](inp.image).flatten(0, 1)
            target = self.target["projection"](embed).reshape(batch, steps, -1)  # [B, T, P]
        state = inp.post.map(lambda x: x.flatten(0, 1))
        valid = torch.ones_like(inp.is_first)
        loss = inp.feat.new_zeros(batch, steps)
        cosines = []
        for k in range(1, min(self.config.horizon, steps - 1) + 1):
            # position t uses a_{t+k-1} = prev_action[t+k] and targets o_{t+k}; beyond T is padding
            action = F.pad(inp.prev_action[:, k:], (0, 0, 0, k))
            state = inp.rssm.img_step(state, action.flatten(0, 1))
            valid = valid & torch.cat([~inp.is_first[:, k:], valid.new_zeros(batch, k)], 1)
            pred = self.head(self.projection(self.predictor(inp.rssm.feat(state))))
            pred = pred.reshape(batch, steps, -1)
            cos = F.cosine_similarity(pred, F.pad(target[:, k:], (0, 0, 0, k)), dim=-1)
            loss = loss + valid * (2 - 2 * cos)
            cosines.append(cos.detach()[valid])
        cosines = torch.cat(cosines) if cosines else loss.new_zeros(0)
        metrics = {"cosine": cosines.mean()} if cosines.numel() else {}
        return ObjectiveOutput(losses={"self_predictive": loss}, metrics=metrics)
