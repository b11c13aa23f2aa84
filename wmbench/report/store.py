"""The result store: one tidy table of logged values and one table of runs, per suite.

``results`` (``results.csv`` and ``results.parquet``): columns ``suite, objective, task, seed,
env_frames, metric, value, wall_time`` — one row per logged value.

``runs`` (``runs.csv`` and ``runs.parquet``): one row per run of the suite — ``suite, objective,
task, seed, status`` (``done``, ``failed``, ``running`` or ``pending``), ``final_return`` (last
``eval/return``), ``env_frames``, ``updates``, ``wall_time`` (s), ``params`` (trainable parameters;
missing for runs made before it was recorded, and for the random baseline), ``device`` (where and
how it trained, e.g. ``cuda: NVIDIA H200, bf16-mixed, compiled (default)``; empty where not
recorded) and ``error``.

Each run directory holds ``config.yaml`` (resolved run config), ``metrics.csv`` (Lightning CSV
logger) and ``status.json``; after ``wmbench diagnose``, also ``diagnostics/metrics.csv`` (one row
of ``diagnose/*`` values in the same format, see ``wmbench.diagnostics.run``). ``versions.json``
beside the tables records ``package_versions()`` of the process that wrote them and, under
``objectives``, where each objective's code came from (``save``). ``objective`` is
the suite's label of the objective (a variant such as ``contrastive-small`` when the suite overrides
its configuration), else the registered name.
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

import pandas as pd
import yaml

from wmbench.rundir import CONFIG, DIAGNOSTICS, METRICS, describe_device, read_status

COLUMNS = ["suite", "objective", "task", "seed", "env_frames", "metric", "value", "wall_time"]
VERSIONED = (
    "wmbench",
    "torch",
    "lightning",
    "numpy",
    "gymnasium",
    "dm-control",
    "mujoco",
    "pandas",
    "rliable",
)
RUN_COLUMNS = [
    "suite",
    "objective",
    "task",
    "seed",
    "status",
    "final_return",
    "env_frames",
    "updates",
    "wall_time",
    "params",
    "device",
    "error",
]


def run_table(run_dir: str | Path, suite: str, objective: str | None = None) -> pd.DataFrame:
    """Tidy rows of one finished run (see the module docstring for the columns).

    Args:
        run_dir: the run's directory.
        suite: suite name for the ``suite`` column.
        objective: label for the ``objective`` column; default the config's objective name.

    Raises:
        FileNotFoundError: the run has no ``config.yaml`` or ``metrics.csv``.
    """
    run_dir = Path(run_dir)
    cfg = yaml.safe_load((run_dir / CONFIG).read_text())
    metrics = pd.read_csv(run_dir / METRICS)
    if (diagnostics := run_dir / DIAGNOSTICS / METRICS).exists():  # from `wmbench diagnose`
        metrics = pd.concat([metrics, pd.read_csv(diagnostics)], ignore_index=True)
    wide = metrics.drop(
        columns=[c for c in ("epoch", "step", "updates") if c in metrics], errors="ignore"
    )
    long = wide.melt(
        id_vars=["env_frames", "wall_time"], var_name="metric", value_name="value"
    ).dropna(subset=["value"])
    long = long.assign(
        suite=suite,
        objective=objective or cfg["objective"],
        task=cfg["env"]["task"],
        seed=cfg["seed"],
    )
    return long[COLUMNS].reset_index(drop=True)


def collect(run_dirs: list[Path], suite: str, labels: list[str] | None = None) -> pd.DataFrame:
    """Concatenate the tidy rows of the given runs whose status is ``done``.

    Args:
        run_dirs: run directories.
        suite: suite name.
        labels: objective label of each run directory (default: the configs' objective names).
    """
    labels = labels or [None] * len(run_dirs)
    frames = [
        run_table(d, suite, label)
        for d, label in zip(run_dirs, labels, strict=True)
        if read_status(d).get("status") == "done"
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def final_scores(table: pd.DataFrame, metric: str = "eval/return") -> pd.DataFrame:
    """Last value of ``metric`` per run: columns ``objective, task, seed, env_frames, value``."""
    rows = table[table.metric == metric].sort_values("env_frames")
    return rows.groupby(["objective", "task", "seed"], as_index=False).last()[
        ["objective", "task", "seed", "env_frames", "value"]
    ]


def comparison(scores: pd.DataFrame) -> pd.DataFrame:
    """Objective × task table of final scores: ``mean``, ``std`` (seeds, ddof=1), ``seeds``."""
    grouped = scores.groupby(["task", "objective"])["value"]
    return pd.DataFrame(
        {"mean": grouped.mean(), "std": grouped.std(), "seeds": grouped.count()}
    ).reset_index()


def run_row(run_dir: Path, suite: str, objective: str, task: str, seed: int) -> dict:
    """One row of the ``runs`` table from ``run_dir/status.json`` (``pending`` if it has none).

    ``final_return`` is the status's ``eval_return``, which equals the last ``eval/return`` logged.
    """
    status = read_status(run_dir)
    row = {
        "suite": suite,
        "objective": objective,
        "task": task,
        "seed": seed,
        "status": status.get("status", "pending"),
    }
    row["final_return"] = status.get("eval_return", float("nan"))
    row.update(
        {k: status.get(k, float("nan")) for k in ("env_frames", "updates", "wall_time", "params")}
    )
    device = status.get("device")
    row["device"] = describe_device(device, versions=False) if device else ""
    row["error"] = status.get("error", "")
    return row


def runs_frame(rows: list[dict]) -> pd.DataFrame:
    """The ``runs`` table from ``run_row`` dicts (numeric cost columns, NaN where unknown)."""
    frame = pd.DataFrame(rows, columns=RUN_COLUMNS)
    numeric = ["final_return", "env_frames", "updates", "wall_time", "params"]
    return frame.astype({c: float for c in numeric} | {"seed": int})


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages that shape results (``"not installed"`` if absent)."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def save(
    suite_dir: Path,
    table: pd.DataFrame,
    runs: pd.DataFrame,
    objectives: dict[str, dict[str, str]] | None = None,
) -> None:
    """Write ``results.{csv,parquet}``, ``runs.{csv,parquet}`` and ``versions.json`` into
    ``suite_dir``.

    Args:
        suite_dir: the suite's output directory.
        table: the ``results`` table.
        runs: the ``runs`` table.
        objectives: provenance of each objective label, stored as ``versions.json``'s
            ``objectives``: ``{"objective": registered name, "origin": "built-in"}`` or, for a
            plugin, ``"origin": "plugin"`` with ``distribution``, ``version`` and
            ``entry_point`` (see ``wmbench.objectives.registry.Entry.provenance``).
    """
    for name, frame in (("results", table), ("runs", runs)):
        frame.to_csv(suite_dir / f"{name}.csv", index=False)
        frame.to_parquet(suite_dir / f"{name}.parquet", index=False)
    versions: dict = package_versions()
    if objectives:
        versions["objectives"] = objectives
    (suite_dir / "versions.json").write_text(json.dumps(versions, indent=2))


def load(suite_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a suite's ``(results, runs)`` tables (parquet, else csv).

    Suites written before the ``runs`` table existed get one rebuilt from the ``status.json`` of
    the run directories in ``suite_dir`` whose runs are in the results.

    Raises:
        FileNotFoundError: ``suite_dir`` has neither ``results.parquet`` nor ``results.csv``.
    """
    suite_dir = Path(suite_dir)

    def read(name: str) -> pd.DataFrame | None:
        if (suite_dir / f"{name}.parquet").exists():
            return pd.read_parquet(suite_dir / f"{name}.parquet")
        return (
            pd.read_csv(suite_dir / f"{name}.csv") if (suite_dir / f"{name}.csv").exists() else None
        )

    table = read("results")
    if table is None:
        raise FileNotFoundError(
            f"{suite_dir} has no results.parquet or results.csv; run the suite first (wmbench "
            "suite run FILE)"
        )
    runs = read("runs")
    if runs is None:
        in_table = set(
            map(
                tuple,
                table[["objective", "task", "seed"]].drop_duplicates().itertuples(index=False),
            )
        )
        rows = []
        for config in sorted(suite_dir.glob(f"*/{CONFIG}")):
            cfg = yaml.safe_load(config.read_text())
            key = (cfg["objective"], cfg["env"]["task"], cfg["seed"])
            if key in in_table:
                rows.append(run_row(config.parent, table.suite.iloc[0], *key))
        runs = runs_frame(rows)
    return table, runs
