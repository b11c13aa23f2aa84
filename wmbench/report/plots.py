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

from wmbench.report import stats  # noqa: E402
from wmbench.rundir import BASELINE  # noqa: E402


def colours(objectives: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """One colour per objective (matplotlib's ``tab10`` cycle, in the given order)."""
    cycle = plt.get_cmap("tab10").colors
    return {o: cycle[i % len(cycle)] for i, o in enumerate(objectives)}


def plot_curves(
    table: pd.DataFrame,
    path: str | Path,
    metric: str = "eval/return",
    reps: int = 1000,
    colour: Mapping[str, tuple[float, ...]] | None = None,
) -> None:
    """Learning curves: ``metric`` against env frames, one panel per task, one colour per objective.

    Each line is the mean over seeds at each evaluation point that every seed reached, with a band
    of the pointwise 95 % bootstrap CI (``wmbench.report.stats.curve``). Objectives evaluated once
    per seed (the ``random`` baseline) are a dashed grey line at their mean.

    Args:
        table: tidy result table (``wmbench.report.store``).
        path: output PNG path.
        metric: metric to plot.
        reps: bootstrap resamples per band.
        colour: objective to colour (default ``colours`` of the sorted objectives).
    """
    rows = table[table.metric == metric]
    tasks = sorted(rows.task.unique())
    colour = colour or colours(sorted(set(rows.objective) - {BASELINE}))
    fig, axes = plt.subplots(
        1, max(1, len(tasks)), figsize=(5 * max(1, len(tasks)), 3.6), squeeze=False
    )
    for ax, task in zip(axes[0], tasks, strict=False):  # one empty panel without tasks
        for objective, group in rows[rows.task == task].groupby("objective"):
            wide = group.pivot_table(
                index="seed", columns="env_frames", values="value", aggfunc="last"
            ).dropna(axis=1)
            if wide.shape[1] == 1:
                ax.axhline(
                    wide.to_numpy().mean(), ls="--", color="grey", label=f"{objective} (mean)"
                )
                continue
            mean, low, high = stats.curve(wide.to_numpy(float), reps)
            ax.plot(wide.columns, mean, color=colour[objective], label=objective)
            ax.fill_between(wide.columns, low, high, color=colour[objective], alpha=0.2)
        ax.set_title(task)
        ax.set_xlabel("env frames")
        ax.set_ylabel(metric)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_profiles(profiles: Mapping[str, np.ndarray], taus: np.ndarray, path: str | Path,
                  colour: Mapping[str, tuple[float, ...]]) -> None:
    """Performance profiles with their 95 % CI bands (rliable's plot).

    Args:
        profiles: objective to ``[3, N]`` from ``wmbench.report.stats.profile``.
        taus: thresholds ``[N]`` (normalised score).
        path: output PNG path.
        colour: objective to colour.
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
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_aggregates(
    aggregates: pd.DataFrame, path: str | Path, colour: Mapping[str, tuple[float, ...]]
) -> None:
    """Aggregate metrics with their 95 % CIs, one panel per metric (rliable's interval plot).

    Args:
        aggregates: ``wmbench.report.stats.aggregates`` output (``objective, metric, value, ci_low,
            ci_high``).
        path: output PNG path.
        colour: objective to colour.
    """
    from rliable import plot_utils  # imports seaborn: only when a report is drawn

    metrics = list(dict.fromkeys(aggregates.metric))
    by_objective = {
        o: g.set_index("metric").loc[metrics]
        for o, g in aggregates.groupby("objective", sort=False)
    }
    fig, _ = plot_utils.plot_interval_estimates(
        {o: g.value.to_numpy() for o, g in by_objective.items()},
        {o: g[["ci_low", "ci_high"]].to_numpy().T for o, g in by_objective.items()},
        metric_names=metrics,
        algorithms=list(by_objective),
        colors=dict(colour),
        xlabel="normalised score",
        row_height=0.6,
        subfigure_width=3.0,
        xlabel_y_coordinate=-0.5 / (0.6 * len(by_objective)),  # below the ticks
    )
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
