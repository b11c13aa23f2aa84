"""The learning-cpu figure: the reconstruction agent per seed against the trivial baselines, the
SheepRL DreamerV3 peer run at the same budget, and the published DreamerV3 and CURL curves on
cartpole-swingup.

    python reports/learning-cpu/figure.py SUITE_DIR   # writes reports/learning-cpu/curves.png

Left: evaluation returns (wmbench's deterministic policy every 8k frames; the peer's final
evaluation, ``peer/sheeprl-s0-final.csv``, at 80k). Right: training-episode returns averaged in
8k-frame bins (the episodes ending in (8k·i, 8k·(i+1)] plotted at the bin's centre), the
measurement the published DreamerV3 curve is: wmbench's ``train/episode_return`` and the peer's
``peer/sheeprl-s0-episodes.csv`` (``peer/run.sh`` makes both peer files).

``published-cartpole-swingup.csv`` holds the published runs' mean, min and max over 10 seeds:
DreamerV3 (Hafner et al. 2023, episode scores of its 1M-frame dmc_vision runs, averaged over 8k
frame bins) and CURL (Srinivas et al. 2020, evaluations every 20k frames), both from the score
files of github.com/danijar/dreamerv3 (``scores/dmc_vision-{dreamerv3,curl}.json.gz``, commit
e3f0224). Both use action repeat 2 and dm_control's standard render; the suite uses 8 and fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from wmbench.report.comparison import BASELINE_NAMES, baseline_scores
from wmbench.report.plots import BASELINE_STYLES
from wmbench.report.store import load
from wmbench.rundir import UNTRAINED

HERE = Path(__file__).parent
BIN = 8000
"""Env frames per bin of the training-episode panel (the published DreamerV3 curve's)."""
PEER = {"color": "tab:red", "label": "SheepRL DreamerV3, seed 0 (same budget)"}
PUBLISHED = {"dreamerv3": ("DreamerV3", "tab:purple"), "curl": ("CURL", "tab:olive")}


def binned(frames: pd.Series, returns: pd.Series) -> pd.Series:
    """Mean return of the episodes ending in each ``BIN``-frame bin, indexed by the bin's centre."""
    centre = ((frames - 1) // BIN) * BIN + BIN // 2
    return returns.groupby(centre.values).mean()


def plot_published(ax: plt.Axes, last_frame: float, methods: list[str]) -> None:
    published = pd.read_csv(HERE / "published-cartpole-swingup.csv")
    for method in methods:
        rows = published[(published.method == method) & (published.env_frames <= last_frame)]
        name, colour = PUBLISHED[method]
        ax.plot(rows.env_frames, rows["mean"], ls="--", color=colour,
                label=f"{name} (published, 10 seeds)")
        ax.fill_between(rows.env_frames, rows["min"], rows["max"], color=colour, alpha=0.12)


def main(suite_dir: str) -> Path:
    table, _ = load(suite_dir)
    agents = table[~table.objective.isin(["zero", "random"])]
    last_frame = agents.env_frames.max()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    colours = {}
    runs = agents.groupby(["objective", "seed"])
    for (objective, seed), run in runs:
        run = run[run.metric == "eval/return"].sort_values("env_frames")
        line = left.plot(run.env_frames, run.value, marker="o",
                         label=f"{objective}, seed {seed} (wmbench)")
        colours[objective, seed] = line[0].get_color()
    final = HERE / "peer" / "sheeprl-s0-final.csv"
    if final.exists():
        returns = pd.read_csv(final)["return"]
        left.errorbar([last_frame], [returns.mean()], yerr=[[returns.mean() - returns.min()],
                      [returns.max() - returns.mean()]], fmt="s", color=PEER["color"], capsize=3,
                      label=f"{PEER['label']}: final, {len(returns)} episodes (min–max)")
    plot_published(left, last_frame, ["dreamerv3", "curl"])
    baselines = baseline_scores(table).groupby("objective").value.mean()
    styles = {**BASELINE_STYLES, UNTRAINED: {"color": "brown", "linestyle": "-."}}
    for ax in (left, right):
        for key, value in baselines.items():
            style = {k: v for k, v in styles[key].items() if k != "label"}
            ax.axhline(value, label=f"{BASELINE_NAMES[key]} ({value:.0f})", **style)
    for (objective, seed), run in runs:
        run = run[run.metric == "train/episode_return"]
        curve = binned(run.env_frames, run.value)
        right.plot(curve.index, curve.values, marker="o", color=colours.get((objective, seed)),
                   label=f"{objective}, seed {seed} (wmbench)")
    episodes = HERE / "peer" / "sheeprl-s0-episodes.csv"
    if episodes.exists():
        peer = pd.read_csv(episodes)
        curve = binned(peer.env_frames, peer["return"])
        right.plot(curve.index, curve.values, marker="s", color=PEER["color"], label=PEER["label"])
    plot_published(right, last_frame, ["dreamerv3"])
    left.set_title("evaluation (deterministic policy)")
    right.set_title(f"training episodes (mean per {BIN // 1000}k frames)")
    left.set_ylabel("return")
    for ax in (left, right):
        ax.set_xlabel("env frames")
        ax.legend(fontsize=6.5, loc="upper left")
    fig.suptitle("cartpole-swingup pixels, 80k env frames, 2 CPU cores")
    fig.tight_layout()
    out = HERE / "curves.png"
    fig.savefig(out, dpi=150)
    return out


if __name__ == "__main__":
    print(main(sys.argv[1]))
