"""Statistics of final scores with stratified-bootstrap confidence intervals, via ``rliable``.

Follows Agarwal et al., *Deep Reinforcement Learning at the Edge of the Statistical Precipice*,
NeurIPS 2021: scores are arranged as one ``[R, M]`` matrix per objective (``R`` runs, i.e. seeds;
``M`` tasks), aggregates are the interquartile mean (IQM), mean, median and optimality gap of
normalised scores, pairs of objectives are compared by the probability of improvement, and every
estimate carries a percentile 95 % confidence interval from a bootstrap that resamples runs within
each task (stratified bootstrap).

rliable draws its resamples from NumPy's global random generator; ``seeded`` fixes it for the
duration of one estimate and restores it afterwards, so a report is reproducible and the CI of one
objective does not depend on which others are in the report.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Mapping

import numpy as np
import pandas as pd
from rliable import library as rly
from rliable import metrics

CONFIDENCE = 0.95
AGGREGATES: dict[str, Callable[[np.ndarray], float]] = {
    "IQM": metrics.aggregate_iqm,
    "mean": metrics.aggregate_mean,
    "median": metrics.aggregate_median,
    "optimality gap": metrics.aggregate_optimality_gap,
}


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed NumPy's global generator (which rliable's bootstrap uses) and restore it on exit."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def normalise(scores: pd.DataFrame, references: Mapping[str, tuple[float, float]]) -> pd.DataFrame:
    """Add a ``score`` column: ``(value - low) / (high - low)`` with the task's reference pair.

    Args:
        scores: rows with ``task`` and ``value`` (e.g. ``wmbench.report.store.final_scores``).
        references: task to ``(low, high)`` in return units, ``high > low``.

    Raises:
        ValueError: a task of ``scores`` has no reference (names the tasks to add).
    """
    missing = sorted(set(scores.task) - set(references))
    if missing:
        raise ValueError(
            f"no reference (low, high) for task(s) {', '.join(missing)}; add them to the suite's "
            "'references'"
        )
    low = scores.task.map(lambda t: references[t][0])
    high = scores.task.map(lambda t: references[t][1])
    return scores.assign(score=(scores.value - low) / (high - low))


def score_matrices(
    scores: pd.DataFrame, column: str = "score"
) -> tuple[dict[str, np.ndarray], list[str]]:
    """One ``[R, M]`` matrix per objective (rows: seeds done on every task; columns: sorted tasks).

    Args:
        scores: one row per run with ``objective, task, seed`` and ``column``.
        column: the value to arrange.

    Returns:
        ``(objective -> float matrix [R, M], tasks)``; an objective without a seed done on every
        task is left out.
    """
    tasks = sorted(scores.task.unique())
    wide = scores.pivot_table(
        index=["objective", "seed"], columns="task", values=column, aggfunc="first"
    )
    wide = wide.reindex(columns=tasks).dropna()
    matrices = {
        o: wide.loc[o].to_numpy(float) for o in wide.index.get_level_values("objective").unique()
    }
    return matrices, tasks


def interval(
    matrices: Mapping[str, np.ndarray],
    func: Callable[[np.ndarray], np.ndarray],
    reps: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Point estimate and stratified-bootstrap CI of ``func`` per matrix.

    Args:
        matrices: name to score array ``[R, M, ...]`` (or a list of arrays for functions of
            several samples, resampled independently, e.g. probability of improvement).
        func: array(s) -> 1-D array of estimates ``[K]``.
        reps: bootstrap resamples.
        seed: seed of the resampling.

    Returns:
        name to array ``[3, K]``: point estimate, lower and upper bound of the 95 % CI.
    """
    out = {}
    for (
        key,
        scores,
    ) in matrices.items():  # each with the same seed: its CI does not depend on the others
        with seeded(seed):
            points, cis = rly.get_interval_estimates(
                {"k": scores}, func, reps=reps, confidence_interval_size=CONFIDENCE
            )
        out[key] = np.vstack([np.atleast_1d(points["k"]), np.asarray(cis["k"]).reshape(2, -1)])
    return out


