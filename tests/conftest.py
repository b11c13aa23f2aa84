"""Shared tiny configurations and random batches for the agent/objective tests."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from wmbench.agents.imagination import ActorCriticConfig
from wmbench.agents.module import AgentConfig
from wmbench.agents.rssm import KLConfig, RSSMConfig
from wmbench.agents.world_model import WorldModelConfig

# Tiny networks run fastest single-threaded, and this keeps the suite fast on a busy 2-core machine.
torch.set_num_threads(1)

B, T, A = 2, 3, 2
IMAGE_SHAPE = (3, 64, 64)


def tiny_wm_config(**kw: Any) -> WorldModelConfig:
    """World model with D=8, S=4, hidden 8, cnn_depth 4, heads of one layer of 8 units."""
    rssm = kw.pop("rssm", RSSMConfig(deter=8, stoch=4, hidden=8))
    return WorldModelConfig(rssm=rssm, kl=kw.pop("kl", KLConfig()), cnn_depth=4, units=8, layers=1, **kw)


def tiny_agent_config(**kw: Any) -> AgentConfig:
    ac = ActorCriticConfig(units=8, layers=1, imag_horizon=3, **kw.pop("actor_critic", {}))
    return AgentConfig(world_model=tiny_wm_config(**kw.pop("world_model", {})), actor_critic=ac, log_every=1)


def random_batch(batch: int = B, steps: int = T, action_dim: int = A, seed: int = 0) -> dict[str, torch.Tensor]:
    """A replay-like batch: uint8 images [B, T, 3, 64, 64], is_first at t=0 only."""
    g = torch.Generator().manual_seed(seed)
    is_first = torch.zeros(batch, steps, dtype=torch.bool)
    is_first[:, 0] = True
    is_terminal = torch.zeros(batch, steps, dtype=torch.bool)
    is_terminal[0, -1] = True
    return {
        "image": torch.randint(0, 256, (batch, steps, *IMAGE_SHAPE), dtype=torch.uint8, generator=g),
        "prev_action": torch.rand(batch, steps, action_dim, generator=g) * 2 - 1,
        "reward": torch.randn(batch, steps, generator=g),
        "is_first": is_first,
        "is_terminal": is_terminal,
        "is_last": is_terminal.clone(),
    }


def tiny_run_dict(objective: str = "reward", seed: int = 0) -> dict[str, Any]:
    """RunConfig mapping for toy:reach giving exactly 2 updates.

    action_repeat 1 and train_ratio = B*T make one update per collected step; 8 random frames
    (learning_starts) fill the replay, then frames 9 and 10 each trigger one update.
    """
    return {
        "objective": objective,
        "seed": seed,
        "env": {"task": "toy:reach", "action_repeat": 1},
        "agent": {
            "world_model": {"rssm": {"deter": 8, "stoch": 4, "hidden": 8}, "cnn_depth": 4, "units": 8, "layers": 1},
            "actor_critic": {"units": 8, "layers": 1, "imag_horizon": 3},
            "log_every": 1,
        },
        "train": {
            "env_frames": 10,
            "learning_starts": 8,
            "train_ratio": 8,
            "batch_size": 2,
            "seq_len": 4,
            "eval_every": 1000,
            "eval_episodes": 1,
            "progress": False,
        },
    }


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    return random_batch()
