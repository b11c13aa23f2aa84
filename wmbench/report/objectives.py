"""The report's objectives section: where each objective's code came from, and the final values of
its own losses and metrics.

Reads only the result store: ``versions.json``'s ``objectives`` (written by the suite runner, see
``wmbench.report.store.save``) and the ``results`` rows of the columns each objective logs,
``train/loss/objective/<loss>`` (as weighed in the world-model loss) and
``train/objective/<metric>``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

OWN = ("train/loss/objective/", "train/objective/", "train/scale/objective/")
"""Prefixes of the metrics an objective logs itself, and the scale each of its losses was weighed
with (``wmbench.agents.module.world_model_loss``)."""


def final_own_metrics(table: pd.DataFrame) -> pd.DataFrame:
    """Last logged value of each objective's own metrics per run, summarised over seeds.

    Args:
        table: the ``results`` table (``wmbench.report.store``).

    Returns:
        Columns ``objective, metric, task, mean, std, seeds`` (``metric`` without its ``train/``
        prefix; ``std`` over seeds with ddof 1, NaN for one seed).
    """
    own = table[table.metric.str.startswith(OWN)].sort_values("env_frames", kind="stable")
    last = own.groupby(["objective", "task", "seed", "metric"], as_index=False).last()
    summary = last.groupby(["objective", "metric", "task"])["value"].agg(["mean", "std", "count"])
    summary = summary.reset_index().rename(columns={"count": "seeds"})
    return summary.assign(metric=summary.metric.str.removeprefix("train/"))


def _provenance(suite_dir: Path, objectives: list[str]) -> pd.DataFrame | None:
    recorded = suite_dir / "versions.json"
    origins = json.loads(recorded.read_text()).get("objectives", {}) if recorded.exists() else {}
    if not origins:
        return None
    rows = []
    for label in objectives:
        item = origins.get(label, {})
        rows.append(
            {
                "objective": label,
                "registered as": item.get("objective", "not recorded"),
                "origin": item.get("origin", "not recorded"),
                "distribution": " ".join(
                    v for v in (item.get("distribution"), item.get("version")) if v
                )
                or "—",
                "entry point": item.get("entry_point", "—"),
            }
        )
    return pd.DataFrame(rows)


def objectives_section(suite_dir: Path, table: pd.DataFrame, objectives: list[str]) -> list[str]:
    """Markdown lines of the section: a provenance table and a table of final own metrics.

    Args:
        suite_dir: the suite's output directory (for ``versions.json``).
        table: the ``results`` table.
        objectives: objective labels in report order.
    """
    lines = ["## Objectives", ""]
    origins = _provenance(Path(suite_dir), objectives)
    if origins is None:
        lines += ["Where the objectives' code came from was not recorded with these runs.", ""]
    else:
        lines += [
            "Where each objective's code came from when the result store was written "
            "(`versions.json`): built into wmbench, or a plugin's distribution and entry point.",
            "",
            origins.to_markdown(index=False),
            "",
        ]
    final = final_own_metrics(table)
    final = final[final.objective.isin(objectives)]
    if final.empty:
        return lines + ["No objective logged losses or metrics of its own.", ""]
    final = final.assign(
        value=[
            f"{m:.4g}" if s != s else f"{m:.4g} ± {s:.2g}"  # NaN std: one seed
            for m, s in zip(final["mean"], final["std"], strict=True)
        ],
        order=final.objective.map({o: i for i, o in enumerate(objectives)}),
    ).sort_values(["order", "metric"])
    wide = final.pivot_table(
        index=["order", "objective", "metric"], columns="task", values="value", aggfunc="first"
    ).reset_index(level="order", drop=True).fillna("—")  # —: not run on that task
    lines += [
        "Each objective's own losses (`train/loss/objective/<loss>`, as weighed in the "
        "world-model loss by its scale), the scale itself (`train/scale/objective/<loss>`, "
        "`reports/objective-scales.md`) and metrics (`train/objective/<metric>`), named here "
        "without `train/`, at the end of training: the last logged value of each run, mean ± std "
        "over seeds.",
        "",
        wide.reset_index().rename_axis(columns=None).to_markdown(index=False),
        "",
    ]
    return lines
