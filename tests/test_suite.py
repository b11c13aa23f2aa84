"""Suite files: validation before compute, the CLI's errors, and an end-to-end run on dm_control
pixels."""

from __future__ import annotations

import json
import logging
import math
import re
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from conftest import tiny_run_dict
from wmbench.cli import main
from wmbench.configio import ConfigError, from_dict
from wmbench.objectives import (
    Objective,
    ObjectiveInputs,
    ObjectiveOutput,
    available,
    check,
    registry,
)
from wmbench.report.store import COLUMNS, RUN_COLUMNS
from wmbench.run_config import RunConfig
from wmbench.runtime.train import train
from wmbench.suite.plan import planned_updates
from wmbench.suite.spec import load_suite

REPO = Path(__file__).resolve().parents[1]

TINY_CONFIG = """
config:
  env: {action_repeat: 8, render_quality: fast}
  agent:
    world_model:
      {rssm: {deter: 8, stoch: 4, classes: 0, hidden: 8}, cnn_depth: 4, units: 8, layers: 1}
    actor_critic: {units: 8, actor_layers: 1, critic_layers: 1, imag_horizon: 3}
    log_every: 1
  train: {env_frames: 160, learning_starts: 80, train_ratio: 16, batch_size: 2, seq_len: 4,
          eval_every: 1000, eval_episodes: 1, final_eval_episodes: 2, progress: false}
"""


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_valid_suite_expands_to_objectives_x_tasks_x_seeds(tmp_path):
    path = write(
        tmp_path,
        "name: s\nobjectives: [reward, contrastive]\ntasks: "
        "[toy:reach]\nseeds: [0, 1, 2]\n" + TINY_CONFIG,
    )
    spec, runs = load_suite(path)
    assert spec.name == "s"
    assert [r.run_id for r in runs] == [
        f"{o}-toy_reach-s{s}" for o in ("reward", "contrastive") for s in (0, 1, 2)
    ]
    assert {r.config.env.task for r in runs} == {"toy:reach"}
    assert all(r.config.agent.world_model.rssm.deter == 8 for r in runs)


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "name: s\nobjectives: [nope]\ntasks: [toy:reach]\nseeds: [0]\n",
            f"unknown objective 'nope'; available: {', '.join(sorted(available()))} (",
        ),
        (
            "name: s\nobjectives: [reward]\ntasks: [toy:nope]\nseeds: [0]\n",
            "Unknown toy task 'toy:nope'",
        ),
        ("name: s\nobjectives: [reward]\ntasks: [toy:reach]\nseeds: [zero]\n", "seeds[0]"),
        (
            "name: s\nobjectives: [reward]\ntasks: [toy:reach]\nseeds: [0]\nconfig: "
            "{train: {env_frame: 10}}\n",
            "did you mean 'env_frames'",
        ),
        (
            "name: s\nobjectives: [reward]\ntasks: [toy:reach]\nseeds: [0]\nseed: 1\n",
            "unknown key 'seed'",
        ),
        (
            "name: s\nobjectives: [reward]\ntasks: [toy:reach]\nseeds: [0]\nconfig: {seed: 3}\n",
            "set it in the suite's 'seeds' list",
        ),
        (
            "name: s\nobjectives: []\ntasks: [toy:reach]\nseeds: [0]\n",
            "objectives: must list at least one entry",
        ),
        ("name: s\nobjectives: [reward\n", "suite.yaml"),
        (
            "name: s\nobjectives: [reward]\ntasks: [toy:reach]\nseeds: [0]\nconfig: "
            "{env: {image_size: 32}}\n",
            "set env.image_size=64",
        ),
        (
            "name: s\nobjectives: [reward]\ntasks: [toy:reach]\nseeds: [0]\nconfig: "
            "{train: {learning_starts: 10}}\n",
            "set train.learning_starts >= 99",
        ),
        (
            "name: s\nobjectives: [reward]\ntasks: [toy:reach]\nseeds: [0]\nconfig: "
            "{env: {render_quality: ultra}}\n",
            "expected one of ['standard', 'fast']",
        ),
        (
            "name: s\nobjectives: [{name: c, objective: contrastive}, "
            "{name: c, objective: contrastive, objective_config: {units: 8}}]\n"
            "tasks: [toy:reach]\nseeds: [0]\n",
            "suite.objectives: lists an entry twice (give each variant its own name)",
        ),
        (
            "name: s\nobjectives: [random]\ntasks: [toy:reach]\nseeds: [0]\n",
            "suite.objectives[0].name: 'random' is reserved for a baseline",
        ),
        (
            "name: s\nobjectives: [{name: a/b, objective: reward}]\ntasks: [toy:reach]\nseeds: "
            "[0]\n",
            "suite.objectives[0].name: 'a/b' must be letters",
        ),
        (
            "name: s\nobjectives: [reward, "
            "{name: c, objective: contrastive, objective_config: {unit: 8}}]\n"
            "tasks: [toy:reach]\nseeds: [0]\n",
            "suite.yaml: suite.objectives[1].objective_config.unit: unknown key 'unit'; did you "
            "mean 'units'?",
        ),
        (
            "name: s\nobjectives: [{name: c, objective: nope}]\ntasks: [toy:reach]\nseeds: [0]\n",
            "unknown objective 'nope'",
        ),
        (
            "name: s\nobjectives: [reward]\ntasks: [toy:reach]\nseeds: [0]\nconfig: "
            "{objective_config: {units: 8}}\n",
            "config.objective_config: set it in an entry of the suite's 'objectives' list",
        ),
        (
            "name: s\nobjectives: [reward]\ntasks: [toy:reach]\nseeds: [0]\nevaluation: "
            "{every: 10}\nconfig: {train: {eval_every: 20}}\n",
            "suite.evaluation.every and config.train.eval_every both set the evaluation cadence; "
            "keep one",
        ),
        (
            "name: s\nobjectives: [reward]\ntasks: [toy:reach]\nseeds: [0]\nevaluation: "
            "{every: 0}\n",
            "train.eval_every must be >= 1, got 0",
        ),
        (
            "name: s\nobjectives: [reward]\ntasks: [toy:reach]\nseeds: [0]\nreferences: "
            "{dmc:walker-walk: {low: 0, high: 1000}}\n",
            "suite.references.dmc:walker-walk: not one of the suite's tasks (toy:reach)",
        ),
        (
            "name: s\nobjectives: [reward]\ntasks: [toy:reach]\nseeds: [0]\nreferences: "
            "{toy:reach: {low: 1, high: 1}}\n",
            "high must be greater than low, got low=1.0, high=1.0",
        ),
    ],
)
def test_bad_suites_fail_with_one_clear_message(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    assert expected in str(err.value)


def test_objective_variants_evaluation_cadence_and_references(tmp_path):
    path = write(
        tmp_path,
        "name: s\nobjectives:\n  - reward\n"
        "  - {name: contrastive-narrow, objective: contrastive, objective_config: {units: 16}}\n"
        "  - {name: contrastive-wide, objective: contrastive, objective_config: {units: 32}}\n"
        "tasks: [toy:reach]\nseeds: [0]\nevaluation: {every: 40, episodes: 2}\n"
        "references: {toy:reach: {low: -1, high: 1}}\n"
        + TINY_CONFIG.replace("eval_every: 1000, eval_episodes: 1, ", ""),
    )
    spec, runs = load_suite(path)
    assert [r.run_id for r in runs] == [
        "reward-toy_reach-s0",
        "contrastive-narrow-toy_reach-s0",
        "contrastive-wide-toy_reach-s0",
    ]
    assert [(r.label, r.config.objective, r.config.objective_config) for r in runs] == [
        ("reward", "reward", {}),
        ("contrastive-narrow", "contrastive", {"units": 16}),
        ("contrastive-wide", "contrastive", {"units": 32}),
    ]
    assert {(r.config.train.eval_every, r.config.train.eval_episodes) for r in runs} == {(40, 2)}
    assert (spec.references["toy:reach"].low, spec.references["toy:reach"].high) == (-1.0, 1.0)


def test_dmc_vision_suite_is_valid():
    spec, runs = load_suite(REPO / "suites" / "dmc-vision.yaml")
    assert [o.name for o in spec.objectives] == ["reconstruction", "contrastive", "reward"]
    assert len(spec.tasks) == 6 and spec.seeds == (0, 1, 2, 3, 4) and len(runs) == 90
    assert {
        (r.config.env.action_repeat, r.config.train.env_frames, r.config.train.eval_every)
        for r in runs
    } == {(2, 1_000_000, 10_000)}
    # Dreamer v1: 100 pretraining updates after the 5000 frames of random prefill, then 100 updates
    # of 50 x 50 steps per 1000 env frames.
    assert {(r.config.agent.preset, r.config.agent.pretrain_updates) for r in runs} == {
        ("dreamer-v1", 100)
    }
    assert {planned_updates(r.config) for r in runs} == {100 + 99_500}
    # GPU settings: bf16 where the device has it, compiled, 4 envs per run
    assert {
        (r.config.train.precision, r.config.train.compile, r.config.train.envs) for r in runs
    } == {("auto", True, 4)}
    assert set(spec.references) == set(spec.tasks)


@pytest.mark.parametrize(
    "train_ratio, repeat, frames, prefill, pretrain, updates",
    [(6, 1, 20, 8, 0, 9), (20, 3, 40, 13, 0, 22), (6, 1, 20, 8, 3, 12)],
)
def test_planned_updates_equal_the_updates_of_a_run(
    tmp_path, train_ratio, repeat, frames, prefill, pretrain, updates
):
    # B*T = 8: 0.75 updates per agent step after 8 prefill steps of 20; 2.5 per step after
    # ceil(13 / 3) = 5 prefill steps of ceil(40 / 3) = 14 (the last step overshoots the budget);
    # pretraining updates come on top.
    data = tiny_run_dict()
    data["env"]["action_repeat"] = repeat
    data["agent"]["pretrain_updates"] = pretrain
    data["train"].update(train_ratio=train_ratio, env_frames=frames, learning_starts=prefill)
    cfg = from_dict(RunConfig, data)
    assert train(cfg, tmp_path / "run")["updates"] == planned_updates(cfg) == updates


def test_dry_run_lists_the_runs_and_their_cost_without_running(tmp_path, capsys):
    path = write(
        tmp_path,
        "name: s\nobjectives: [reward, contrastive]\ntasks: "
        "[toy:reach]\nseeds: [0, 1]\n" + TINY_CONFIG,
    )
    out = tmp_path / "runs"
    assert main(["suite", "run", str(path), "--out", str(out), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "run_id",
        "objective",
        "task",
        "seed",
        "env_frames",
        "updates",
        "evaluations",
    ]
    assert [line.split() for line in lines[1:5]] == [
        [f"{o}-toy_reach-s{s}", o, "toy:reach", str(s), "160", "20", "2"]
        for o in ("reward", "contrastive")
        for s in (0, 1)
    ]
    assert lines[-1].startswith("4 runs, 640 env frames and 80 updates in all")
    assert not out.exists()


class FailingObjective(Objective):
    """Raises in its first update: a run that fails."""

    name = "failing"

    def forward(self, inp: ObjectiveInputs) -> ObjectiveOutput:
        raise RuntimeError("deliberate failure")


def test_a_run_that_raises_is_marked_failed_and_the_others_finish(
    tmp_path, capsys, caplog, monkeypatch
):
    monkeypatch.setitem(registry.BUILTIN, "failing", f"{__name__}:FailingObjective")
    # the fake-batch check would stop this objective before any run: let it through to fail there
    monkeypatch.setattr(
        check, "require_ok", lambda cls, config: check.check_objective(registry.get("reward"))
    )
    path = write(
        tmp_path,
        "name: f\nobjectives: [failing, reward]\ntasks: [toy:reach]\nseeds: [0]\n" + TINY_CONFIG,
    )
    out = tmp_path / "runs"
    assert main(["suite", "status", str(path), "--out", str(out)]) == 0
    assert (
        capsys.readouterr().out.splitlines()[-1]
        == "runs: 0 done, 0 running, 0 failed, 4 pending (of 4)"
    )
    with caplog.at_level(logging.INFO, logger="wmbench"):
        assert main(["suite", "run", str(path), "--out", str(out)]) == 1
    assert (
        "1 run(s) failed (see status.json in each): failing-toy_reach-s0" in capsys.readouterr().err
    )
    assert "runs: 1 done, 0 running, 1 failed, 0 pending (of 2)" in caplog.messages
    runs = pd.read_parquet(out / "f" / "runs.parquet")
    assert list(runs.columns) == RUN_COLUMNS
    runs = runs.set_index("objective")
    assert runs.status.to_dict() == {
        "failing": "failed", "reward": "done", "zero": "done", "random": "done"
    }
    assert runs.loc["failing", "error"] == "RuntimeError: deliberate failure"
    _, (_, reward_run) = load_suite(path)
    assert runs.loc["reward", "updates"] == planned_updates(reward_run.config) == 20
    assert runs.loc["reward", "params"] > 0 and pd.isna(runs.loc["random", "params"])
    assert set(pd.read_parquet(out / "f" / "results.parquet").objective) == {
        "reward", "zero", "random"
    }
    assert main(["suite", "status", str(path), "--out", str(out)]) == 0
    printed = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert printed[2][:4] == ["failing-toy_reach-s0", "failed", "—", "RuntimeError:"]
    assert printed[3][:2] == ["reward-toy_reach-s0", "done"]
    assert printed[4][:2] == ["zero-toy_reach-s0", "done"]  # the baselines are listed too
    assert printed[5][:2] == ["random-toy_reach-s0", "done"]
    assert printed[-1] == "runs: 3 done, 0 running, 1 failed, 0 pending (of 4)".split()
    assert main(["report", str(out / "f"), "-o", str(tmp_path / "report"), "--reps", "20"]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## Failed runs" in report and "RuntimeError: deliberate failure" in report
    assert "Left out (no seed finished on every task): failing." in report
    assert "| failing     | 0      | n/a " in report  # its cost row: no finished run


@pytest.mark.ray
def test_ray_launcher_runs_each_run_as_a_task_on_a_local_instance(tmp_path):
    ray = pytest.importorskip("ray")
    path = write(
        tmp_path,
        "name: r\nobjectives: [reward]\ntasks: [toy:reach]\nseeds: "
        "[0]\n" + TINY_CONFIG,
    )
    out = tmp_path / "runs"
    assert main(["suite", "run", str(path), "--out", str(out), "--launcher", "ray"]) == 0
    runs = pd.read_csv(out / "r" / "runs.csv")
    assert runs[["seed", "status", "updates"]].values.tolist() == [[0, "done", 20]]
    assert not ray.is_initialized()  # the local instance started for the suite is shut down
    assert (
        main(["suite", "run", str(path), "--out", str(out), "--launcher", "ray", "--workers", "2"])
        == 2
    )


def test_all_problems_of_a_suite_are_reported_together(tmp_path):
    path = write(
        tmp_path, "name: s\nobjectives: [nope, reward]\ntasks: [toy:reach, toy:bad]\nseeds: [0]\n"
    )
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    message = str(err.value)
    assert "unknown objective 'nope'" in message
    assert "toy:bad" in message


def test_cli_rejects_malformed_suite_before_any_run(tmp_path, capsys):
    path = write(
        tmp_path,
        "name: s\nobjectives: [reward]\ntasks: [toy:reach]\nseeds: "
        "[0]\nconfig: {agent: {world_model: {rssm: {deter: big}}}}\n",
    )
    out = tmp_path / "runs"
    assert main(["suite", "run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wmbench: error: invalid suite:")
    assert "config.agent.world_model.rssm.deter" in err
    assert not out.exists()


def test_cli_rejects_unknown_objective_before_any_run(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["train", "--objective", "nope", "--task", "toy:reach", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"unknown objective 'nope'; available: {', '.join(sorted(available()))} (" in err
    assert not out.exists()


def test_cli_lists_objectives(capsys):
    assert main(["objectives"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed[:7] == [
        "name",
        "reward",
        "reconstruction",
        "contrastive",
        "prototypes",
        "self_predictive",
        "tpc",
    ]


def test_tiny_suite_on_dm_control_pixels_writes_the_results_table(tmp_path, capsys):
    """Every built-in objective plus the random baseline on cartpole-balance pixels, end to end."""
    path = write(
        tmp_path,
        "name: e2e\nobjectives: [reward, reconstruction, contrastive]\ntasks: "
        "[dmc:cartpole-balance]\nseeds: [0]\n" + TINY_CONFIG,
    )
    out = tmp_path / "runs"
    assert main(["suite", "run", str(path), "--out", str(out)]) == 0
    table = pd.read_csv(out / "e2e" / "results.csv")
    assert list(table.columns) == COLUMNS
    finals = (
        table[table.metric == "eval/return"]
        .sort_values("env_frames")
        .groupby(["objective", "seed"])
        .last()
    )
    assert sorted(finals.index.get_level_values("objective")) == [
        "contrastive",
        "random",
        "reconstruction",
        "reward",
        "zero",
    ]
    assert all(math.isfinite(v) and 0 <= v <= 1000 for v in finals["value"])
    trained = finals.drop(index=["random", "zero"], level="objective")
    assert set(trained["env_frames"]) == {160.0}
    # One row per objective in the comparison, then the three baselines, one seed each (the
    # untrained agent: one run per objective).
    comparison = (out / "e2e" / "comparison.md").read_text()
    for objective in ("reward", "reconstruction", "contrastive"):
        assert f"| {objective}" in comparison
    for baseline, runs in (("zero action", 1), ("uniform random", 1), ("untrained agent", 3)):
        assert re.search(rf"\| {baseline} +\| [0-9.]+ \[[0-9., ]+\] +\| +{runs} \|", comparison)
    assert (out / "e2e" / "curves.png").stat().st_size > 0
    losses = table[table.metric.str.startswith("train/loss/")]
    assert set(losses.metric) >= {
        "train/loss/reward",
        "train/loss/kl",
        "train/loss/objective/image",
        "train/loss/objective/infonce",
    }
    assert losses.value.map(math.isfinite).all()
    # The printed table has the three objectives and the baseline.
    printed = capsys.readouterr().out
    assert all(
        name in printed
        for name in ("reward", "reconstruction", "contrastive", "zero action", "uniform random")
    )
    # The untrained agent's evaluation and the final one are over the same 2 seeded episodes, so a
    # run's first eval/return equals what the untrained baseline row averages.
    first = table[(table.metric == "eval/return") & (table.env_frames == 0)]
    assert set(first.objective) == {"reward", "reconstruction", "contrastive", "zero", "random"}
    # One logged row per update (log_every=1): nothing repeated at later optimizer steps.
    for objective in ("reward", "reconstruction", "contrastive"):
        status = json.loads(
            (out / "e2e" / f"{objective}-dmc_cartpole-balance-s0" / "status.json").read_text()
        )
        rows = losses[(losses.objective == objective) & (losses.metric == "train/loss/world_model")]
        assert len(rows) == status["updates"] == 20  # 10 agent steps after prefill, 2 updates each
    # The store in parquet equals the csv; each trained run records its parameters and planned
    # updates.
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "e2e" / "results.parquet"), table, check_dtype=False
    )
    runs = pd.read_csv(out / "e2e" / "runs.csv").set_index("objective")
    assert (runs.status == "done").all() and (runs.drop(index=["random", "zero"]).params > 0).all()
    assert runs.loc["reconstruction", "params"] > runs.loc["reward", "params"]  # the decoder
    assert set(runs.drop(index=["random", "zero"]).updates) == {
        planned_updates(load_suite(path)[1][0].config)
    }
    assert main(["report", str(out / "e2e"), "-o", str(tmp_path / "report"), "--reps", "20"]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    for name in ("reward", "reconstruction", "contrastive", "zero action", "uniform random"):
        assert f"| dmc:cartpole-balance | {name} " in report
    assert "name: e2e" in report  # the suite file
    # Running the suite again skips finished runs (no new rows, same table).
    assert main(["suite", "run", str(path), "--out", str(out)]) == 0
    assert pd.read_csv(out / "e2e" / "results.csv").shape == table.shape
    # A changed configuration must not silently reuse the finished runs.
    changed = write(
        tmp_path, path.read_text().replace("env_frames: 160", "env_frames: 240"), "changed.yaml"
    )
    assert main(["suite", "run", str(changed), "--out", str(out)]) == 2
    assert "made with another configuration" in capsys.readouterr().err
    # A narrower suite of the same name tabulates only its own runs.
    narrow = write(
        tmp_path,
        path.read_text().replace("[reward, reconstruction, contrastive]", "[reward]"),
        "narrow.yaml",
    )
    assert main(["suite", "run", str(narrow), "--out", str(out)]) == 0
    assert set(pd.read_csv(out / "e2e" / "results.csv").objective) == {"reward", "zero", "random"}


def test_cli_train_refuses_to_overwrite_a_finished_run(tmp_path, capsys):
    sets = [
        f"--set={k}={v}"
        for k, v in {
            "env.action_repeat": 1,
            "train.env_frames": 10,
            "train.learning_starts": 8,
            "train.train_ratio": 8,
            "train.batch_size": 2,
            "train.seq_len": 4,
            "train.progress": "false",
            "agent.world_model.rssm.deter": 8,
            "agent.world_model.cnn_depth": 4,
            "agent.world_model.units": 8,
            "agent.actor_critic.units": 8,
        }.items()
    ]
    args = ["train", "--objective", "reward", "--task", "toy:reach", "--out", str(tmp_path), *sets]
    assert main(args) == 0
    before = (tmp_path / "reward-toy_reach-s0" / "metrics.csv").read_text()
    assert main(args) == 2
    assert "holds a finished run" in capsys.readouterr().err
    assert (tmp_path / "reward-toy_reach-s0" / "metrics.csv").read_text() == before


def test_suite_status_of_an_unfinished_suite_shows_no_nan_and_lists_the_baseline(tmp_path, capsys):
    path = write(tmp_path, "name: u\nobjectives: [reward]\ntasks: [toy:reach]\nseeds: [0, 1]\n")
    assert main(["suite", "status", str(path), "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:-1]}
    assert rows == {name: ["pending", "—"] for name in (
        "reward-toy_reach-s0", "reward-toy_reach-s1", "zero-toy_reach-s0", "zero-toy_reach-s1",
        "random-toy_reach-s0", "random-toy_reach-s1")}
    assert out.splitlines()[-1] == "runs: 0 done, 0 running, 0 failed, 6 pending (of 6)"
