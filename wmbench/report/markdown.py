"""The comparison report of a suite: one markdown file with PNG figures, from the result store only.

``build(suite_dir, out_dir)`` reads ``results`` and ``runs`` (``wmbench.report.store``), the suite
file copy ``suite.yaml`` and ``versions.json`` when present, and writes ``out_dir/report.md``,
``curves.png``, ``aggregates.png`` and ``profiles.png``; each objective's origin and own final
metrics come from ``wmbench.report.objectives``. Statistics follow Agarwal et al., NeurIPS
2021 (see ``wmbench.report.stats``): final return per task with 95 % stratified-bootstrap CIs over
seeds, flagged against the best trivial baseline (``wmbench.report.comparison``); IQM, mean, median
and optimality gap of normalised scores over tasks; the probability of improvement of every pair of
objectives; performance profiles. The baselines are reference rows, never competitors in the
aggregates.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from wmbench.configio import ConfigError
from wmbench.report import comparison, stats
from wmbench.report.diagnostics import diagnostics_section
from wmbench.report.objectives import objectives_section
from wmbench.report.plots import (
    colours,
    plot_aggregates,
    plot_curves,
    plot_profiles,
    profile_taus,
)
from wmbench.report.store import final_scores, load, package_versions
from wmbench.rundir import BASELINES, CONFIG, make_dir, run_id
from wmbench.suite.spec import SuiteSpec, read_suite

DMC_REFERENCE = (
    0.0,
    1000.0,
)  # dm_control: reward in [0, 1] per step, 1000-step episodes (Tassa et al., 2018)
PROFILE_POINTS = 101
FEW_SEEDS = (
    5  # below this the report notes that a percentile bootstrap CI is confined to the seeds' range
)


def references(tasks: list[str], spec: SuiteSpec | None) -> pd.DataFrame:
    """The (low, high) return of each task that normalises its scores.

    The suite's ``references`` first; else ``dmc:`` tasks use (0, 1000), the range of every
    dm_control suite return, and other tasks (0, 1), i.e. raw returns.

    Returns:
        Columns ``task, low, high, source``.
    """
    given = spec.references if spec else {}
    rows = []
    for task in tasks:
        if task in given:
            rows.append((task, given[task].low, given[task].high, "suite file"))
        elif task.startswith("dmc:"):
            rows.append((task, *DMC_REFERENCE, "dm_control range"))
        else:
            rows.append((task, 0.0, 1.0, "none (raw return)"))
    return pd.DataFrame(rows, columns=["task", "low", "high", "source"])


def _ci(value: float, low: float, high: float, digits: int) -> str:
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _aggregate_table(aggregates: pd.DataFrame, matrices: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per objective: each aggregate of ``stats.AGGREGATES`` with its CI, and the runs per
    task."""
    estimates = aggregates.set_index(["objective", "metric"])
    return pd.DataFrame(
        [
            {
                "objective": o,
                **{m: _ci(*estimates.loc[(o, m)], 3) for m in stats.AGGREGATES},
                "runs per task": len(matrices[o]),
            }
            for o in matrices
        ]
    )


def _pair_table(matrices: dict[str, np.ndarray], reps: int, seed: int) -> pd.DataFrame:
    """Probability of improvement of every pair of objectives, with its CI."""
    pairs = stats.improvement(matrices, reps, seed)
    shown = [
        _ci(p, lo, hi, 2)
        for p, lo, hi in zip(pairs.probability, pairs.ci_low, pairs.ci_high, strict=True)
    ]
    return pd.DataFrame({"X": pairs.x, "Y": pairs.y, "P(X > Y) [95 % CI]": shown})


def _cost(runs: pd.DataFrame, objectives: list[str]) -> pd.DataFrame:
    """Per objective over its done runs: wall time per run, env frames/s, updates/s, parameters,
    the devices they trained on."""

    def shown(value: float, fmt: str) -> str:
        return "n/a" if not np.isfinite(value) else format(value, fmt)

    rows = []
    for objective in objectives:
        done = runs[(runs.objective == objective) & (runs.status == "done")]
        timed = done.dropna(subset=["wall_time"])
        seconds = timed.wall_time.sum() if len(timed) else float("nan")
        params = sorted(done.params.dropna().astype(int).unique())
        rows.append(
            {
                "objective": objective,
                "runs": len(done),
                "wall time per run (s)": shown(
                    seconds / len(timed) if len(timed) else seconds, ",.0f"
                ),
                "env frames / s": shown(timed.env_frames.sum() / seconds, ".1f"),
                "updates / s": shown(timed.updates.sum() / seconds, ".2f"),
                "parameters": "n/a"
                if not params
                else f"{params[0]:,}"
                if len(params) == 1
                else f"{params[0]:,}–{params[-1]:,}",
                "device": "; ".join(  # stores written before devices were recorded: n/a
                    sorted(set(done.get("device", pd.Series(dtype=str)).fillna("")) - {""})
                ) or "n/a",
            }
        )
    return pd.DataFrame(rows)


