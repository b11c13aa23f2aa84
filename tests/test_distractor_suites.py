"""The distractor suites validate (not run): the grid they promise, and run directories that are
safe names."""

from __future__ import annotations

import re
from pathlib import Path

from wmbench.objectives.registry import BUILTIN
from wmbench.rundir import run_id
from wmbench.suite.spec import load_suite

SUITES = Path(__file__).resolve().parent.parent / "suites"
TASKS = [
    "walker-walk",
    "cheetah-run",
    "cup-catch",
    "reacher-easy",
    "finger-spin",
    "cartpole-swingup",
]


def test_run_ids_of_tasks_with_options_are_plain_directory_names():
    assert (
        run_id("tpc", "dmc:walker-walk?background=video", 3)
        == "tpc-dmc_walker-walk_background_video-s3"
    )
    assert run_id("reward", "dmc:cartpole-balance", 0) == "reward-dmc_cartpole-balance-s0"


def test_full_distractor_suite_is_six_objectives_six_tasks_two_backgrounds_five_seeds():
    spec, runs = load_suite(SUITES / "dmc-distractors.yaml")
    assert [o.name for o in spec.objectives] == list(BUILTIN)
    assert list(spec.tasks) == [
        f"dmc:{t}{suffix}" for t in TASKS for suffix in ("", "?background=video")
    ]
    assert spec.seeds == (0, 1, 2, 3, 4)
    assert len(runs) == 6 * 12 * 5 == len({r.run_id for r in runs})
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", r.run_id) for r in runs)
    cfg = runs[0].config
    assert (
        cfg.train.env_frames == 1_000_000
        and cfg.env.action_repeat == 2
        and cfg.env.render_quality == "standard"
    )
    assert cfg.agent.world_model.cnn_depth == 32  # Dreamer's network sizes


def test_cpu_distractor_suite_is_small_and_pairs_standard_with_video():
    spec, runs = load_suite(SUITES / "dmc-distractors-cpu.yaml")
    assert "reconstruction" in [o.name for o in spec.objectives] and len(spec.objectives) == 2
    assert list(spec.tasks) == ["dmc:cartpole-balance", "dmc:cartpole-balance?background=video"]
    assert len(spec.seeds) == 2 and len(runs) == 8
    cfg = runs[0].config
    assert cfg.agent.world_model.cnn_depth == 16 and cfg.agent.world_model.rssm.deter == 128
    assert cfg.train.env_frames <= 50_000
