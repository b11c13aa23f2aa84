"""Synthetic replay batches and a learner outside ``Trainer.fit``, for tests, benchmarks and the
accelerator check (no environment needed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch.utils.flop_counter import FlopCounterMode

from wmbench.agents.config import AgentConfig
from wmbench.agents.module import DreamerModule
from wmbench.objectives import registry
from wmbench.runtime.device import Placement
from wmbench.types import Batch

IMAGE_SHAPE = (3, 64, 64)


def attached_module(
    config: AgentConfig,
    action_dim: int,
    objective: str = "reconstruction",
    placement: Placement | None = None,
    backend: str = "inductor",
) -> DreamerModule:
    """A ``DreamerModule`` on ``placement``'s device (CPU, fp32, eager by default), compiled as
    ``placement`` says, wired to a bare Trainer so that ``training_step`` runs outside ``fit``
    (call it inside ``placement.autocast()`` for the precision a run would train with).

    Args:
        config: the agent.
        action_dim: A.
        objective: a registered objective (its default options).
        placement: see ``wmbench.runtime.device.Placement``.
        backend: ``torch.compile``'s backend where ``placement`` compiles
            (``Placement.compile_module``).
    """
    placement = placement or Placement("cpu", "32-true")
    cls = registry.get(objective)
    module = DreamerModule(config, IMAGE_SHAPE, action_dim, cls, cls.Config()).to(placement.device)
    placement.compile_module(module, backend)
    trainer = L.Trainer(
        accelerator=placement.accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.strategy.connect(module)
    module.trainer = trainer
    trainer.strategy.optimizers = module.configure_optimizers()
    return module


def count_flops(fn: Callable[[], Any]) -> int:
    """Matmul/convolution FLOPs of one call of ``fn`` (forward and any backward it runs)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def random_batch(batch: int = 2, steps: int = 3, action_dim: int = 2, seed: int = 0) -> Batch:
    """A replay-like ``Batch`` with the dtypes of ``wmbench.data.replay.Replay.sample``.

    ``image`` uint8 ``[B, T, 3, 64, 64]`` uniform in [0, 255]; ``prev_action`` float32 ``[B, T, A]``
    uniform in [-1, 1]; ``reward`` float32 ``[B, T]`` standard normal; ``is_first`` true at
    ``t = 0`` only; ``is_terminal`` and ``is_last`` true only at the last step of the first
    sequence.
    """
    g = torch.Generator().manual_seed(seed)
    is_first = torch.zeros(batch, steps, dtype=torch.bool)
    is_first[:, 0] = True
    is_terminal = torch.zeros(batch, steps, dtype=torch.bool)
    is_terminal[0, -1] = True
    return Batch(
        image=torch.randint(0, 256, (batch, steps, *IMAGE_SHAPE), dtype=torch.uint8, generator=g),
        prev_action=torch.rand(batch, steps, action_dim, generator=g) * 2 - 1,
        reward=torch.randn(batch, steps, generator=g),
        is_first=is_first,
        is_terminal=is_terminal,
        is_last=is_terminal.clone(),
    )