def build(suite_dir: str | Path, out_dir: str | Path, reps: int = 2000, seed: int = 0) -> Path:
    """Write the comparison report of the suite in ``suite_dir`` to ``out_dir/report.md``.

    Args:
        suite_dir: a suite's output directory (``runs/<suite>``).
        out_dir: report directory (created); ``report.md``, ``curves.png``, ``aggregates.png``,
            ``profiles.png``.
        reps: bootstrap resamples per confidence interval.
        seed: seed of the resampling (the report is reproducible).

    Returns:
        Path of ``report.md``.

    Raises:
        ConfigError: ``suite_dir`` holds no result store, or no finished run with an evaluation;
            ``out_dir`` cannot be written (see ``wmbench.rundir.make_dir``).
    """
    suite_dir, out_dir = Path(suite_dir), make_dir(out_dir, "-o/--out")
    try:
        table, runs = load(suite_dir)
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from None
    scores = final_scores(table)
    if scores.empty:
        raise ConfigError(
            f"{suite_dir}: no finished run with an evaluation return; nothing to report"
        )
    spec = read_suite(suite_dir / "suite.yaml") if (suite_dir / "suite.yaml").exists() else None
    present = (set(scores.objective) | set(runs.objective)) - set(BASELINES)  # failed ones too
    objectives = [o.name for o in spec.objectives if o.name in present] if spec else sorted(present)
    tasks = sorted(scores.task.unique())
    refs = references(tasks, spec)
    scores = stats.normalise(scores, {r.task: (r.low, r.high) for r in refs.itertuples()})
    matrices, _ = stats.score_matrices(scores[~scores.objective.isin(BASELINES)])
    matrices = {o: matrices[o] for o in objectives if o in matrices}
    colour = colours(objectives)
    plot_curves(table, out_dir / "curves.png", colour, reps=reps)
    aggregates = stats.aggregates(matrices, reps, seed)
    if matrices:
        plot_aggregates(aggregates, out_dir / "aggregates.png", colour)
        taus = profile_taus(matrices, PROFILE_POINTS)
        plot_profiles(
            stats.profile(matrices, taus, reps, seed), taus, out_dir / "profiles.png", colour
        )

    fewest = int(scores.groupby(["task", "objective"]).size().min())
    counts = ", ".join(f"{n} {s}" for s, n in runs.status.value_counts().items())
    left_out = [o for o in objectives if o not in matrices]
    failed = runs[runs.status == "failed"]
    lines = [
        f"# Suite `{spec.name if spec else table.suite.iloc[0]}`: comparison report",
        "",
        *([spec.description, ""] if spec and spec.description else []),
        f"Objectives: {', '.join(objectives)}. Tasks: {', '.join(tasks)}. "
        f"Seeds: {', '.join(map(str, sorted(scores.seed.unique())))}. "
        f"Runs: {counts} (of {len(runs)}, the baselines' included).",
        "",
        "Statistics follow Agarwal et al., *Deep Reinforcement Learning at the Edge of the "
        "Statistical Precipice*, NeurIPS 2021 (rliable): 95 % percentile confidence intervals "
        f"from a stratified bootstrap over seeds ({reps} resamples, seed {seed}). The score of a "
        "run is its last evaluation return (deterministic policy).",
        "",
        "## Final return per task",
        "",
        comparison.markdown(*comparison.comparison_tables(table, objectives, reps, seed)),
        *(
            [
                "",
                f"With as few as {fewest} seeds a bootstrap CI cannot reach beyond the seeds' own "
                "range: read it as rough.",
            ]
            if fewest < FEW_SEEDS
            else []
        ),
        "",
        "## Aggregate over tasks",
        "",
        "Normalised score = (return − low) / (high − low) per task; interquartile mean (IQM), "
        "mean, median and optimality gap (γ = 1, lower is better) over all runs and tasks, with "
        "95 % CIs. Only seeds finished on every task enter.",
        "",
        refs.to_markdown(index=False),
        "",
        *(
            [
                _aggregate_table(aggregates, matrices).to_markdown(index=False),
                "",
                "![aggregates](aggregates.png)",
            ]
            if matrices
            else ["No objective has a seed finished on every task."]
        ),
        *(
            ["", f"Left out (no seed finished on every task): {', '.join(left_out)}."]
            if left_out
            else []
        ),
        "",
        "## Probability of improvement",
        "",
        "P(X > Y): the probability that a run of X scores higher than a run of Y on a task "
        "(Mann–Whitney U, ties count one half), averaged over tasks; P(Y > X) = 1 − P(X > Y).",
        "",
        _pair_table(matrices, reps, seed).to_markdown(index=False)
        if len(matrices) > 1
        else "Fewer than two objectives: no pairs.",
        "",
        "## Learning curves",
        "",
        "Evaluation return against env frames (physics steps, action repeat included): mean over "
        "seeds, band = pointwise 95 % bootstrap CI; horizontal lines: the zero-action and uniform "
        "random baselines (the untrained agent is each curve's first point).",
        "",
        "![learning curves](curves.png)",
        "",
    ]
    if matrices:
        lines += [
            "## Performance profiles",
            "",
            "Fraction of runs (all tasks) whose normalised score exceeds τ, with 95 % CI bands.",
            "",
            "![performance profiles](profiles.png)",
            "",
        ]
    lines += [
        "## Cost",
        "",
        "Over each objective's finished runs: mean wall time per run, and env frames and updates "
        "per second of wall time (all its runs together); trainable parameters (world model, "
        "objective, actor, critic).",
        "",
        _cost(runs, objectives).to_markdown(index=False, disable_numparse=True),
        "",
        *objectives_section(suite_dir, table, objectives),
    ]
    trained = [r for r in runs.itertuples() if r.objective not in BASELINES]
    lines += [
        diagnostics_section(
            [suite_dir / run_id(r.objective, r.task, r.seed) for r in trained],
            [r.objective for r in trained],
            out_dir,
            partial(stats.per_task, reps=reps, seed=seed),
            colour,
            str(table.suite.iloc[0]),
        ),
        "",
    ]
    if len(failed):
        lines += [
            "## Failed runs",
            "",
            failed[["objective", "task", "seed", "error"]].to_markdown(index=False),
            "",
        ]
    lines += _configuration(suite_dir, spec, runs, objectives)
    (out_dir / "report.md").write_text("\n".join(lines))
    return out_dir / "report.md"


