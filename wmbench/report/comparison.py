"""The comparison table: each objective's final return beside the trivial baselines, flagged.

A trained agent is judged against the strongest trivial policy on the same episodes: the
zero-action and uniform random policies (their own runs, ``wmbench.rundir.BASELINES``) and the
untrained agent (every run's evaluation at 0 env frames, which uses the final evaluation's
episodes, see ``wmbench.runtime.stream.StreamBase``). Per task the best of the three is the bar; an
objective is ``clearly above`` it when the two 95 % bootstrap CIs do not overlap (the objective's
lower end above the bar's upper end), ``not clearly above`` when only its mean is above the bar's
mean, and ``below`` otherwise. The same table is the
suite's printed result and ``comparison.md`` and opens the report.
"""

from __future__ import annotations

import pandas as pd

from wmbench.report import stats
from wmbench.report.store import final_scores
from wmbench.rundir import BASELINES, UNTRAINED

BASELINE_NAMES = {"zero": "zero action", "random": "uniform random", UNTRAINED: "untrained agent"}
"""How the baselines are named in tables."""


def baseline_scores(table: pd.DataFrame) -> pd.DataFrame:
    """The baselines' scores: the ``BASELINES`` runs' returns and, as ``UNTRAINED``, each trained
    run's ``eval/return`` at 0 env frames.

    Args:
        table: the tidy result table (``wmbench.report.store``).

    Returns:
        Columns ``objective, task, seed, value``: one row per baseline run, and one per trained run
        (labelled ``UNTRAINED``; seeds repeat across objectives).
    """
    evals = table[table.metric == "eval/return"]
    trivial = final_scores(evals[evals.objective.isin(BASELINES)])
    untrained = evals[(evals.env_frames == 0) & ~evals.objective.isin(BASELINES)]
    untrained = untrained.assign(objective=UNTRAINED)
    columns = ["objective", "task", "seed", "value"]
    return pd.concat([trivial[columns], untrained[columns]], ignore_index=True)


def _ci(value: float, low: float, high: float) -> str:
    return f"{value:.1f} [{low:.1f}, {high:.1f}]"


def comparison_tables(
    table: pd.DataFrame, objectives: list[str], reps: int, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The objectives' table and the baselines' table of a result store.

    Args:
        table: the tidy result table.
        objectives: the objectives in display order (the suite's); others in the store are left out.
        reps, seed: bootstrap resamples and seed of the CIs (``wmbench.report.stats.per_task``).

    Returns:
        ``(trained, baselines)``: ``trained`` has columns ``task``, ``objective``,
        ``final return [95 % CI]``, ``seeds`` and ``vs best baseline`` (see the module docstring);
        ``baselines`` has ``task``, ``baseline``, ``return [95 % CI]`` and ``seeds`` (runs for the
        untrained agent), in ``BASELINE_NAMES`` order.
    """
    scores = final_scores(table)
    scores = scores[scores.objective.isin(objectives)]
    trained = stats.per_task(scores, reps, seed)
    reference = stats.per_task(baseline_scores(table), reps, seed)
    bar = reference.loc[reference.groupby("task")["mean"].idxmax()].set_index("task")
    order = {o: i for i, o in enumerate(objectives)}
    trained = trained.assign(order=trained.objective.map(order))
    trained = trained.sort_values(["task", "order"]).reset_index(drop=True)
    flags = []
    for row in trained.itertuples():
        if row.task not in bar.index:
            flags.append("no baseline")
            continue
        best = bar.loc[row.task]
        name = f"{BASELINE_NAMES[best.objective]} ({best['mean']:.1f})"
        verdict = (
            "clearly above"
            if row.ci_low > best["ci_high"]
            else "not clearly above"
            if row.mean > best["mean"]
            else "below"
        )
        flags.append(f"{verdict} {name}")
    trained_table = pd.DataFrame(
        {
            "task": trained.task,
            "objective": trained.objective,
            "final return [95 % CI]": [
                _ci(m, lo, hi)
                for m, lo, hi in zip(trained["mean"], trained.ci_low, trained.ci_high, strict=True)
            ],
            "seeds": trained.seeds,
            "vs best baseline": flags,
        }
    )
    names = list(BASELINE_NAMES)
    reference = reference.assign(order=reference.objective.map(names.index))
    reference = reference.sort_values(["task", "order"]).reset_index(drop=True)
    baseline_table = pd.DataFrame(
        {
            "task": reference.task,
            "baseline": reference.objective.map(BASELINE_NAMES),
            "return [95 % CI]": [
                _ci(m, lo, hi)
                for m, lo, hi in zip(
                    reference["mean"], reference.ci_low, reference.ci_high, strict=True
                )
            ],
            "seeds": reference.seeds,
        }
    )
    return trained_table.reset_index(drop=True), baseline_table.reset_index(drop=True)


def verdict(trained: pd.DataFrame) -> str:
    """One sentence saying what the objectives' table can show.

    Args:
        trained: the first table of ``comparison_tables``.

    Returns:
        How many objective × task cells are clearly above their task's best trivial baseline; when
        none is, that this budget ranks nothing (a ranking among policies no better than doing
        nothing or acting at random says nothing about the objectives); for an empty table, that
        nothing finished.
    """
    if trained.empty:
        return "No objective has a final evaluation yet: its runs failed or are unfinished."
    above = int(trained["vs best baseline"].str.startswith("clearly above").sum())
    cells = f"{above} of {len(trained)} objective × task results"
    if above == 0:
        return (
            f"{cells} are clearly above the best trivial baseline: at this budget no objective "
            "has learned a policy better than a trivial one, so this table cannot rank the "
            "objectives (it checks the pipeline; compare at a budget where agents learn)."
        )
    return (
        f"{cells} are clearly above the best trivial baseline; only those are evidence of "
        "learning, and two objectives differ only where their CIs do not overlap."
    )


def markdown(trained: pd.DataFrame, baselines: pd.DataFrame) -> str:
    """Both tables as markdown, the baselines second, with a line saying how to read them and
    the ``verdict``."""
    return "\n".join(
        [
            "Final evaluation return (deterministic policy, the same episodes for every "
            "policy): mean over seeds with its 95 % stratified-bootstrap CI. `vs best baseline` "
            "compares it with the best of the trivial policies below: *clearly above* when the "
            "two CIs do not overlap.",
            "",
            trained.to_markdown(index=False),
            "",
            f"**{verdict(trained)}**",
            "",
            "Trivial baselines on the same episodes (the untrained agent: every run's evaluation "
            "at 0 env frames):",
            "",
            baselines.to_markdown(index=False),
        ]
    )
