"""Figures from the result store (matplotlib, headless): learning curves, aggregates, performance
profiles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from wmbench.report import stats  # noqa: E402
from wmbench.rundir import BASELINES  # noqa: E402

METRIC_LABELS = {
    "eval/return": "evaluation return",
    "train/episode_return": "training episode return",
}
"""Axis labels of the metrics the figures plot (other metrics keep their key)."""

BASELINE_STYLES = {
    "zero": {"color": "black", "linestyle": ":", "label": "zero action"},
    "random": {"color": "grey", "linestyle": "--", "label": "uniform random"},
}
"""How every figure draws the trivial baselines (horizontal lines at their mean)."""

MAX_TICKS = 4
"""At most this many major ticks on an x-axis whose numbers could collide."""

AGGREGATE_TICKS = 2
"""At most this many intervals between ticks on each narrow panel of ``plot_aggregates``."""


def colours(objectives: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """One colour per objective (matplotlib's ``tab10`` cycle in the given order, the suite's).

    Every figure of a suite (its ``curves.png`` and the report's figures, diagnostics included)
    takes its colours from this one map, built from the suite's objective order.
    """
    cycle = plt.get_cmap("tab10").colors
    return {o: cycle[i % len(cycle)] for i, o in enumerate(objectives)}


def _save(fig: Figure, path: str | Path, **kwargs) -> Figure:
    """Saves ``fig`` as a PNG, closes it and returns it (its artists stay inspectable)."""
    fig.savefig(path, dpi=110, **kwargs)
    plt.close(fig)
    return fig


def plot_curves(
    table: pd.DataFrame,
    path: str | Path,
    colour: Mapping[str, tuple[float, ...]],
    metric: str = "eval/return",
    reps: int = 1000,
) -> Figure:
    """Learning curves: ``metric`` against env frames, one panel per task, one colour per objective.

    Each line is the mean over seeds at each evaluation point that every seed reached, with a band
    of the pointwise 95 % bootstrap CI (``wmbench.report.stats.curve``). The baselines (evaluated
    once per seed) are horizontal lines at their mean, styled by ``BASELINE_STYLES``.

    Args:
        table: tidy result table (``wmbench.report.store``).
        path: output PNG path.
        colour: objective to colour (``colours``); objectives outside it are not drawn.
        metric: metric to plot.
        reps: bootstrap resamples per band.

    Returns:
        The figure (saved and closed).
    """
    rows = table[table.metric == metric]
    tasks = sorted(rows.task.unique())
    fig, axes = plt.subplots(
        1, max(1, len(tasks)), figsize=(5 * max(1, len(tasks)), 3.6), squeeze=False
    )
    for ax, task in zip(axes[0], tasks, strict=False):  # one empty panel without tasks
        part = rows[rows.task == task]
        for objective in colour:
            group = part[part.objective == objective]
            if group.empty:
                continue
            wide = group.pivot_table(
                index="seed", columns="env_frames", values="value", aggfunc="last"
            ).dropna(axis=1)
            mean, low, high = stats.curve(wide.to_numpy(float), reps)
            ax.plot(wide.columns, mean, color=colour[objective], label=objective)
            ax.fill_between(wide.columns, low, high, color=colour[objective], alpha=0.2)
        for policy in BASELINES:
            values = part[part.objective == policy].value
            if len(values):
                ax.axhline(values.mean(), **BASELINE_STYLES[policy])
        ax.set_title(task)
        ax.set_xlabel("env frames")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.xaxis.set_major_locator(MaxNLocator(MAX_TICKS + 2))
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def profile_taus(matrices: Mapping[str, np.ndarray], points: int) -> np.ndarray:
    """Thresholds τ ``[points]`` spanning the normalised scores of ``matrices`` with a 10 % margin
    each side (a profile over [0, 1] would be flat where no score is)."""
    scores = np.concatenate([m.ravel() for m in matrices.values()])
    low, high = float(scores.min()), float(scores.max())
    margin = 0.1 * (high - low) or 0.05
    return np.linspace(low - margin, high + margin, points)


def plot_profiles(
    profiles: Mapping[str, np.ndarray],
    taus: np.ndarray,
    path: str | Path,
    colour: Mapping[str, tuple[float, ...]],
) -> Figure:
    """Performance profiles with their 95 % CI bands (rliable's plot).

    Args:
        profiles: objective to ``[3, N]`` from ``wmbench.report.stats.profile``.
        taus: thresholds ``[N]`` (normalised score; ``profile_taus``).
        path: output PNG path.
        colour: objective to colour.

    Returns:
        The figure (saved and closed).
    """
    from rliable import plot_utils  # imports seaborn: only when a report is drawn

    fig, ax = plt.subplots(figsize=(6, 3.6))
    plot_utils.plot_performance_profiles(
        {k: v[0] for k, v in profiles.items()},
        taus,
        performance_profile_cis={k: (v[1], v[2]) for k, v in profiles.items()},
        ax=ax,
        colors=dict(colour),
        xlabel=r"normalised score $\tau$",
        ylabel=r"fraction of runs with score $> \tau$",
        labelsize="medium",
        ticklabelsize="small",
    )
    ax.set_xlim(taus[0], taus[-1])
    ax.xaxis.set_major_locator(MaxNLocator(MAX_TICKS + 2))
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return _save(fig, path)


def plot_aggregates(
    aggregates: pd.DataFrame, path: str | Path, colour: Mapping[str, tuple[float, ...]]
) -> Figure:
    """Aggregate metrics with their 95 % CIs, one panel per metric (rliable's interval plot).

    Args:
        aggregates: ``wmbench.report.stats.aggregates`` output (``objective, metric, value, ci_low,
            ci_high``).
        path: output PNG path.
        colour: objective to colour.

    Returns:
        The figure (saved and closed).
    """
    from rliable import plot_utils  # imports seaborn: only when a report is drawn

    metrics = list(dict.fromkeys(aggregates.metric))
    by_objective = {
        o: g.set_index("metric").loc[metrics]
        for o, g in aggregates.groupby("objective", sort=False)
    }
    fig, axes = plot_utils.plot_interval_estimates(
        {o: g.value.to_numpy() for o, g in by_objective.items()},
        {o: g[["ci_low", "ci_high"]].to_numpy().T for o, g in by_objective.items()},
        metric_names=metrics,
        algorithms=list(by_objective),
        colors=dict(colour),
        xlabel="normalised score",
        row_height=0.6,
        subfigure_width=3.4,
        xlabel_y_coordinate=-0.5 / (0.6 * len(by_objective)),  # below the ticks
    )
    for ax in np.atleast_1d(axes):  # rliable's large tick labels collide, within and across panels
        ax.xaxis.set_major_locator(MaxNLocator(AGGREGATE_TICKS))
        ax.tick_params(axis="x", labelsize="small")
    return _save(fig, path, bbox_inches="tight")
