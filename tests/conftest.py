"""Shared tiny configurations, random batches and a simulated crash for the tests."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from wmbench.agents.config import (
    ActorCriticConfig,
    AgentConfig,
    KLConfig,
    RSSMConfig,
    WorldModelConfig,
)
from wmbench.agents.module import DreamerModule
from wmbench.testing import IMAGE_SHAPE, random_batch  # noqa: F401  (re-exported to the tests)
from wmbench.types import Batch

# Tiny networks run fastest single-threaded, and this keeps the suite fast on a busy 2-core machine.
torch.set_num_threads(1)

B, T, A = 2, 3, 2


def tiny_wm_config(**kw: Any) -> WorldModelConfig:
    """World model with D=8, S=4, hidden 8, cnn_depth 4, heads of one layer of 8 units."""
    rssm = kw.pop("rssm", RSSMConfig(deter=8, stoch=4, hidden=8))
    return WorldModelConfig(
        rssm=rssm, kl=kw.pop("kl", KLConfig()), cnn_depth=4, units=8, layers=1, **kw
    )


def tiny_agent_config(**kw: Any) -> AgentConfig:
    ac = ActorCriticConfig(units=8, layers=1, imag_horizon=3, **kw.pop("actor_critic", {}))
    return AgentConfig(
        world_model=tiny_wm_config(**kw.pop("world_model", {})), actor_critic=ac, log_every=1
    )


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
            "world_model": {
                "rssm": {"deter": 8, "stoch": 4, "hidden": 8},
                "cnn_depth": 4,
                "units": 8,
                "layers": 1,
            },
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
def batch() -> Batch:
    return random_batch()


def crash_at_update(monkeypatch, update: int) -> None:
    """Makes training raise when update ``update + 1`` starts (after update ``update``'s
    checkpoint)."""
    original = DreamerModule.training_step

    def training_step(self, batch, batch_idx):
        if self.updates == update:
            raise RuntimeError("simulated crash")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(DreamerModule, "training_step", training_step)
