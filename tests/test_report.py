"""Report statistics on hand-computed matrices, and the report's tables against the raw store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wmbench.cli import main
from wmbench.report import stats
from wmbench.report.comparison import verdict
from wmbench.report.objectives import final_own_metrics, objectives_section
from wmbench.report.store import COLUMNS, collect, load, run_row, runs_frame, save

REPS = 200


def test_aggregates_of_a_known_matrix():
    # 4 runs x 2 tasks; sorted values 0..6, 100: the IQM drops 0, 1 and 6, 100.
    scores = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 100.0]]) / 100
    table = stats.aggregates({"a": scores}, reps=REPS).set_index("metric")
    assert table.loc["IQM", "value"] == pytest.approx(0.035)
    assert table.loc["mean", "value"] == pytest.approx(1.21 / 8)
    assert table.loc["median", "value"] == pytest.approx(np.median([0.03, 0.2725]))
    assert table.loc["optimality gap", "value"] == pytest.approx(1 - 1.21 / 8)
    assert (table.ci_low <= table.value).all() and (table.value <= table.ci_high).all()


def test_bootstrap_ci_of_a_large_sample_contains_the_true_mean():
    rng = np.random.default_rng(0)
    scores = pd.DataFrame(
        {"task": "t", "objective": "a", "seed": range(400), "value": rng.normal(5.0, 1.0, 400)}
    )
    row = stats.per_task(scores, reps=REPS).iloc[0]
    assert row.ci_low < 5.0 < row.ci_high
    assert row.ci_high - row.ci_low < 0.3  # about 4 standard errors of 1/sqrt(400)
    assert row["mean"] == pytest.approx(scores.value.mean())
    assert row.seeds == 400


def test_probability_of_improvement_of_dominating_and_identical_objectives():
    low = np.array([[0.1, 0.2], [0.3, 0.4], [0.2, 0.1]])
    table = stats.improvement({"high": low + 1.0, "low": low, "same": low.copy()}, reps=REPS)
    table = table.set_index(["x", "y"])
    assert table.loc[("high", "low")].tolist() == [1.0, 1.0, 1.0]
    assert table.loc[("high", "same"), "probability"] == 1.0
    assert table.loc[("low", "same"), "probability"] == 0.5


def test_probability_of_improvement_counts_pairs_of_runs():
    # Task 1: x beats y in 3 of 4 run pairs; task 2: x loses every pair -> (0.75 + 0) / 2.
    x = np.array([[2.0, 0.0], [4.0, 1.0]])
    y = np.array([[1.0, 5.0], [3.0, 6.0]])
    assert stats.improvement({"x": x, "y": y}, reps=REPS).probability.iloc[0] == pytest.approx(
        0.375
    )


def test_normalise_and_missing_reference():
    scores = pd.DataFrame({"task": ["a", "b"], "value": [250.0, 3.0]})
    assert stats.normalise(scores, {"a": (0, 1000), "b": (1, 5)}).score.tolist() == [0.25, 0.5]
    with pytest.raises(
        ValueError, match="no reference .* for task\\(s\\) b; add them to the suite's 'references'"
    ):
        stats.normalise(scores, {"a": (0, 1000)})


def test_score_matrices_keep_only_seeds_done_on_every_task():
    scores = pd.DataFrame(
        {
            "objective": ["a", "a", "a", "b"],
            "task": ["t1", "t2", "t1", "t1"],
            "seed": [0, 0, 1, 0],
            "score": [1.0, 2.0, 3.0, 4.0],
        }
    )
    matrices, tasks = stats.score_matrices(scores)
    assert tasks == ["t1", "t2"]
    assert matrices["a"].tolist() == [[1.0, 2.0]]  # seed 1 has no t2
    assert "b" not in matrices


def _store(suite_dir, final: dict[tuple[str, str, int], float]) -> pd.DataFrame:
    """A result store: trained runs evaluated at 0 (the untrained agent: the seed, plus 10 for
    objective ``b``) and 1000 env frames, the baselines once at 0."""
    rows, runs = [], []
    for (objective, task, seed), value in final.items():
        trained = objective not in ("zero", "random")
        if trained:
            untrained = float(seed + 10 * (objective == "b"))
            rows.append(("syn", objective, task, seed, 0, "eval/return", untrained, 1.0))
        rows.append(("syn", objective, task, seed, 1000 * trained, "eval/return", value, 100.0))
        cost = (
            {"env_frames": 1000, "updates": 50, "wall_time": 100.0 * (1 + seed), "params": 1234,
             "device": "cuda: NVIDIA H200, bf16-mixed, eager" if seed else "cpu: Xeon, 32-true, "
             "eager"}
            if objective == "a"
            else {}
        )
        runs.append(
            {
                **run_row(suite_dir / "absent", "syn", objective, task, seed),
                "status": "done",
                "final_return": value,
                **cost,
            }
        )
    table = pd.DataFrame(rows, columns=COLUMNS)
    suite_dir.mkdir()
    save(suite_dir, table, runs_frame(runs))
    return table


def _markdown_table(text: str, heading: str, nth: int = 0) -> pd.DataFrame:
    """The ``nth`` markdown table after ``heading``, as strings."""
    tables, current = [], []
    for line in text.split(heading, 1)[1].splitlines():
        if line.startswith("|"):
            current.append([c.strip() for c in line.strip("|").split("|")])
        elif current:
            tables.append(current)
            current = []
    cells = [row for row in (tables + [current])[nth] if not set("".join(row)) <= set(":-")]
    return pd.DataFrame(cells[1:], columns=cells[0])


def test_report_tables_equal_a_recomputation_from_the_raw_store(tmp_path, capsys):
    rng = np.random.default_rng(1)
    final = {
        (o, t, s): float(rng.uniform(0, 1000))
        for o in ("a", "b", "zero", "random")
        for t in ("dmc:cartpole-balance", "toy:reach")
        for s in range(3)
    }
    final[("a", "toy:reach", 0)] = 0.5  # toy:reach is not normalised (raw return, reference (0, 1))
    final[("b", "toy:reach", 1)] = 990.0  # b clearly above every baseline on toy:reach
    final[("b", "toy:reach", 2)] = 995.0
    final[("b", "toy:reach", 0)] = 985.0
    table = _store(tmp_path / "syn", final)
    assert (
        main(["report", str(tmp_path / "syn"), "-o", str(tmp_path / "rep"), "--reps", str(REPS)])
        == 0
    )
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'rep' / 'report.md'}"
    text = (tmp_path / "rep" / "report.md").read_text()
    for figure in ("curves.png", "aggregates.png", "profiles.png"):
        assert (tmp_path / "rep" / figure).stat().st_size > 0 and f"]({figure})" in text

    assert "With as few as 3 seeds a bootstrap CI cannot reach beyond the seeds' own range" in text
    assert (
        "## Representation diagnostics\n\nNo run has diagnostics yet" in text
    )  # no run directories here
    shown = _markdown_table(text, "## Final return per task")
    raw = table[
        table.env_frames == table.groupby(["objective", "task", "seed"]).env_frames.transform("max")
    ]
    expected = raw.groupby(["task", "objective"]).value.agg(["mean", "count"])
    untrained = table[(table.env_frames == 0) & table.objective.isin(["a", "b"])]
    untrained = untrained.groupby("task").value.agg(["mean", "count"])
    assert list(zip(shown.task, shown.objective, strict=True)) == [
        ("dmc:cartpole-balance", "a"),
        ("dmc:cartpole-balance", "b"),
        ("toy:reach", "a"),
        ("toy:reach", "b"),
    ]
    baselines = _markdown_table(text, "## Final return per task", nth=1)
    bar_high = {  # upper end of each baseline's CI, as the baselines table shows it
        (r.task, r.baseline): float(re.findall(r"-?\d+\.\d+", r[3])[2])
        for r in baselines.itertuples()
    }
    for row in shown.itertuples():
        mean, low, high = map(float, re.findall(r"-?\d+\.\d+", row[3]))
        assert mean == pytest.approx(expected.loc[(row.task, row.objective), "mean"], abs=0.05)
        assert low <= mean <= high
        assert int(row.seeds) == expected.loc[(row.task, row.objective), "count"] == 3
        bars = {
            "zero action": expected.loc[(row.task, "zero"), "mean"],
            "uniform random": expected.loc[(row.task, "random"), "mean"],
            "untrained agent": untrained.loc[row.task, "mean"],
        }
        best = max(bars, key=bars.get)
        verdict = (
            "clearly above"
            if low > bar_high[(row.task, best)]
            else "not clearly above"
            if mean > bars[best]
            else "below"
        )
        assert row[5] == f"{verdict} {best} ({bars[best]:.1f})"
    assert shown.iloc[3, 4].startswith("clearly above")  # b on toy:reach
    above = sum(flag.startswith("clearly above") for flag in shown.iloc[:, 4])
    assert f"**{above} of 4 objective × task results are clearly above the best" in text
    assert "cannot rank" not in text
    assert list(zip(baselines.task, baselines.baseline, baselines.seeds, strict=True)) == [
        (task, name, seeds)
        for task in ("dmc:cartpole-balance", "toy:reach")
        for name, seeds in (("zero action", "3"), ("uniform random", "3"), ("untrained agent", "6"))
    ]
    for row in baselines.itertuples():
        mean = float(row[3].split()[0])
        if row.baseline == "untrained agent":
            assert mean == pytest.approx(
                untrained.loc[row.task, "mean"], abs=0.05
            )  # (0+1+2+10+11+12)/6
        else:
            key = "zero" if row.baseline == "zero action" else "random"
            assert mean == pytest.approx(expected.loc[(row.task, key), "mean"], abs=0.05)

    references = _markdown_table(text, "## Aggregate over tasks")
    assert references.values.tolist() == [
        ["dmc:cartpole-balance", "0", "1000", "dm_control range"],
        ["toy:reach", "0", "1", "none (raw return)"],
    ]
    aggregate = _markdown_table(text, "## Aggregate over tasks", nth=1)
    assert list(aggregate.objective) == ["a", "b"]  # the baseline is not a competitor
    for row in aggregate.itertuples():
        scores = [
            final[(row.objective, t, s)] / (1000 if t.startswith("dmc:") else 1)
            for t in ("dmc:cartpole-balance", "toy:reach")
            for s in range(3)
        ]
        iqm = float(row.IQM.split()[0])
        assert iqm == pytest.approx(
            float(pd.Series(scores).sort_values().iloc[1:5].mean()), abs=5e-4
        )
        assert float(row.mean.split()[0]) == pytest.approx(np.mean(scores), abs=5e-4)

    pairs = _markdown_table(text, "## Probability of improvement")
    assert pairs[["X", "Y"]].values.tolist() == [["a", "b"]]
    x = np.array(
        [[final[("a", t, s)] for t in ("dmc:cartpole-balance", "toy:reach")] for s in range(3)]
    )
    y = np.array(
        [[final[("b", t, s)] for t in ("dmc:cartpole-balance", "toy:reach")] for s in range(3)]
    )
    expected_p = np.mean([np.mean(x[:, m, None] > y[None, :, m]) for m in range(2)])
    assert float(pairs.iloc[0, 2].split()[0]) == pytest.approx(expected_p, abs=5e-3)

    cost = _markdown_table(text, "## Cost").set_index("objective")
    # a: 6 runs of 1000 env frames and 50 updates in 100, 200, 300 s per task -> 6000 frames / 1200
    # s.
    assert cost.loc["a", "runs"] == "6"
    assert cost.loc["a", "wall time per run (s)"] == "200"
    assert cost.loc["a", "env frames / s"] == "5.0"
    assert cost.loc["a", "updates / s"] == "0.25"
    assert cost.loc["a", "parameters"] == "1,234"
    assert cost.loc["a", "device"] == (
        "cpu: Xeon, 32-true, eager; cuda: NVIDIA H200, bf16-mixed, eager"
    )
    assert cost.loc["b"].tolist()[1:] == ["n/a"] * 5  # nothing recorded: shown as n/a
    assert (
        "Not recorded with the runs" not in text and "| torch" in text
    )  # versions.json written by save()


def test_the_verdict_says_a_table_without_learning_ranks_nothing():
    flags = ["below zero action (740.0)", "not clearly above uniform random (90.0)"]
    trained = pd.DataFrame({"vs best baseline": flags})
    assert verdict(trained).startswith("0 of 2 objective × task results are clearly above")
    assert "cannot rank the objectives" in verdict(trained)
    trained = pd.DataFrame({"vs best baseline": [*flags, "clearly above zero action (740.0)"]})
    assert verdict(trained).startswith("1 of 3 objective × task results are clearly above")
    assert "cannot rank" not in verdict(trained)
    assert verdict(trained.iloc[:0]).startswith("No objective has a final evaluation yet")


def test_report_of_a_directory_without_a_store_is_one_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "rep")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"wmbench: error: {tmp_path} has no results.parquet or results.csv; run the suite first "
        "(wmbench suite run FILE)"
    )


def test_load_rebuilds_the_runs_table_of_a_suite_written_before_it(tmp_path):
    """Older suites have only results.csv: runs come from the status.json of the runs in the
    results."""
    suite = tmp_path / "old"
    for objective, seed, status in [
        (
            "reconstruction",
            0,
            {
                "status": "done",
                "eval_return": 7.0,
                "env_frames": 160,
                "updates": 20,
                "wall_time": 8.0,
            },
        ),
        ("reward", 0, {"status": "done", "eval_return": 1.0}),
    ]:  # another suite's run
        run = suite / f"{objective}-toy_reach-s{seed}"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(
            f"objective: {objective}\nseed: {seed}\nenv: {{task: 'toy:reach'}}\n"
        )
        (run / "status.json").write_text(json.dumps(status))
    rows = [("old", "reconstruction", "toy:reach", 0, 160, "eval/return", 7.0, 8.0)]
    pd.DataFrame(rows, columns=COLUMNS).to_csv(suite / "results.csv", index=False)
    table, runs = load(suite)
    assert table.values.tolist() == [list(r) for r in rows]
    assert runs[
        ["objective", "status", "final_return", "env_frames", "updates", "wall_time"]
    ].values.tolist() == [["reconstruction", "done", 7.0, 160.0, 20.0, 8.0]]
    assert runs.params.isna().all()  # not recorded then: the report shows n/a


def test_the_default_report_directory_is_in_the_suite_directory_not_in_reports(
    tmp_path, capsys, monkeypatch
):
    """reports/ holds curated results tracked in git: a default must not overwrite them."""
    suite_dir = tmp_path / "runs" / "smoke"
    dirs = []
    for seed in (0, 1):
        run_dir = suite_dir / f"reward-toy_reach-s{seed}"
        run_dir.mkdir(parents=True)
        config = f"objective: reward\nseed: {seed}\nenv: {{task: 'toy:reach'}}\n"
        (run_dir / "config.yaml").write_text(config)
        (run_dir / "metrics.csv").write_text(f"env_frames,wall_time,eval/return\n0,1.0,{seed}.0\n")
        (run_dir / "status.json").write_text(json.dumps({"status": "done", "eval_return": seed}))
        dirs.append(run_dir)
    save(
        suite_dir,
        collect(dirs, "smoke"),
        runs_frame([run_row(d, "smoke", "reward", "toy:reach", s) for s, d in enumerate(dirs)]),
    )
    monkeypatch.chdir(tmp_path)
    assert main(["report", "runs/smoke", "--reps", "10"]) == 0
    assert (suite_dir / "report" / "report.md").exists() and not (tmp_path / "reports").exists()
    assert capsys.readouterr().out.strip() == f"wrote {Path('runs/smoke/report/report.md')}"


def test_objectives_section_shows_origins_and_the_last_own_values_over_seeds(tmp_path):
    rows = [  # (objective, task, seed, env_frames, metric, value)
        ("a", "t1", 0, 10, "train/loss/objective/x", 5.0),
        ("a", "t1", 0, 20, "train/loss/objective/x", 2.0),  # the last of run (a, t1, 0)
        ("a", "t1", 1, 20, "train/loss/objective/x", 4.0),
        ("a", "t1", 1, 20, "train/objective/acc", 0.5),
        ("a", "t1", 1, 20, "train/loss/reward", 9.0),  # core, not the objective's own
        ("b", "t1", 0, 20, "train/loss/objective/y", 1.0),
        ("b", "t2", 0, 20, "train/loss/objective/y", 3.0),
        ("random", "t1", 0, 0, "eval/return", 1.0),
    ]
    table = pd.DataFrame(
        [("s", o, t, s, f, m, v, 0.0) for o, t, s, f, m, v in rows], columns=COLUMNS
    )
    final = final_own_metrics(table).set_index(["objective", "metric", "task"])
    assert final.loc[("a", "loss/objective/x", "t1")].tolist() == [3.0, np.std([2, 4], ddof=1), 2]
    assert final.loc[("a", "objective/acc", "t1"), "seeds"] == 1
    assert len(final) == 4  # a: x, acc; b: y on t1 and t2
    origins = {
        "a": {"objective": "reconstruction", "origin": "built-in"},
        "b": {"objective": "curl", "origin": "plugin", "distribution": "wmbench-curl",
              "version": "0.1.0", "entry_point": "wmbench_curl.objective:CurlObjective"},
    }
    save(tmp_path, table, runs_frame([]), origins)
    text = "\n".join(objectives_section(tmp_path, table, ["b", "a"]))
    provenance = _markdown_table(text, "## Objectives")
    assert provenance.values.tolist() == [
        ["b", "curl", "plugin", "wmbench-curl 0.1.0", "wmbench_curl.objective:CurlObjective"],
        ["a", "reconstruction", "built-in", "—", "—"],
    ]
    values = _markdown_table(text, "## Objectives", nth=1)
    assert values.values.tolist() == [
        ["b", "loss/objective/y", "1", "3"],
        ["a", "loss/objective/x", "3 ± 1.4", "—"],
        ["a", "objective/acc", "0.5", "—"],
    ]
    assert list(values.columns) == ["objective", "metric", "t1", "t2"]
