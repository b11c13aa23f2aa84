"""Benchmarks (e), (f): the acting loop against raw dm_control, and replay sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import CONFIGS, attached_module, run_benchmark
from wmbench.data.replay import Replay
from wmbench.envs import make_env
from wmbench.envs.gl import ensure_mujoco_gl
from wmbench.runtime.stream import AgentPolicy

TASK, ACTION_REPEAT, AGENT_STEPS = "walker-walk", 2, 250
FRAMES = AGENT_STEPS * ACTION_REPEAT


def _raw_loop():
    """dm_control alone: random actions, ACTION_REPEAT physics steps, one 64×64 render per agent
    step."""
    ensure_mujoco_gl()
    from dm_control import suite

    env = suite.load(*TASK.split("-"), task_kwargs={"random": 0})
    spec = env.action_spec()
    rng = np.random.default_rng(0)

    def loop() -> None:
        env.reset()
        for _ in range(AGENT_STEPS):
            action = rng.uniform(spec.minimum, spec.maximum)
            for _ in range(ACTION_REPEAT):
                env.step(action)
            env.physics.render(64, 64, camera_id=0)

    return loop


def _wmbench_loop(policy: str, render_quality: str = "standard"):
    env = make_env(
        f"dmc:{TASK}",
        image_size=64,
        action_repeat=ACTION_REPEAT,
        seed=0,
        render_quality=render_quality,
    )
    act = None
    if policy == "agent":
        module = attached_module(CONFIGS["cpu-small"][0])
        act = AgentPolicy(module, env.action_space.shape[0])

    def loop() -> None:
        obs, _ = env.reset()
        first = True
        for _ in range(AGENT_STEPS):
            action = env.action_space.sample() if act is None else act(obs, first, explore=True)
            obs, *_ = env.step(action)
            first = False

    return loop


@pytest.mark.parametrize(
    "variant", ["raw-dm_control", "wmbench-random", "wmbench-agent", "wmbench-agent-fast-render"]
)
def test_acting(benchmark, variant: str) -> None:
    """(e): env frames per second on walker-walk, action repeat 2, 64×64 standard pixels."""
    if variant == "raw-dm_control":
        loop = _raw_loop()
    elif variant == "wmbench-agent-fast-render":
        loop = _wmbench_loop("agent", render_quality="fast")
    else:
        loop = _wmbench_loop(variant.split("-")[1])
    with torch.no_grad():
        run_benchmark(benchmark, loop, rounds=3, frames=FRAMES)
    benchmark.extra_info["frames/s"] = FRAMES / benchmark.stats.stats.median


@pytest.mark.parametrize(("batch_size", "seq_len"), [(16, 50), (50, 50)])
def test_replay_sample(benchmark, batch_size: int, seq_len: int) -> None:
    """(f): sampling ``[B, T]`` windows from a replay of 20,000 steps (uint8 64×64 images)."""
    rng = np.random.default_rng(0)
    replay = Replay(20_000, (3, 64, 64), 6, seed=0)
    image = rng.integers(0, 256, (3, 64, 64), dtype=np.uint8)
    for i in range(20_000):
        first = i % 500 == 0
        replay.add(image, np.zeros(6, np.float32), 0.0, first, False, i % 500 == 499)
    run_benchmark(benchmark, lambda: replay.sample(batch_size, seq_len), rounds=50)
