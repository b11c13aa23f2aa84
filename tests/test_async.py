"""Async mode (DayDreamer's actor/learner split): the limiter's bounds, weights reaching an actor, a
run held at the train ratio that resumes, and a crashing actor stopping the run."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
import yaml

import wmbench
from conftest import crash_at_update, tiny_run_dict
from wmbench.agents.module import DreamerModule
from wmbench.configio import from_dict
from wmbench.objectives.reward import RewardObjective
from wmbench.run_config import RunConfig
from wmbench.rundir import CHECKPOINT
from wmbench.runtime.async_actor import POLICY_PREFIXES, SharedWeights
from wmbench.runtime.schedule import RatioSchedule
from wmbench.runtime.train import train
from wmbench.testing import IMAGE_SHAPE


def tiny_async(**train_options) -> RunConfig:
    data = tiny_run_dict()
    data["train"].update(mode="async", **train_options)
    return from_dict(RunConfig, data)


def test_ratio_schedule_bounds_by_hand():
    # 8 prefill steps, 20 steps in all, B·T / train_ratio = 2 steps per update: 6 updates in the
    # budget.
    schedule = RatioSchedule(prefill_steps=8, total_steps=20, steps_per_update=2.0, slack=0.05)
    assert [schedule.updates_allowed(s) for s in (0, 8, 9, 10, 11, 12, 20)] == [0, 0, 0, 1, 1, 2, 6]
    # learner at update 4 (due at step 16): actors may go to 8 + ceil(max(4 * 2 * 1.05, 5 * 2 /
    # 1.05)) = 8 + 10
    assert schedule.steps_allowed(4) == 18
    assert schedule.steps_allowed(0) == 8 + 2  # always as far as the next update needs
    assert schedule.steps_allowed(100) == 20  # never past the budget
    assert schedule.ratio(updates=4, steps=16) == 1.0
    assert tiny_async().ratio_schedule() == RatioSchedule(
        8, 10, 1.0
    )  # toy:reach tiny run: 2 updates, as in sync


def test_ratio_schedule_pretraining_updates_come_first_and_hold_the_actors_at_the_prefill():
    schedule = RatioSchedule(8, 20, 2.0, slack=0.05, pretrain_updates=3)
    assert [schedule.updates_allowed(s) for s in (7, 8, 9, 10, 12, 20)] == [0, 3, 3, 4, 5, 9]
    assert [schedule.steps_allowed(u) for u in (0, 2, 3, 7)] == [8, 8, 10, 18]
    assert schedule.updates == 9 and schedule.ratio(updates=7, steps=16) == 1.0


@pytest.mark.parametrize("pretrain", [0, 4])
def test_ratio_schedule_lets_neither_side_block_the_other(pretrain):
    schedule = RatioSchedule(
        prefill_steps=5, total_steps=400, steps_per_update=1.3, pretrain_updates=pretrain
    )
    for updates in range(schedule.updates_allowed(400)):
        assert schedule.updates_allowed(schedule.steps_allowed(updates)) > updates


def _actor_pulls(weights: SharedWeights, replies, go) -> None:
    """Child: a freshly initialised module pulls the published weights, twice, and sends its policy
    tensors back (as numpy)."""
    torch.manual_seed(123)  # other initial weights than the learner's
    module = DreamerModule(
        tiny_async().agent, IMAGE_SHAPE, 2, RewardObjective, RewardObjective.Config()
    )
    version = None
    for _ in range(2):
        go.wait()
        go.clear()
        version = weights.pull(module, version)
        replies.put(
            (
                version,
                {
                    k: v.numpy().copy()
                    for k, v in module.state_dict().items()
                    if k.startswith(POLICY_PREFIXES)
                },
            )
        )


def test_published_weights_reach_an_actor_process():
    torch.manual_seed(0)
    learner = DreamerModule(
        tiny_async().agent, IMAGE_SHAPE, 2, RewardObjective, RewardObjective.Config()
    )
    context = mp.get_context("spawn")
    weights = SharedWeights(learner, context)
    replies, go = context.Queue(), context.Event()
    child = context.Process(target=_actor_pulls, args=(weights, replies, go), daemon=True)
    child.start()
    try:
        for version in (0, 7):
            if version:
                with torch.no_grad():
                    for p in learner.parameters():
                        p.add_(0.5)
                learner.updates = version
                weights.publish(learner)
            go.set()
            got_version, tensors = replies.get(timeout=60)
            own = learner.state_dict()
            assert got_version == version
            assert len(tensors) > 10 and {
                k.split(".")[0] + "." + k.split(".")[1] for k in tensors
            } == {"world_model.encoder", "world_model.rssm", "actor_critic.actor"}
            for name, tensor in tensors.items():
                assert torch.equal(torch.from_numpy(tensor), own[name]), name
    finally:
        child.join(timeout=30)
    assert child.exitcode == 0


def test_async_run_holds_the_ratio_resumes_and_logs_the_sync_columns(tmp_path, monkeypatch):
    """toy:reach, 60 frames: 8 random prefill frames, then one update per frame (52 updates, as in
    sync)."""
    cfg = tiny_async(env_frames=60, checkpoint_every=1, replay_chunk=4)
    with monkeypatch.context() as patch:
        crash_at_update(patch, 30)
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(cfg, tmp_path / "async")
    assert multiprocessing.active_children() == []  # the actor was stopped
    assert json.loads((tmp_path / "async" / "status.json").read_text())["status"] == "failed"
    at_crash = torch.load(tmp_path / "async" / CHECKPOINT, weights_only=False)
    assert at_crash["wmbench_updates"] == 30
    summary = train(cfg, tmp_path / "async", resume=True)
    assert multiprocessing.active_children() == []
    assert (summary["env_frames"], summary["agent_steps"], summary["updates"]) == (60, 60, 52)

    logged = pd.read_csv(tmp_path / "async" / "metrics.csv")
    assert list(logged.dropna(subset=["train/loss/world_model"])["step"]) == list(range(1, 53))
    ratio = logged["async/train_ratio"].dropna()
    assert len(ratio) == 52 and ratio.between(0.9 * 8, 1.1 * 8).all(), ratio.describe()
    assert (logged["async/policy_lag"].dropna() >= 0).all() and (
        logged["async/updates_per_s"].dropna() > 0
    ).all()
    assert logged["eval/return"].notna().sum() == 2  # at 0 and at the end

    train(
        dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, mode="sync")),
        tmp_path / "sync",
    )
    sync = pd.read_csv(tmp_path / "sync" / "metrics.csv")
    assert set(logged.columns) - set(sync.columns) == {
        "async/train_ratio",
        "async/policy_lag",
        "async/env_frames_per_s",
        "async/updates_per_s",
        "async/learner_wait",
        "async/actor_wait",
    }
    assert set(sync.columns) <= set(logged.columns)


CRASHING_ACTOR = """
import multiprocessing, os, sys
from pathlib import Path
from wmbench.envs import toy

