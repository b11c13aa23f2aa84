"""Probe decoder: an image decoder trained on detached world-model features.

Gives every objective, decoder-free ones included, a view of what its latent holds in pixels
without changing what it learns: the decoder (Dreamer's ``ConvDecoder``) sees features detached
from the world model, and only its own parameters are in its optimizer. Loss: mean squared error
per pixel in the encoder's [-0.5, 0.5] scale (the log-likelihood of a unit-variance Gaussian up to
scale and constant, as in the ``reconstruction`` objective).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from wmbench.nn.nets import ConvDecoder, image_to_float


def train_probe_decoder(
    feat: Tensor,
    image: Tensor,
    depth: int,
    steps: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
) -> tuple[ConvDecoder, list[float]]:
    """Fit a fresh ``ConvDecoder`` from features to images.

    Args:
        feat: features ``[N, F]``; detached here, so no gradient reaches whatever produced them.
        image: uint8 ``[N, 3, 64, 64]`` in [0, 255], the observation of each feature's row.
        depth: channel multiplier of the decoder (the world model's ``cnn_depth``).
        steps: Adam steps (≥ 0), each on ``batch_size`` rows drawn with replacement.
        batch_size: rows per step.
        lr: Adam learning rate.
        seed: seed of the decoder's initialisation and the row sampling.

    Returns:
        ``(decoder, losses)``: the decoder in eval mode; the per-pixel MSE of each step
        (``[steps]``).

    Raises:
        ValueError: ``feat`` and ``image`` differ in rows, or there are none.
    """
    if len(feat) != len(image) or len(feat) == 0:
        raise ValueError(
            f"probe decoder needs as many feature rows as images (> 0), got {len(feat)} and "
            f"{len(image)}"
        )
    feat = feat.detach()
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        decoder = ConvDecoder(feat.shape[-1], depth, image.shape[1])
    opt = torch.optim.Adam(decoder.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        rows = torch.randint(0, len(feat), (batch_size,), generator=generator)
        loss = F.mse_loss(decoder(feat[rows]), image_to_float(image[rows]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return decoder.eval(), losses
