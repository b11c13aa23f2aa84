"""The report's diagnostics section: state-probe R² per objective × task, error against horizon,
strips.

Reads only what ``wmbench diagnose`` left in the run directories: the ``diagnose/*`` rows of the
result store (``wmbench.report.store``) and the ``diagnostics/open_loop.png`` strips.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from wmbench.configio import load_yaml
from wmbench.diagnostics.config import PROBES
from wmbench.report.plots import _save
from wmbench.report.store import collect
from wmbench.rundir import CONFIG, DIAGNOSTICS, read_status, run_id

PROBE_TITLES = {
    "feat": "R² feat",
    "deter": "R² deter",
    "random_feat": "R² feat, random init",
    "random_deter": "R² deter, random init",
}
QUANTITIES = {
    "reward": "reward squared error",
    "state": "state-probe squared error (std. units)",
    "image": "probe-decoder pixel MSE",
    "decoder_image": "objective's decoder pixel MSE",
}

PerTask = Callable[[pd.DataFrame], pd.DataFrame]
"""``scores (objective, task, seed, value) -> (task, objective, mean, ci_low, ci_high, seeds)``,
e.g. ``functools.partial(wmbench.report.stats.per_task, reps=2000, seed=0)``."""


def r2_table(table: pd.DataFrame, per_task: PerTask) -> pd.DataFrame:
    """Held-out state-probe R² per task × objective, mean and CI over seeds for each probe.

    Args:
        table: tidy result table (``wmbench.report.store``) holding ``diagnose/r2/<probe>`` rows.
        per_task: see ``PerTask``.

    Returns:
        Columns ``task, objective, seeds`` and one ``"mean [low, high]"`` text column per probe
        (titles from ``PROBE_TITLES``), sorted by task and objective.
    """
    out: pd.DataFrame | None = None
    for probe in PROBES:
        rows = table[table.metric == f"diagnose/r2/{probe}"]
        scores = (
            rows.sort_values("env_frames")
            .groupby(["objective", "task", "seed"], as_index=False)
            .last()
        )
        stats = per_task(scores[["objective", "task", "seed", "value"]])
        text = [
            f"{m:.2f} [{lo:.2f}, {hi:.2f}]"
            for m, lo, hi in zip(stats["mean"], stats.ci_low, stats.ci_high, strict=True)
        ]
        column = stats[["task", "objective", "seeds"]].assign(**{PROBE_TITLES[probe]: text})
        out = (
            column
            if out is None
            else out.merge(column.drop(columns="seeds"), on=["task", "objective"], how="outer")
        )
    return out.sort_values(["task", "objective"]).reset_index(drop=True)


def horizon_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The open-loop rows as columns ``objective, task, seed, quantity, horizon, value`` (horizon 1
    … n)."""
    rows = table[table.metric.str.startswith("diagnose/open_loop/")]
    parts = rows.metric.str.removeprefix("diagnose/open_loop/").str.rsplit("@", n=1, expand=True)
    return rows.assign(quantity=parts[0], horizon=parts[1].astype(int))[
        ["objective", "task", "seed", "quantity", "horizon", "value"]
    ]


def plot_horizon(
    frame: pd.DataFrame, path: str | Path, colour: Mapping[str, tuple[float, ...]]
) -> Figure:
    """Prediction error against horizon step: one row of panels per task, one panel per quantity.

    Lines are the mean over seeds per objective (colours from ``colour``, the report's map); the
    band spans the seeds' minimum to maximum. Horizon steps are integers on the x-axis.

    Args:
        frame: see ``horizon_frame``.
        path: output PNG.
        colour: objective to colour (``wmbench.report.plots.colours``); others are not drawn.

    Returns:
        The figure (saved and closed).
    """
    tasks = sorted(frame.task.unique())
    quantities = [q for q in QUANTITIES if q in set(frame.quantity)]
    fig, axes = plt.subplots(
        len(tasks),
        len(quantities),
        figsize=(3.6 * len(quantities), 2.8 * len(tasks)),
        squeeze=False,
    )
    for row, task in zip(axes, tasks, strict=True):
        for ax, quantity in zip(row, quantities, strict=True):
            part = frame[(frame.task == task) & (frame.quantity == quantity)]
            for objective in colour:
                group = part[part.objective == objective]
                if group.empty:
                    continue
                stats = group.groupby("horizon")["value"].agg(["mean", "min", "max"]).reset_index()
                ax.plot(stats["horizon"], stats["mean"], marker=".", label=objective,
                        color=colour[objective])
                ax.fill_between(stats["horizon"], stats["min"], stats["max"], alpha=0.2,
                                color=colour[objective])
            ax.set_title(task, fontsize=8)
            ax.set_xlabel("imagined steps after the context")
            ax.set_ylabel(QUANTITIES[quantity], fontsize=8)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _strips(
    run_dirs: Sequence[str | Path], labels: Sequence[str]
) -> dict[tuple[str, str, int], Path]:
    """``(task, label, seed) -> run_dir`` of the finished runs that have an open-loop strip."""
    found = {}
    for run_dir, label in zip(map(Path, run_dirs), labels, strict=True):
        if (
            read_status(run_dir).get("status") == "done"
            and (run_dir / DIAGNOSTICS / "open_loop.png").exists()
        ):
            cfg = load_yaml(run_dir / CONFIG)
            found[(cfg["env"]["task"], label, cfg["seed"])] = run_dir
    return found


