"""Contrastive estimation (Hafner et al., *Dream to Control*, ICLR 2020, Sec. 4, eq. 12).

Instead of predicting the image from the state, a state model q(s_t | o_t) predicts the state from
the image. The InfoNCE bound on the mutual information between states and observations is

    ln q(s_t | o_t) − ln Σ_{o' ∈ batch} q(s_t | o')

where the other observations of the batch (all B·T positions) are the negatives (van den Oord et
al., 2018). Here the state s_t is the posterior feature vector ``feat = [h_t, z_t]`` and q is a
diagonal Gaussian whose mean and std come from an MLP on the observation embedding e_t. Gradients
reach the encoder (through q) and the RSSM (through the state).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from wmbench.nn.nets import MLP
from wmbench.objectives.base import ModelDims, Objective, ObjectiveInputs, ObjectiveOutput


@dataclass(frozen=True)
class ContrastiveConfig:
    """Options of the contrastive objective.

    Attributes:
        units: hidden width of the state model q(s_t | o_t) (400).
        layers: hidden layers of the state model (2).
        min_std: lower bound of its standard deviation (0.1).
    """

    units: int = 400
    layers: int = 2
    min_std: float = 0.1


def info_nce(scores: Tensor) -> Tensor:
    """InfoNCE loss from a square score matrix.

    Args:
        scores: float ``[N, N]``; ``scores[i, j]`` is the log-score of state i under observation j;
            the diagonal holds the positive pairs.

    Returns:
        ``[N]`` losses ``logsumexp_j scores[i, j] − scores[i, i]`` (nats, ≥ 0). Equals ``ln N`` when
        all scores are equal (an uninformative model).
    """
    return torch.logsumexp(scores, dim=1) - scores.diagonal()


def gaussian_log_density_matrix(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """``out[i, j] = ln N(x_i; mean_j, diag(std_j²))`` for every pair, via matrix products.

    Args:
        x: ``[N, F]`` points.
        mean, std: ``[M, F]`` Gaussian parameters (std > 0).

    Returns:
        ``[N, M]`` log-densities in nats.
    """
    prec = std.pow(-2)
    quad = x.pow(2) @ prec.T - 2 * x @ (mean * prec).T + (mean.pow(2) * prec).sum(-1)
    log_norm = std.log().sum(-1) + 0.5 * x.shape[-1] * math.log(2 * math.pi)
    return -0.5 * quad - log_norm


class ContrastiveObjective(Objective):
    """InfoNCE between posterior states and observation embeddings, per step in nats."""

    name = "contrastive"
    Config = ContrastiveConfig

    def __init__(self, config: ContrastiveConfig, dims: ModelDims) -> None:
        super().__init__(config, dims)
        self.state_model = MLP(
            dims.embed, 2 * dims.feat, config.units, config.layers, dims.act, dims.norm
        )

    def forward(self, inp: ObjectiveInputs) -> ObjectiveOutput:
        """Returns loss ``"infonce"`` ``[B, T]`` (nats); negatives are all other B·T positions."""
        batch_shape = inp.feat.shape[:2]
        mean, std = self.state_model(inp.embed).flatten(0, 1).chunk(2, -1)
        std = F.softplus(std) + self.config.min_std
        scores = gaussian_log_density_matrix(inp.feat.flatten(0, 1), mean, std)
        loss = info_nce(scores)
        accuracy = (
            (scores.argmax(1) == torch.arange(len(scores), device=scores.device)).float().mean()
        )
        return ObjectiveOutput(
            losses={"infonce": loss.reshape(batch_shape)}, metrics={"accuracy": accuracy.detach()}
        )
