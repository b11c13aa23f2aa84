"""Run a suite: every objective × task × seed in turn, then the result table and comparison.

Output layout::

    <out>/<suite>/<run_id>/        config.yaml, metrics.csv, status.json, checkpoints/
    <out>/<suite>/results.csv      tidy table (see ``wmbench.report.store``)
    <out>/<suite>/comparison.md    objective × task: final evaluation return, mean ± std over seeds
    <out>/<suite>/curves.png       evaluation return against env frames

A finished run (``status.json`` says ``done``) is skipped when the suite is run again; an unfinished
one (killed, interrupted or failed) continues from its checkpoint, or starts over if it has none; a
failing run is recorded as ``failed`` with its error and the others go on.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import torch
import yaml

from wmbench.config import ConfigError, to_dict

from wmbench.report.plots import plot_curves
from wmbench.report.store import collect, comparison, final_scores, read_status
from wmbench.runtime.checkpoint import CHECKPOINT, read_checkpoint
from wmbench.runtime.sync import quiet_libraries, random_baseline, train
from wmbench.suite.spec import Run, load_suite, run_id

log = logging.getLogger("wmbench")


def _run_one(run: Run, run_dir: Path, threads: int = 0) -> str | None:
    """Train (or resume) one run; returns ``None`` on success, else the error (already in its status.json).

    ``threads`` > 0 sets torch's intra-op threads of this (worker) process unless the run's config
    fixes them.
    """
    quiet_libraries()
    if threads:
        torch.set_num_threads(threads)
    try:
        train(run.config, run_dir, resume=True)
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return None


def _check_not_stale(runs: list[Run], suite_dir: Path, path: str | Path) -> None:
    """Refuse to reuse finished or resumable runs whose saved configuration differs from the suite's.

    Raises:
        ConfigError: naming the runs and the fix; or a resumable run's checkpoint has another
            run-directory format (see ``wmbench.runtime.checkpoint.read_checkpoint``).
    """
    kept = [
        r for r in runs
        if read_status(suite_dir / r.run_id).get("status") == "done" or (suite_dir / r.run_id / CHECKPOINT).exists()
    ]
    for r in kept:
        if read_status(suite_dir / r.run_id).get("status") != "done":
            read_checkpoint(suite_dir / r.run_id)
    stale = [
        r.run_id for r in kept if yaml.safe_load((suite_dir / r.run_id / "config.yaml").read_text()) != to_dict(r.config)
    ]
    if stale:
        raise ConfigError(
            f"{len(stale)} finished or resumable run(s) in {suite_dir} were made with another configuration than {path} "
            f"gives now ({', '.join(stale[:3])}{', ...' if len(stale) > 3 else ''}); give the suite a new name, "
            "use another --out, or delete those run directories"
        )


def run_suite(path: str | Path, out: str | Path = "runs", workers: int = 1) -> tuple[pd.DataFrame, list[str]]:
    """Validate, then run a suite file; write the result table and the comparison.

    Args:
        path: suite YAML file.
        out: root output directory.
        workers: runs in parallel, each in its own process with ``cpu_count // workers`` torch
            threads (unless the suite sets ``train.threads``); 1 runs them in this process.

    Finished runs are skipped and unfinished ones resumed from their checkpoints; only this suite's
    runs (and its baseline) enter the table.

    Returns:
        ``(comparison_table, failed_run_ids)``.

    Raises:
        ConfigError: the suite is invalid, or finished or resumable runs in its directory were made
            with another configuration or another run-directory format (raised before any run starts).
    """
    spec, runs = load_suite(path)
    suite_dir = Path(out) / spec.name
    _check_not_stale(runs, suite_dir, path)
    suite_dir.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    todo = [r for r in runs if read_status(suite_dir / r.run_id).get("status") != "done"]
    log.info("suite %s: %d runs, %d to do, output in %s", spec.name, len(runs), len(todo), suite_dir)
    if workers == 1:
        errors = {}
        for i, run in enumerate(todo, 1):
            log.info("[%d/%d] %s", i, len(todo), run.run_id)
            errors[run.run_id] = _run_one(run, suite_dir / run.run_id)
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {r.run_id: pool.submit(_run_one, r, suite_dir / r.run_id, threads) for r in todo}
            errors = {run_id: future.result() for run_id, future in futures.items()}
    for run_id_, error in errors.items():  # the failed runs' status.json holds the traceback
        if error is not None:
            log.error("run %s failed: %s", run_id_, error)
            failed.append(run_id_)
    run_dirs = [suite_dir / r.run_id for r in runs]
    if spec.random_baseline:
        for run in runs:
            if run.config.objective != spec.objectives[0]:
                continue
            baseline_dir = suite_dir / run_id("random", run.config.env.task, run.config.seed)
            if read_status(baseline_dir).get("status") != "done":
                random_baseline(run.config, baseline_dir)
            run_dirs.append(baseline_dir)
    table = collect(run_dirs, spec.name)
    table.to_csv(suite_dir / "results.csv", index=False)
    result = comparison(final_scores(table))
    (suite_dir / "comparison.md").write_text(format_comparison(result, spec.name))
    plot_curves(table, suite_dir / "curves.png")
    log.info("wrote results.csv, comparison.md and curves.png in %s", suite_dir)
    return result, failed


def format_comparison(result: pd.DataFrame, suite: str) -> str:
    """Markdown of the comparison table (final evaluation return, mean ± std over seeds)."""
    shown = result.assign(
        **{"final eval return": [f"{m:.1f} ± {s:.1f}" if s == s else f"{m:.1f}" for m, s in zip(result["mean"], result["std"])]}
    )[["task", "objective", "final eval return", "seeds"]]
    return (
        f"# Suite `{suite}`\n\nFinal evaluation return (deterministic policy) of each run, mean ± std over "
        f"seeds (std with ddof=1); `random` is a uniform random policy.\n\n"
        + shown.to_markdown(index=False)
        + "\n"
    )