def _configuration(
    suite_dir: Path, spec: SuiteSpec | None, runs: pd.DataFrame, objectives: list[str]
) -> list[str]:
    """Markdown lines: the suite file, one run's resolved configuration, the package versions."""
    lines = ["## Configuration", ""]
    if spec:
        lines += [
            "The suite file:",
            "",
            "```yaml",
            (suite_dir / "suite.yaml").read_text().rstrip(),
            "```",
            "",
        ]
    first = runs[(runs.status == "done") & runs.objective.isin(objectives)].iloc[:1]
    for row in first.itertuples():
        config = suite_dir / run_id(row.objective, row.task, row.seed) / CONFIG
        if config.exists():
            lines += [
                f"Resolved configuration of run `{config.parent.name}` (runs differ only in "
                "objective, objective_config, task and seed):",
                "",
                "```yaml",
                config.read_text().rstrip(),
                "```",
                "",
            ]
    if len(lines) == 2:
        lines += [
            "Neither the suite file nor a finished run's configuration is in the suite directory.",
            "",
        ]
    recorded = suite_dir / "versions.json"
    versions = json.loads(recorded.read_text()) if recorded.exists() else package_versions()
    versions.pop("objectives", None)  # in the objectives section
    lines += [
        "## Package versions",
        "",
        "Recorded when the result store was written."
        if recorded.exists()
        else "Not recorded with the runs; these are the versions of the process that wrote this "
        "report.",
        "",
        pd.DataFrame(versions.items(), columns=["package", "version"]).to_markdown(index=False),
        "",
    ]
    return lines
