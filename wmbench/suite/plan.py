"""What a suite will cost before it runs (``--dry-run``) and where its runs stand
(``suite status``)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from wmbench.report.store import run_row, runs_frame
from wmbench.run_config import RunConfig
from wmbench.suite.spec import baseline_runs, load_suite


def planned_updates(cfg: RunConfig) -> int:
    """Updates a run makes: those of its train-ratio schedule's budget (``RatioSchedule.updates``),
    the same in sync and async mode."""
    return cfg.ratio_schedule().updates


def dry_run(path: str | Path) -> pd.DataFrame:
    """Validate a suite and list its runs with their planned cost, without running anything.

    Returns:
        Columns ``run_id, objective, task, seed, env_frames, updates, evaluations``; updates are
        exact (``planned_updates``), evaluations approximate: one at 0 env frames, one per
        ``train.eval_every`` and the final one (those due during the random prefill come after it).

    Raises:
        ConfigError: the suite is invalid.
    """
    _, runs = load_suite(path)
    rows = [
        (
            r.run_id,
            r.label,
            r.config.env.task,
            r.config.seed,
            r.config.train.env_frames,
            planned_updates(r.config),
            1 + math.ceil(r.config.train.env_frames / r.config.train.eval_every),
        )
        for r in runs
    ]
    return pd.DataFrame(
        rows,
        columns=["run_id", "objective", "task", "seed", "env_frames", "updates", "evaluations"],
    )


def status(path: str | Path, out: str | Path = "runs") -> pd.DataFrame:
    """Status of every run of a suite under ``out``, the random baseline's included: the ``runs``
    table of ``wmbench.report.store``, indexed by run id.

    ``running`` is what a run's ``status.json`` says: a run whose process was killed still reads
    ``running``.

    Raises:
        ConfigError: the suite is invalid.
    """
    spec, runs = load_suite(path)
    runs += baseline_runs(spec, runs)
    suite_dir = Path(out) / spec.name
    rows = [
        run_row(suite_dir / r.run_id, spec.name, r.label, r.config.env.task, r.config.seed)
        for r in runs
    ]
    return runs_frame(rows).set_axis([r.run_id for r in runs])


def progress(statuses: dict[str, str]) -> str:
    """One line of counts, e.g. ``runs: 3 done, 1 running, 1 failed, 7 pending (of 12)``
    (``interrupted`` runs are counted too when there are any).

    Args:
        statuses: run id to ``done``, ``running``, ``failed``, ``interrupted`` or ``pending``.
    """
    kinds = ("done", "running", "failed", "interrupted", "pending")
    counts = {k: sum(v == k for v in statuses.values()) for k in kinds}
    if not counts["interrupted"]:
        del counts["interrupted"]
    return "runs: " + ", ".join(f"{n} {k}" for k, n in counts.items()) + f" (of {len(statuses)})"