if multiprocessing.current_process().name.startswith("wmbench-actor"):  # runs in each spawned actor
    Path(sys.argv[1], multiprocessing.current_process().name + ".pid").write_text(str(os.getpid()))
    if multiprocessing.current_process().name.endswith("-0"):
        def step(self, action):
            raise ValueError("the robot arm jammed")
        toy.ToyReachEnv.step = step

if __name__ == "__main__":
    from wmbench.cli import main
    sys.exit(main(["train", "--config", sys.argv[2], "--out", sys.argv[1], "--mode", "async"]))
"""


def test_a_crashing_actor_fails_the_run_with_its_message_and_leaves_no_process(tmp_path):
    data = tiny_run_dict()
    data["train"].update(actors=2, env_frames=400, learning_starts=8)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "crash.py").write_text(textwrap.dedent(CRASHING_ACTOR))
    env = {"PYTHONPATH": str(Path(wmbench.__file__).parents[1]), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, str(tmp_path / "crash.py"), str(tmp_path), str(tmp_path / "config.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 1, done.stderr
    assert (
        "wmbench: error: actor 0 failed" in done.stderr
        and "ValueError: the robot arm jammed" in done.stderr
    )
    status = json.loads((tmp_path / "reward-toy_reach-s0" / "status.json").read_text())
    assert status["status"] == "failed" and "the robot arm jammed" in status["error"]
    pids = [int(p.read_text()) for p in tmp_path.glob("wmbench-actor-*.pid")]
    assert len(pids) == 2
    for pid in pids:  # gone (joined by the learner), not even a zombie
        assert not Path(f"/proc/{pid}").exists(), pid