def per_task(scores: pd.DataFrame, reps: int, seed: int = 0, column: str = "value") -> pd.DataFrame:
    """Mean over seeds of each objective on each task, with its bootstrap 95 % CI.

    Args:
        scores: one row per run with ``objective, task, seed`` and ``column``.
        reps, seed: see ``interval``.

    Returns:
        Columns ``task, objective, mean, ci_low, ci_high, seeds``, sorted by task and objective.
    """
    groups = {
        key: g[column].to_numpy(float)[:, None] for key, g in scores.groupby(["task", "objective"])
    }
    estimates = interval(groups, lambda x: np.array([x.mean()]), reps, seed)
    rows = [(t, o, *estimates[(t, o)][:, 0], len(groups[(t, o)])) for t, o in sorted(groups)]
    return pd.DataFrame(rows, columns=["task", "objective", "mean", "ci_low", "ci_high", "seeds"])


def aggregates(matrices: Mapping[str, np.ndarray], reps: int, seed: int = 0) -> pd.DataFrame:
    """IQM, mean, median and optimality gap (γ = 1) over runs and tasks, with 95 % CIs.

    Args:
        matrices: objective to normalised scores ``[R, M]`` (same tasks for all).
        reps, seed: see ``interval``.

    Returns:
        Columns ``objective, metric, value, ci_low, ci_high`` (metrics in ``AGGREGATES`` order).
    """
    estimates = interval(
        matrices, lambda x: np.array([f(x) for f in AGGREGATES.values()]), reps, seed
    )
    rows = [(o, m, *estimates[o][:, i]) for o in matrices for i, m in enumerate(AGGREGATES)]
    return pd.DataFrame(rows, columns=["objective", "metric", "value", "ci_low", "ci_high"])


def improvement(matrices: Mapping[str, np.ndarray], reps: int, seed: int = 0) -> pd.DataFrame:
    """Probability of improvement P(X > Y) for every unordered pair of objectives, with 95 % CIs.

    P(X > Y) is the Mann–Whitney U statistic of X's runs against Y's runs on each task, divided by
    ``R_X · R_Y`` (ties count one half) and averaged over tasks; P(Y > X) = 1 − P(X > Y).

    Args:
        matrices: objective to scores ``[R, M]`` (same tasks; ``R`` may differ between objectives).
        reps, seed: see ``interval``.

    Returns:
        Columns ``x, y, probability, ci_low, ci_high``, pairs in the order of ``matrices``.
    """
    pairs = {(x, y): [matrices[x], matrices[y]] for x, y in itertools.combinations(matrices, 2)}
    if not pairs:
        return pd.DataFrame(columns=["x", "y", "probability", "ci_low", "ci_high"])
    estimates = interval(
        pairs, lambda x, y: np.array([metrics.probability_of_improvement(x, y)]), reps, seed
    )
    rows = [(x, y, *estimates[(x, y)][:, 0]) for x, y in pairs]
    return pd.DataFrame(rows, columns=["x", "y", "probability", "ci_low", "ci_high"])


def curve(values: np.ndarray, reps: int, seed: int = 0) -> np.ndarray:
    """Mean over runs at each evaluation point with pointwise 95 % bootstrap CIs.

    Args:
        values: returns ``[R, P]`` (R runs, P evaluation points, no missing values).
        reps, seed: see ``interval``.

    Returns:
        ``[3, P]``: mean, lower and upper bound.
    """
    return interval({"curve": values[:, None, :]}, lambda x: x.mean(axis=(0, 1)), reps, seed)[
        "curve"
    ]


def profile(
    matrices: Mapping[str, np.ndarray], taus: np.ndarray, reps: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """Performance profile: fraction of runs (over all tasks) with score > τ, with 95 % CIs.

    Args:
        matrices: objective to normalised scores ``[R, M]``.
        taus: thresholds ``[N]``.
        reps, seed: see ``interval``.

    Returns:
        objective to ``[3, N]``: fraction, lower and upper bound.
    """
    with seeded(seed):
        fractions, cis = rly.create_performance_profile(
            dict(matrices), taus, reps=reps, confidence_interval_size=CONFIDENCE
        )
    return {k: np.vstack([fractions[k], cis[k]]) for k in fractions}
