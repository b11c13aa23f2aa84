"""Benchmark (g): async mode's two sides against their isolated speeds (issue 7's acceptance).

On the smoke suite's configuration (``suites/smoke.yaml``: cartpole-balance pixels, action repeat 8,
CPU-small networks, B 16 × T 32, train ratio 128, so one update per 4 agent steps), one short async
run is compared with

- a plain env loop with random actions (the same env, one process): actor frames/s;
- the isolated update step (``benchmarks/test_update.py``'s, with the learner's torch threads):
  learner updates/s.

The limiter makes the faster side wait, so each side's speed is taken over the time it did not wait
(``async/actor_wait``, ``async/learner_wait``): frames/s per actor =
``async/env_frames_per_s / actors / (1 - actor_wait)``, updates/s =
``async/updates_per_s / (1 - learner_wait)``. Both ratios go to ``extra_info`` and the summary
table.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import pandas as pd
import torch
import yaml
from test_update import _update_fn

from wmbench.configio import from_dict
from wmbench.run_config import RunConfig
from wmbench.runtime.env_pool import make_run_env
from wmbench.runtime.train import train

SMOKE = Path(__file__).parents[1] / "suites" / "smoke.yaml"
FRAMES, PREFILL = (
    2560,
    1024,
)  # 128 random prefill steps, then 192 steps and 48 updates (≈ 1 min on 2 cores)


def _config() -> RunConfig:
    data = copy.deepcopy(yaml.safe_load(SMOKE.read_text())["config"])
    data.update(objective="reconstruction", seed=0)
    data["env"]["task"] = "dmc:cartpole-balance"
    data["agent"]["log_every"] = 5
    data["train"].update(
        mode="async",
        env_frames=FRAMES,
        learning_starts=PREFILL,
        eval_every=10**9,
        progress=False,
        checkpoint_every=10**9,
    )
    return from_dict(RunConfig, data)


def _env_frames_per_s(cfg: RunConfig, steps: int = 200) -> float:
    env = make_run_env(cfg, seed=0)
    env.action_space.seed(0)
    env.reset()
    started = time.perf_counter()
    for _ in range(steps):
        if any(env.step(env.action_space.sample())[2:4]):
            env.reset()
    return steps * cfg.env.action_repeat / (time.perf_counter() - started)


def _updates_per_s(threads: int, rounds: int = 5) -> float:
    update = _update_fn("cpu-small", "reconstruction", "fp32")  # the smoke networks and batch
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        update()
        started = time.perf_counter()
        for _ in range(rounds):
            update()
        return rounds / (time.perf_counter() - started)
    finally:
        torch.set_num_threads(before)


def test_async_sides_against_isolated(benchmark, tmp_path) -> None:
    """(g): actor frames/s vs a random-action env loop; learner updates/s vs the isolated update."""
    cfg = _config()
    learner_threads = max(
        1, (os.cpu_count() or 1) - cfg.train.actors
    )  # what async mode gives the learner
    env_fps, update_ps = _env_frames_per_s(cfg), _updates_per_s(learner_threads)
    summary: dict = {}
    benchmark.pedantic(lambda: summary.update(train(cfg, tmp_path / "run")), rounds=1, iterations=1)
    rows = (
        pd.read_csv(tmp_path / "run" / "metrics.csv")
        .dropna(subset=["async/updates_per_s"])
        .iloc[1:]
    )  # after the prefill
    rates = rows[[c for c in rows if c.startswith("async/")]].mean()
    actor_fps = (
        rates["async/env_frames_per_s"]
        / cfg.train.actors
        / max(1e-9, 1 - rates["async/actor_wait"])
    )
    learner_ups = rates["async/updates_per_s"] / max(1e-9, 1 - rates["async/learner_wait"])
    info = {
        "env_loop_frames/s": env_fps,
        "actor_frames/s": actor_fps,
        "actor/env_loop": actor_fps / env_fps,
        "isolated_updates/s": update_ps,
        "learner_updates/s": learner_ups,
        "learner/isolated": learner_ups / update_ps,
        "learner_threads": learner_threads,
        "updates": summary["updates"],
        **{k.split("/")[1]: v for k, v in rates.items()},
    }
    benchmark.extra_info.update(info)
    print("\n" + "\n".join(f"{k:20s} {v:.3g}" for k, v in info.items()))
    assert summary["updates"] == (FRAMES - PREFILL) // 8 // 4
