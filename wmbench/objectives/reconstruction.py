"""Image reconstruction (Hafner et al., *Dream to Control*, ICLR 2020, eq. 10, term ln q(o_t |
s_t)).

A transposed-convolution decoder maps the posterior features to the mean of a unit-variance Gaussian
over pixels; the loss is the negative log-likelihood of the observed image, summed over pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from wmbench.objectives import (
    ConvDecoder,
    ModelDims,
    Objective,
    ObjectiveInputs,
    ObjectiveOutput,
    gaussian_nll,
    image_to_float,
)


@dataclass(frozen=True)
class ReconstructionConfig:
    """Options of the reconstruction objective.

    Attributes:
        depth: channel multiplier of the decoder; 0 uses the world model's ``cnn_depth``.
    """

    depth: int = 0


class ReconstructionObjective(Objective):
    """Decoder log-likelihood -ln p(o_t | h_t, z_t), per step in nats."""

    name = "reconstruction"
    Config = ReconstructionConfig
    loss_scales = {"image": 1.0}  # the reference of the other objectives' default scales

    def __init__(self, config: ReconstructionConfig, dims: ModelDims) -> None:
        super().__init__(config, dims)
        self.decoder = ConvDecoder(
            dims.feat, config.depth or dims.cnn_depth, dims.image_shape[0], dims.cnn_act, dims.norm
        )

    def forward(self, inp: ObjectiveInputs) -> ObjectiveOutput:
        """Returns loss ``"image"`` ``[B, T]``: NLL in nats summed over ``3*64*64`` pixels."""
        mean = self.decoder(inp.feat)
        target = image_to_float(inp.image)
        nll = gaussian_nll(mean, target, event_dims=3)
        return ObjectiveOutput(
            losses={"image": nll},
            metrics={"image_mse": F.mse_loss(mean.detach(), target)},
        )

    def decode(self, feat: Tensor) -> Tensor:
        """The decoder's mean image, float32 ``[..., 3, 64, 64]`` in [-0.5, 0.5] pixel scale."""
        return self.decoder(feat)
