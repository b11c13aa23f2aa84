"""Figures from the result store (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def plot_curves(table: pd.DataFrame, path: str | Path, metric: str = "eval/return") -> None:
    """Learning curves: ``metric`` against env frames, one panel per task, one line per objective.

    Each line is the mean over seeds at each evaluation point, with a band from the minimum to the
    maximum seed. Objectives evaluated only once (e.g. the ``random`` baseline) are drawn as a
    dashed horizontal line at their mean.

    Args:
        table: tidy result table (``wmbench.report.store``).
        path: output PNG path.
        metric: metric to plot.
    """
    rows = table[table.metric == metric]
    tasks = sorted(rows.task.unique())
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(5 * max(1, len(tasks)), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for objective, group in rows[rows.task == task].groupby("objective"):
            stats = group.groupby("env_frames")["value"].agg(["mean", "min", "max"]).reset_index()
            if len(stats) == 1:
                ax.axhline(stats["mean"].iloc[0], ls="--", color="grey", label=f"{objective} (mean)")
                continue
            ax.plot(stats["env_frames"], stats["mean"], label=objective)
            ax.fill_between(stats["env_frames"], stats["min"], stats["max"], alpha=0.2)
        ax.set_title(task)
        ax.set_xlabel("env frames")
        ax.set_ylabel(metric)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
