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

from dataclasses import dataclass

import torch
import torch.nn.functional as F

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

    def __post_init__(self) -> None:
        if self.units < 1 or self.layers < 1 or not self.min_std > 0:
            raise ValueError(
                "units and layers must be >= 1 and min_std > 0, got "
                f"{self.units}, {self.layers}, {self.min_std}"
            )


class ContrastiveObjective(Objective):
    """InfoNCE between posterior states and observation embeddings, per step in nats."""

    name = "contrastive"
    Config = ContrastiveConfig
    # Matched to reconstruction's gradient norm on the shared encoder and RSSM at initialisation
    # (reports/objective-scales.md; wmbench.diagnostics.scales).
    loss_scales = {"infonce": 1.9}

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
