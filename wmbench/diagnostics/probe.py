"""Linear state probe: closed-form ridge regression from latent features to the standardised state.

Features and targets are standardised with the mean and standard deviation of the training rows
(dimensions that are constant there keep scale 1). The weights solve

    (Xᵀ X + α I) W = Xᵀ Y        X, Y: standardised training features [N, F] and targets [N, Z]

and R² of dimension j on held-out rows is the out-of-sample ``1 − Σ (y − ŷ)² / Σ (y − ȳ)²`` with ȳ
the *training* mean: a perfect fit scores 1 and a probe no better than the training mean 0
(unbounded below). With few episodes the held-out ones can sit apart from the training ones (a pole
that stays up in one episode and falls in another); against the held-out mean, a probe that learned
nothing would then score far below 0, whereas here it scores about 0. The overall R² pools the sums
over the dimensions that vary (``1 − Σ_j SSE_j / Σ_j SST_j`` in standardised units, scikit-learn's
"variance_weighted"), so a dimension that barely varies in the held-out episodes cannot dominate it.
``select_alpha`` picks α from a grid by cross-validation that holds out one group (episode) at a
time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONSTANT = 1e-8
"""Standard deviations (and mean squared held-out deviations) below this count as a constant
dimension."""


def _scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(0)
    std = x.std(0)
    return mean, np.where(std < CONSTANT, 1.0, std)


@dataclass(frozen=True)
class RidgeProbe:
    """A fitted ridge probe (see the module docstring); build it with ``RidgeProbe.fit``.

    Attributes:
        x_mean, x_std: feature standardisation, float64 ``[F]``.
        y_mean, y_std: target standardisation, float64 ``[Z]``.
        weight: float64 ``[F, Z]``, from standardised features to standardised targets.
    """

    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: np.ndarray
    y_std: np.ndarray
    weight: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> RidgeProbe:
        """Fit on training rows.

        Args:
            x: features ``[N, F]`` (any float dtype).
            y: targets ``[N, Z]``, e.g. the physics state ``[qpos, qvel]``.
            alpha: ridge penalty α ≥ 0 on standardised features.

        Raises:
            ValueError: ``x`` and ``y`` are not 2-D with the same number of rows (≥ 2), or
                ``alpha < 0``.
        """
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) < 2:
            raise ValueError(
                f"ridge probe needs x [N, F] and y [N, Z] with the same N >= 2, got {x.shape} and "
                f"{y.shape}"
            )
        if alpha < 0:
            raise ValueError(f"ridge alpha must be >= 0, got {alpha}")
        x_mean, x_std = _scale(x)
        y_mean, y_std = _scale(y)
        xs, ys = (x - x_mean) / x_std, (y - y_mean) / y_std
        weight = np.linalg.solve(xs.T @ xs + alpha * np.eye(x.shape[1]), xs.T @ ys)
        return cls(x_mean, x_std, y_mean, y_std, weight)

    def standardise(self, y: np.ndarray) -> np.ndarray:
        """Targets ``[..., Z]`` in the probe's standardised units."""
        return (np.asarray(y, np.float64) - self.y_mean) / self.y_std

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Standardised target prediction ``[..., Z]`` (float64) for features ``[..., F]``."""
        return ((np.asarray(x, np.float64) - self.x_mean) / self.x_std) @ self.weight

    def r2(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
        """R² on held-out rows (see the module docstring).

        Args:
            x: features ``[N, F]``.
            y: targets ``[N, Z]`` in the original units.

        Returns:
            ``(per_dim, overall)``: float64 ``[Z]``, NaN where ``y`` equals the training mean in all
            these rows; the pooled R² over the other dimensions (NaN if none is left).
        """
        target = self.standardise(y)
        residual = ((target - self.predict(x)) ** 2).sum(0)
        total = (target**2).sum(0)  # around the training mean, 0 in standardised units
        per_dim = np.full(target.shape[1], np.nan)
        varies = total > CONSTANT * len(target)
        per_dim[varies] = 1.0 - residual[varies] / total[varies]
        overall = (
            1.0 - residual[varies].sum() / total[varies].sum() if varies.any() else float("nan")
        )
        return per_dim, float(overall)


def select_alpha(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, alphas: tuple[float, ...]
) -> tuple[float, list[float]]:
    """Ridge penalty with the best mean held-out R² when each group in turn is held out.

    Args:
        x: features ``[N, F]``.
        y: targets ``[N, Z]``.
        groups: group (e.g. episode) of each row, ``[N]``; at least two distinct values.
        alphas: candidate penalties (ties go to the larger one).

    Returns:
        ``(alpha, scores)``: the chosen α and the mean overall R² of every candidate (NaN-free folds
        averaged; NaN if none).

    Raises:
        ValueError: fewer than two groups, or no candidate.
    """
    values = np.unique(groups)
    if len(values) < 2 or not alphas:
        raise ValueError(
            f"alpha selection needs >= 2 groups and >= 1 candidate, got {len(values)} and "
            f"{len(alphas)}"
        )
    scores = []
    for alpha in alphas:
        folds = [
            RidgeProbe.fit(x[groups != g], y[groups != g], alpha).r2(
                x[groups == g], y[groups == g]
            )[1]
            for g in values
        ]
        finite = [f for f in folds if np.isfinite(f)]
        scores.append(float(np.mean(finite)) if finite else float("nan"))
    best = max(range(len(alphas)), key=lambda i: (np.nan_to_num(scores[i], nan=-np.inf), alphas[i]))
    return float(alphas[best]), scores