def diagnostics_section(
    run_dirs: Sequence[str | Path],
    labels: Sequence[str],
    out_dir: str | Path,
    per_task: PerTask,
    colour: Mapping[str, tuple[float, ...]],
    suite: str = "",
) -> str:
    """Markdown of the report's diagnostics section, with its figures written under ``out_dir``.

    Writes ``out_dir/diagnostics/horizon.png`` and copies one open-loop strip per objective × task
    (the lowest seed that has one) to ``out_dir/diagnostics/<run_id>.png``; the markdown links them
    relative to ``out_dir``. Runs without ``wmbench diagnose`` output, or not ``done``, are left
    out.

    Args:
        run_dirs: run directories (e.g. a suite's).
        labels: each run's objective label (the suite's name of its objective or variant).
        out_dir: the report's directory.
        per_task: mean and CI over seeds, see ``PerTask``.
        colour: objective label to colour (the report's ``wmbench.report.plots.colours``).
        suite: suite name for the result store's ``suite`` column.

    Returns:
        The section, starting with ``## Representation diagnostics``; if no run has diagnostics, a
        short section saying how to make them.
    """
    heading = "## Representation diagnostics\n\n"
    table = collect([Path(d) for d in run_dirs], suite, list(labels))
    table = table[table.metric.str.startswith("diagnose/")]
    if table.empty:
        return (
            heading
            + "No run has diagnostics yet: run `wmbench diagnose RUN_DIR` on each run directory.\n"
        )
    figures = Path(out_dir) / DIAGNOSTICS
    figures.mkdir(parents=True, exist_ok=True)
    plot_horizon(horizon_frame(table), figures / "horizon.png", colour)
    strips: dict[tuple[str, str], str] = {}
    for (task, objective, seed), run_dir in sorted(_strips(run_dirs, labels).items()):
        if (task, objective) not in strips:  # one strip per objective x task: the lowest seed
            name = run_id(objective, task, seed)
            shutil.copyfile(run_dir / DIAGNOSTICS / "open_loop.png", figures / f"{name}.png")
            strips[(task, objective)] = (
                f"![{objective} on {task}, seed {seed}]({DIAGNOSTICS}/{name}.png)"
            )
    return (
        heading
        + "Ridge probes from the latent features to the standardised physics state (`qpos`, "
        "`qvel`; angles of unlimited hinges as cosine and sine), fitted on episodes of the "
        "agent's own policy and scored on held-out episodes (R² pooled over state dimensions; "
        "1 is perfect, 0 no better than the training mean). `feat` = [deter, stoch], `deter` "
        "alone; *random init* is the same probe on an untrained world model of the same "
        "configuration, the floor. Mean over seeds with 95 % CI.\n\n"
        + r2_table(table, per_task).to_markdown(index=False)
        + "\n\nOpen-loop prediction on held-out episodes: after k observed frames the world model "
        "imagines with the recorded actions; errors per horizon step (pixel errors through a "
        "probe decoder trained on detached features, and through the objective's own decoder "
        "where it has one).\n\n"
        + f"![error against horizon]({DIAGNOSTICS}/horizon.png)\n\n"
        + "Truth vs prediction, first held-out window (left of the red line: observed context).\n\n"
        + "\n\n".join(strips.values())
        + "\n"
    )
