"""DreamerV3's robust scalar predictions: symlog, symexp and the two-hot distribution.

Hafner et al., *Mastering Diverse Domains through World Models* (DreamerV3, 2023), Sec. 2
("Robust predictions"): rewards and returns of unknown scale are predicted in symlog space,
``symlog(x) = sign(x) ln(|x| + 1)``, as a categorical distribution over K equally spaced bins
b_1 < … < b_K. A target y is encoded "two-hot": its weight is split between the two bins that
enclose ``symlog(y)``, each weighted by its closeness, and the loss is the cross-entropy with that
encoding; the prediction is ``symexp(Σ_k p_k b_k)``. Large and small targets then give gradients
of the same size, and the prediction can move across orders of magnitude in a few updates.
"""

from __future__ import annotations

import torch
from torch import Tensor

BINS_LOW = -20.0
BINS_HIGH = 20.0
"""Range of the two-hot bins in symlog space: symexp(20) ≈ 4.9e8, beyond any return here."""


def symlog(x: Tensor) -> Tensor:
    """``sign(x) · ln(|x| + 1)``, elementwise; ``symexp`` inverts it."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: Tensor) -> Tensor:
    """``sign(x) · (exp(|x|) − 1)``, elementwise; the inverse of ``symlog``."""
    return torch.sign(x) * torch.expm1(x.abs())


class TwoHot:
    """Categorical over K bins equally spaced in symlog space, read as a scalar.

    Args:
        logits: float ``[..., K]`` (K ≥ 2), unnormalised log-probabilities of the bins
            ``linspace(BINS_LOW, BINS_HIGH, K)``.
    """

    def __init__(self, logits: Tensor) -> None:
        if logits.shape[-1] < 2:
            raise ValueError(
                f"TwoHot needs at least 2 bins, got logits of shape {tuple(logits.shape)}"
            )
        self.logits = logits
        self.bins = torch.linspace(
            BINS_LOW, BINS_HIGH, logits.shape[-1], device=logits.device, dtype=logits.dtype
        )

    @property
    def mean(self) -> Tensor:
        """The prediction ``symexp(Σ_k softmax(logits)_k · b_k)``, float ``[...]``."""
        return symexp(self.logits.softmax(-1) @ self.bins)

    def log_prob(self, target: Tensor) -> Tensor:
        """Log-likelihood of ``target`` under the two-hot encoding of ``symlog(target)`` (nats).

        A target outside the bins' range counts as the nearest end bin.

        Args:
            target: float ``[...]``, the batch shape of the logits.

        Returns:
            float ``[...]``: ``Σ_k w_k log softmax(logits)_k`` with the two-hot weights w of the
            target (the negative cross-entropy).
        """
        k = len(self.bins)
        position = ((symlog(target) - BINS_LOW) / (BINS_HIGH - BINS_LOW) * (k - 1)).clamp(0, k - 1)
        below = position.floor().clamp(max=k - 2)
        above_weight = position - below
        log_probs = self.logits.log_softmax(-1)
        index = below.long().unsqueeze(-1)
        return (1 - above_weight) * log_probs.gather(-1, index).squeeze(
            -1
        ) + above_weight * log_probs.gather(-1, index + 1).squeeze(-1)
