"""Shared tiny configurations, random batches and a simulated crash for the tests."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
import torch

from wmbench.agents.config import AgentConfig, WorldModelConfig
from wmbench.agents.module import DreamerModule
from wmbench.configio import from_dict
from wmbench.testing import IMAGE_SHAPE, random_batch  # noqa: F401  (re-exported to the tests)
from wmbench.types import Batch

# Tiny networks run fastest single-threaded, and this keeps the suite fast on a busy 2-core machine.
torch.set_num_threads(1)

B, T, A = 2, 3, 2

PRESETS = ("dreamer-v3", "dreamer-v1")
"""The agent presets; tests that must hold for both parametrize over them."""

TINY_AGENT = {
    "world_model": {
        "rssm": {"deter": 8, "stoch": 4, "classes": 0, "hidden": 8},
        "cnn_depth": 4,
        "units": 8,
        "layers": 1,
    },
    "actor_critic": {"units": 8, "actor_layers": 1, "critic_layers": 1, "imag_horizon": 3},
    "pretrain_updates": 0,
    "log_every": 1,
}
"""Tiny network sizes over a preset's styles (D=8, Gaussian S=4, hidden 8, cnn_depth 4, one
layer of 8 units in every head), no pretraining, logging every update."""


def tiny_agent_config(preset: str = "dreamer-v3", **sections: Any) -> AgentConfig:
    """``preset``'s agent at ``TINY_AGENT`` sizes; ``sections`` (mappings) are laid over it."""
    data = {"preset": preset, **copy.deepcopy(TINY_AGENT)}
    for key, value in sections.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    return from_dict(AgentConfig, data)


def tiny_wm_config(preset: str = "dreamer-v3", **kw: Any) -> WorldModelConfig:
    """The world model of ``tiny_agent_config(preset)`` with fields ``kw`` replaced."""
    return dataclasses.replace(tiny_agent_config(preset).world_model, **kw)


def tiny_run_dict(
    objective: str = "reward", seed: int = 0, preset: str = "dreamer-v3"
) -> dict[str, Any]:
    """RunConfig mapping for toy:reach giving exactly 2 updates, with ``TINY_AGENT`` networks.

    action_repeat 1 and train_ratio = B*T make one update per collected step; 8 random frames
    (learning_starts) fill the replay, then frames 9 and 10 each trigger one update.
    """
    return {
        "objective": objective,
        "seed": seed,
        "env": {"task": "toy:reach", "action_repeat": 1},
        "agent": {"preset": preset, **copy.deepcopy(TINY_AGENT)},
        "train": {
            "env_frames": 10,
            "learning_starts": 8,
            "train_ratio": 8,
            "batch_size": 2,
            "seq_len": 4,
            "eval_every": 1000,
            "eval_episodes": 1,
            "final_eval_episodes": 2,
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
