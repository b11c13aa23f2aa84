"""Temporal predictive coding (Nguyen, Shu, Pham, Bui & Ermon, *TPC*, ICML 2021, Sec. 3).

TPC replaces reconstruction with a contrastive bound on the mutual information between the next
observation's encoding and the model's prediction of it from the past, I(E(o_t); s_{t−1}, a_{t−1}),
estimated with InfoNCE (CPC, van den Oord et al., 2018). Here the prediction is the RSSM's prior at
t — h_t = f(h_{t−1}, z_{t−1}, a_{t−1}) and z_t ~ p(z_t | h_t), which has not seen o_t — and the
critic is a diagonal Gaussian density over a linear code u_t = W e_t of the observation embedding,
with mean and std from an MLP on the prior's features:

    L_t = ln Σ_{j ∈ batch} N(u_j; μ(p_t), σ(p_t)) − ln N(u_t; μ(p_t), σ(p_t))

where the other B·T − 1 observations of the batch are the negatives. Positions where an episode
starts (the prior knows nothing yet) score 0. The consistency (KL) and reward terms of TPC are the
world model's core terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wmbench.objectives import (
    MLP,
    ModelDims,
    Objective,
    ObjectiveInputs,
    ObjectiveOutput,
    gaussian_log_density_matrix,
    info_nce,
)


@dataclass(frozen=True)
class TPCConfig:
    """Options of the temporal predictive coding objective.

    Attributes:
        code: size of the observation code u_t = W e_t (32).
        units: hidden width of the prediction MLP on the prior's features (400).
        layers: hidden layers of the prediction MLP (2).
        min_std: lower bound of the predicted standard deviation (0.1).
    """

    code: int = 32
    units: int = 400
    layers: int = 2
    min_std: float = 0.1

    def __post_init__(self) -> None:
        if self.code < 1 or self.units < 1 or self.layers < 1 or not self.min_std > 0:
            raise ValueError(
                "code, units and layers must be >= 1 and min_std > 0, got "
                f"{self.code}, {self.units}, {self.layers}, {self.min_std}"
            )


class TPCObjective(Objective):
    """InfoNCE of the prior's prediction at t against the observation embeddings, nats per step."""

    name = "tpc"
    Config = TPCConfig
    # Matched to reconstruction's gradient norm on the shared encoder and RSSM at initialisation
    # (reports/objective-scales.md; wmbench.diagnostics.scales).
    loss_scales = {"tpc": 49.0}

    def __init__(self, config: TPCConfig, dims: ModelDims) -> None:
        super().__init__(config, dims)
        self.code = nn.Linear(dims.embed, config.code)
        self.predictor = MLP(
            dims.feat, 2 * config.code, config.units, config.layers, dims.act, dims.norm
        )

    def forward(self, inp: ObjectiveInputs) -> ObjectiveOutput:
        """Returns loss ``"tpc"`` ``[B, T]`` (nats, 0 where ``is_first``); negatives are all B·T
        observations."""
        mean, std = self.predictor(inp.rssm.feat(inp.prior)).flatten(0, 1).chunk(2, -1)
        std = F.softplus(std) + self.config.min_std
        code = self.code(inp.embed).flatten(0, 1)
        scores = gaussian_log_density_matrix(code, mean, std).T  # [prediction i, observation j]
        loss = info_nce(scores).reshape(inp.is_first.shape) * (~inp.is_first)
        accuracy = (
            (scores.argmax(1) == torch.arange(len(scores), device=scores.device)).float().mean()
        )
        return ObjectiveOutput(losses={"tpc": loss}, metrics={"accuracy": accuracy.detach()})
