"""Sync mode with ``train.envs`` envs in worker processes: each env's rows in its own replay, the
train ratio over all of them, same seed same run, exact resume; and batched acting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import crash_at_update, tiny_agent_config, tiny_run_dict
from wmbench.agents.module import DreamerModule
from wmbench.configio import from_dict
from wmbench.data.replay import Replay
from wmbench.data.replay_disk import ReplayDisk
from wmbench.envs.toy import EPISODE_STEPS
from wmbench.objectives import registry
from wmbench.run_config import RunConfig
from wmbench.runtime.stream import AgentPolicy
from wmbench.runtime.train import train

ENVS = 3


def parallel_config(**train_options) -> RunConfig:
    """toy:reach in 3 envs: 12 random steps (4 in each env), then 168 policy steps, one update per
    8 steps (train ratio 1 at B·T = 8): 60 steps per env, so every env ends an episode (50 steps)
    and starts another."""
    data = tiny_run_dict()
    data["train"].update(env_frames=180, learning_starts=12, train_ratio=1, envs=ENVS,
                         replay_chunk=16, **train_options)
    return from_dict(RunConfig, data)


def metrics(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "metrics.csv").drop(columns="wall_time")


def test_each_env_fills_its_own_replay_and_the_ratio_counts_all_of_them(tmp_path):
    cfg = parallel_config()
    summary = train(cfg, tmp_path / "run")
    schedule = cfg.ratio_schedule()
    assert summary["env_frames"] == 180 and summary["updates"] == schedule.updates == 21

    images = []
    for i in range(ENVS):
        replay = Replay(10_000, (3, 64, 64), 2)
        ReplayDisk(tmp_path / "run" / "replay" / f"env-{i}", 16).restore(replay, 62)
        rows = replay.rows(0, replay.added)
        # 60 steps: an episode of 50 (reset row + 50 steps), then a reset row and 10 steps
        assert replay.added == 62
        assert list(np.flatnonzero(rows["is_first"])) == [0, EPISODE_STEPS + 1]
        assert list(np.flatnonzero(rows["is_last"])) == [EPISODE_STEPS]
        images.append(rows["image"][0])
    assert not np.array_equal(images[0], images[1])  # env i is seeded seed + 1000 i

    # every update started as soon as it was due: its batch was handed out at the first vector step
    # (3 agent steps) after which the schedule allowed it
    logged = pd.read_csv(tmp_path / "run" / "metrics.csv").dropna(subset=["train/loss/world_model"])
    for update, frames in zip(logged["step"], logged["env_frames"].astype(int), strict=True):
        assert schedule.updates_allowed(frames - ENVS) < update <= schedule.updates_allowed(frames)


def test_same_seed_same_run_and_exact_resume_with_parallel_envs(tmp_path, monkeypatch):
    cfg = parallel_config(checkpoint_every=30)
    a = train(cfg, tmp_path / "a")
    b = train(cfg, tmp_path / "b")
    pd.testing.assert_frame_equal(metrics(tmp_path / "a"), metrics(tmp_path / "b"))
    with monkeypatch.context() as patch:
        crash_at_update(patch, 12)
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(cfg, tmp_path / "resumed")
    resumed = train(cfg, tmp_path / "resumed", resume=True)
    for key in ("env_frames", "updates", "replay_rows", "eval_return"):
        assert a[key] == b[key] == resumed[key]
    pd.testing.assert_frame_equal(metrics(tmp_path / "a"), metrics(tmp_path / "resumed"))
    one = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=False)
    other = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=False)
    for key, value in one["state_dict"].items():
        assert torch.equal(value, other["state_dict"][key]), key


def test_batched_acting_equals_acting_in_each_env_alone(monkeypatch):
    """One forward for N envs gives each env the actions it gets alone, also when only some envs
    start an episode (deterministic: the actor's mode, and the posterior's mean as its sample)."""
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)  # the Gaussian posterior's noise
    torch.manual_seed(0)
    cls = registry.get("reward")
    module = DreamerModule(tiny_agent_config(), (3, 64, 64), 2, cls, cls.Config())
    frames = torch.randint(0, 256, (4, ENVS, 3, 64, 64), dtype=torch.uint8).numpy()
    firsts = np.array([[True] * ENVS, [False] * ENVS, [False, True, False], [False] * ENVS])
    together = AgentPolicy(module, 2)
    alone = [AgentPolicy(module, 2) for _ in range(ENVS)]
    for images, is_first in zip(frames, firsts, strict=True):
        batched = together.act(images, is_first, explore=False)
        for i, policy in enumerate(alone):
            np.testing.assert_allclose(
                batched[i], policy(images[i], bool(is_first[i]), explore=False), atol=1e-6
            )


def test_acting_under_cuda_graphs_marks_a_step_and_keeps_a_copy_of_the_state(monkeypatch):
    """With CUDA-graph compilation a compiled call's outputs are overwritten by the next replay:
    each act starts a graph step and carries a copy of the posterior (same actions as without)."""
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)
    marks = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    cls = registry.get("reward")
    module = DreamerModule(tiny_agent_config(), (3, 64, 64), 2, cls, cls.Config())
    frames = torch.randint(0, 256, (3, ENVS, 3, 64, 64), dtype=torch.uint8).numpy()
    returned = []
    act = module.act
    monkeypatch.setattr(module, "act", lambda *a: returned.append(act(*a)) or returned[-1])
    policies = {False: AgentPolicy(module, 2), True: AgentPolicy(module, 2)}
    for t, images in enumerate(frames):
        actions = {}
        for graphs, policy in policies.items():
            module.cuda_graphs = graphs
            actions[graphs] = policy.act(images, np.full(ENVS, t == 0), explore=False)
        np.testing.assert_array_equal(actions[True], actions[False])
        state = returned[-1][1].deter
        assert torch.equal(policies[True].state.deter, state)
        assert policies[True].state.deter.data_ptr() != state.data_ptr()
    assert len(marks) == len(frames)
