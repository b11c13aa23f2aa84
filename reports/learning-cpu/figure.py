"""The learning-cpu figure: the reconstruction agent's evaluation returns per seed against the
trivial baselines and the published DreamerV3 and CURL curves on cartpole-swingup.

    python reports/learning-cpu/figure.py SUITE_DIR   # writes reports/learning-cpu/curves.png

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


def main(suite_dir: str) -> Path:
    table, _ = load(suite_dir)
    evals = table[table.metric == "eval/return"]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for (objective, seed), run in evals[~evals.objective.isin(["zero", "random"])].groupby(
        ["objective", "seed"]
    ):
        run = run.sort_values("env_frames")
        ax.plot(run.env_frames, run.value, marker="o", label=f"{objective}, seed {seed} (wmbench)")
    published = pd.read_csv(HERE / "published-cartpole-swingup.csv")
    for method, rows in published.groupby("method"):
        rows = rows[rows.env_frames <= evals.env_frames.max() + 8000]
        name = {"dreamerv3": "DreamerV3", "curl": "CURL"}[method]
        label = f"{name} (published, 10 seeds)"
        line = ax.plot(rows.env_frames, rows["mean"], ls="--", label=label)
        colour = line[0].get_color()
        ax.fill_between(rows.env_frames, rows["min"], rows["max"], color=colour, alpha=0.12)
    baselines = baseline_scores(table).groupby("objective").value.mean()
    styles = {**BASELINE_STYLES, UNTRAINED: {"color": "brown", "linestyle": "-."}}
    for key, value in baselines.items():
        style = {k: v for k, v in styles[key].items() if k != "label"}
        ax.axhline(value, label=f"{BASELINE_NAMES[key]} ({value:.0f})", **style)
    ax.set_xlabel("env frames")
    ax.set_ylabel("evaluation return")
    ax.set_title("cartpole-swingup pixels, 2 CPU cores")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    out = HERE / "curves.png"
    fig.savefig(out, dpi=150)
    return out


if __name__ == "__main__":
    print(main(sys.argv[1]))
