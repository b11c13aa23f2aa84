"""The result store: one tidy table across runs.

Columns: ``suite, objective, task, seed, env_frames, metric, value, wall_time`` — one row per logged
value. Each run directory holds ``config.yaml`` (resolved run config), ``metrics.csv`` (Lightning
CSV logger) and ``status.json``; after ``wmbench diagnose``, also ``diagnostics/metrics.csv`` (one
row of ``diagnose/*`` values in the same format, see ``wmbench.diagnostics.run``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

COLUMNS = ["suite", "objective", "task", "seed", "env_frames", "metric", "value", "wall_time"]


def read_status(run_dir: Path) -> dict:
    """``status.json`` of a run (``{"status": "done" | "failed" | ..., ...}``), or ``{}`` if absent."""
    path = Path(run_dir) / "status.json"
    return json.loads(path.read_text()) if path.exists() else {}


def run_table(run_dir: str | Path, suite: str) -> pd.DataFrame:
    """Tidy rows of one finished run (see the module docstring for the columns).

    Raises:
        FileNotFoundError: the run has no ``config.yaml`` or ``metrics.csv``.
    """
    run_dir = Path(run_dir)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    metrics = pd.read_csv(run_dir / "metrics.csv")
    if (diagnostics := run_dir / "diagnostics" / "metrics.csv").exists():  # from `wmbench diagnose`
        metrics = pd.concat([metrics, pd.read_csv(diagnostics)], ignore_index=True)
    wide = metrics.drop(columns=[c for c in ("epoch", "step", "updates") if c in metrics], errors="ignore")
    long = wide.melt(id_vars=["env_frames", "wall_time"], var_name="metric", value_name="value").dropna(subset=["value"])
    long = long.assign(suite=suite, objective=cfg["objective"], task=cfg["env"]["task"], seed=cfg["seed"])
    return long[COLUMNS].reset_index(drop=True)


def collect(run_dirs: list[Path], suite: str) -> pd.DataFrame:
    """Concatenate the tidy rows of the given runs whose status is ``done``."""
    frames = [run_table(d, suite) for d in run_dirs if read_status(d).get("status") == "done"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def final_scores(table: pd.DataFrame, metric: str = "eval/return") -> pd.DataFrame:
    """Last value of ``metric`` per run: columns ``objective, task, seed, env_frames, value``."""
    rows = table[table.metric == metric].sort_values("env_frames")
    return rows.groupby(["objective", "task", "seed"], as_index=False).last()[["objective", "task", "seed", "env_frames", "value"]]


def comparison(scores: pd.DataFrame) -> pd.DataFrame:
    """Objective × task table of final scores: ``mean``, ``std`` (over seeds, ddof=1) and ``seeds``."""
    grouped = scores.groupby(["task", "objective"])["value"]
    return pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(), "seeds": grouped.count()}).reset_index()
