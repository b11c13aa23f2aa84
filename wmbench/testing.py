"""Synthetic replay batches for tests, benchmarks, the objective check and the accelerator check
(no environment needed). The learner outside ``Trainer.fit`` is ``wmbench.runtime.harness``."""

from __future__ import annotations

import torch

from wmbench.types import Batch

IMAGE_SHAPE = (3, 64, 64)


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
