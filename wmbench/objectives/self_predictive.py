"""Self-predictive representations (Schwarzer et al., *SPR*, ICLR 2021, Sec. 2; loss of BYOL,
Grill et al., NeurIPS 2020, Sec. 3.1, eq. 2).

From every posterior state s_t the RSSM's prior is rolled forward open-loop with the recorded
actions, ŝ_{t+k} = img_step(ŝ_{t+k−1}, a_{t+k−1}) for k = 1..K (ŝ_t = s_t). A predictor MLP maps
each imagined state to ŷ_{t+k} ∈ R^E, which must match the embedding ỹ_{t+k} = f_ξ(o_{t+k}) of an
EMA target encoder f_ξ (ξ ← τ ξ + (1 − τ) θ after each update; no gradient). The loss is BYOL's
normalised squared error, summed over the horizon:

    L_t = Σ_{k=1..K} m_{t,k} (2 − 2 ŷ_{t+k}·ỹ_{t+k} / (‖ŷ_{t+k}‖ ‖ỹ_{t+k}‖))

with m_{t,k} = 1 when t + k is inside the sequence and no episode starts in (t, t + k]. There are no
negatives; the predictor and the slow target keep the representation from collapsing.

Differences from SPR: the target is the EMA encoder's embedding itself (SPR adds an EMA projection
head, which needs online and predicted latents in one space; here the RSSM state and the embedding
have different sizes), and the online images are not augmented (the world model sees the same
pixels under every objective). SPR uses τ = 0 with augmentation and τ = 0.99 without.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from wmbench.nn.nets import MLP, ConvEncoder
from wmbench.objectives.base import ModelDims, Objective, ObjectiveInputs, ObjectiveOutput
from wmbench.objectives.ema import EMATarget


@dataclass(frozen=True)
class SelfPredictiveConfig:
    """Options of the self-predictive objective.

    Attributes:
        horizon: K, open-loop prediction steps from each posterior state (5, SPR).
        units: hidden width of the predictor MLP (400).
        layers: hidden layers of the predictor MLP (2).
        target_fraction: share of the online encoder moved into the EMA target per update,
            1 − τ (0.05).
    """

    horizon: int = 5
    units: int = 400
    layers: int = 2
    target_fraction: float = 0.05

    def __post_init__(self) -> None:
        if self.horizon < 1 or not 0 < self.target_fraction <= 1:
            raise ValueError(
                "objective_config: horizon must be >= 1 and target_fraction in (0, 1], got "
                f"{self.horizon}, {self.target_fraction}"
            )


class SelfPredictiveObjective(Objective):
    """K-step latent self-prediction of EMA-target embeddings, per step (Σ_k 2 − 2 cos)."""

    name = "self_predictive"
    Config = SelfPredictiveConfig

    def __init__(self, config: SelfPredictiveConfig, dims: ModelDims) -> None:
        super().__init__(config, dims)
        self.predictor = MLP(dims.feat, dims.embed, config.units, config.layers)
        self.target = EMATarget({"encoder": ConvEncoder(dims.cnn_depth, dims.image_shape[0])})

    def forward(self, inp: ObjectiveInputs) -> ObjectiveOutput:
        """Returns loss ``"self_predictive"`` ``[B, T]`` in [0, 4K]; zero where no future step is
        valid."""
        if self.training:
            self.target.update({"encoder": inp.encoder}, self.config.target_fraction)
        with torch.no_grad():
            target = self.target["encoder"](inp.image)  # [B, T, E]
        batch, steps = inp.is_first.shape
        state = inp.post.map(lambda x: x.flatten(0, 1))
        valid = torch.ones_like(inp.is_first)
        loss = inp.feat.new_zeros(batch, steps)
        cosines = []
        for k in range(1, min(self.config.horizon, steps - 1) + 1):
            # position t uses a_{t+k-1} = prev_action[t+k] and targets o_{t+k}; beyond T is padding
            action = F.pad(inp.prev_action[:, k:], (0, 0, 0, k))
            state = inp.rssm.img_step(state, action.flatten(0, 1))
            valid = valid & torch.cat([~inp.is_first[:, k:], valid.new_zeros(batch, k)], 1)
            pred = self.predictor(inp.rssm.feat(state)).reshape(batch, steps, -1)
            cos = F.cosine_similarity(pred, F.pad(target[:, k:], (0, 0, 0, k)), dim=-1)
            loss = loss + valid * (2 - 2 * cos)
            cosines.append(cos.detach()[valid])
        cosines = torch.cat(cosines) if cosines else loss.new_zeros(0)
        metrics = {"cosine": cosines.mean()} if cosines.numel() else {}
        return ObjectiveOutput(losses={"self_predictive": loss}, metrics=metrics)
