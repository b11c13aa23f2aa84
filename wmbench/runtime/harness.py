"""A learner outside ``Trainer.fit`` and a FLOP counter, for tests, benchmarks and the accelerator
check (no environment needed; batches from ``wmbench.testing.random_batch``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
from torch.utils.flop_counter import FlopCounterMode

from wmbench.agents.config import AgentConfig
from wmbench.agents.module import DreamerModule
from wmbench.objectives import registry
from wmbench.runtime.device import Placement
from wmbench.testing import IMAGE_SHAPE


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
