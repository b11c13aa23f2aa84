"""Contrastive estimation helpers: the InfoNCE loss (van den Oord et al., *Representation Learning
with Contrastive Predictive Coding*, 2018, eq. 4) from a score matrix, and diagonal-Gaussian
log-density score matrices."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def info_nce(scores: Tensor) -> Tensor:
    """InfoNCE loss from a square score matrix whose diagonal holds the positive pairs.

    Args:
        scores: float ``[N, N]``; ``scores[i, j]`` is the log-score (logit) of candidate j for
            query i; the other N − 1 candidates of row i are its negatives.

    Returns:
        float ``[N]`` losses ``logsumexp_j scores[i, j] − scores[i, i]`` (nats, ≥ 0): the
        cross-entropy of picking the positive among N candidates. Equals ``ln N`` when all scores
        are equal (an uninformative model).
    """
    return torch.logsumexp(scores, dim=1) - scores.diagonal()


def gaussian_log_density_matrix(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """``out[i, j] = ln N(x_i; mean_j, diag(std_j²))`` for every pair, via matrix products.

    Args:
        x: float ``[N, F]`` points.
        mean, std: float ``[M, F]`` Gaussian parameters (std > 0).

    Returns:
        float ``[N, M]`` log-densities in nats.
    """
    prec = std.pow(-2)
    quad = x.pow(2) @ prec.T - 2 * x @ (mean * prec).T + (mean.pow(2) * prec).sum(-1)
    log_norm = std.log().sum(-1) + 0.5 * x.shape[-1] * math.log(2 * math.pi)
    return -0.5 * quad - log_norm
