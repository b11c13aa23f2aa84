"""Shape legend, time alignment, the RSSM state container and the replayed batch.

Shape legend (used in every docstring of the package):

    B  batch (sequences per batch)          T  sequence length (agent steps)
    H  imagination horizon                   N  flattened start states (B*T)
    D  deter size (GRU state h_t)            S  stoch size (Gaussian) or groups (categorical)
    K  classes per categorical group         F  feature size D + S (or D + S*K)
    E  embedding size                        A  action size
    C, W  image channels (3) and side (64)

Time alignment of a replayed row t (see ``wmbench.data.replay``)::

    row:         0          1          2          3
    image:       o_0        o_1        o_2        o_3
    prev_action  0          a_0        a_1        a_2      (a_{t-1}; zeros where is_first)
    reward       0          r_1        r_2        r_3      (r_t is caused by a_{t-1})
    is_first     True       False      False      False
    is_terminal  False      False      False      True/False
    is_last      False      False      False      True     (terminal or truncated)

Counters: ``env_frames`` counts physics steps including the action repeat (the x-axis of every
report), ``agent_steps`` counts policy decisions, ``updates`` counts gradient updates of the world
model (one per replayed batch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class RSSMState:
    """State of the recurrent state-space model at one or more time steps.

    Leading dimensions are free (``[B]``, ``[B, T]`` or ``[H, N]``); trailing ones are fixed.

    Attributes:
        deter: deterministic GRU state h_t, float32 ``[..., D]``.
        stoch: stochastic state z_t, float32 ``[..., S]`` (Gaussian) or one-hot ``[..., S, K]``
            (categorical, straight-through gradients).
        mean: Gaussian mean ``[..., S]``; ``None`` for categorical latents.
        std: Gaussian standard deviation ``[..., S]`` (> 0); ``None`` for categorical latents.
        logits: categorical logits ``[..., S, K]`` (after unimix); ``None`` for Gaussian latents.
    """

    deter: Tensor
    stoch: Tensor
    mean: Tensor | None = None
    std: Tensor | None = None
    logits: Tensor | None = None

    def map(self, fn: Callable[[Tensor], Tensor]) -> RSSMState:
        """Apply ``fn`` to every tensor field (``None`` fields stay ``None``)."""
        return replace(
            self,
            **{
                f.name: fn(getattr(self, f.name))
                for f in fields(self)
                if getattr(self, f.name) is not None
            },
        )

    def detach(self) -> RSSMState:
        """The same state with every tensor detached from the autograd graph."""
        return self.map(Tensor.detach)

    @staticmethod
    def stack(states: list[RSSMState], dim: int) -> RSSMState:
        """Stack per-step states along a new dimension ``dim`` (e.g. ``T`` states ``[B, ...]`` to
        ``[B, T, ...]``)."""
        first = states[0]
        return replace(
            first,
            **{
                f.name: torch.stack([getattr(s, f.name) for s in states], dim)
                for f in fields(first)
                if getattr(first, f.name) is not None
            },
        )


@dataclass
class Batch:
    """A replayed batch of ``B`` windows of ``T`` consecutive rows (the time alignment above).

    Tensors only: what an update learns from. Not frozen, because Lightning's device transfer
    rebuilds a batch field by field.

    Attributes:
        image: o_t, uint8 ``[B, T, 3, 64, 64]`` in [0, 255].
        prev_action: a_{t-1}, float32 ``[B, T, A]`` in [-1, 1]; zeros at episode starts.
        reward: r_t, float32 ``[B, T]``; 0 at episode starts.
        is_first: bool ``[B, T]``; true at episode starts and at ``t = 0`` of every window.
        is_terminal: bool ``[B, T]``; o_t is a true terminal state (no bootstrapping from it).
        is_last: bool ``[B, T]``; the episode's last row, terminal or truncated.
    """

    image: Tensor
    prev_action: Tensor
    reward: Tensor
    is_first: Tensor
    is_terminal: Tensor
    is_last: Tensor

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Batch:
        """The batch of ``wmbench.data.replay.Replay.sample`` output (tensors share the arrays'
        memory)."""
        return cls(**{f.name: torch.as_tensor(arrays[f.name]) for f in fields(cls)})

    def pin_memory(self) -> Batch:
        """The batch in page-locked host memory, from which a GPU copies without blocking (the
        stream reads it so when the module is on CUDA, ``wmbench.runtime.stream.StreamBase``)."""
        return Batch(**{f.name: getattr(self, f.name).pin_memory() for f in fields(self)})

    def to(self, device: torch.device | str, non_blocking: bool = True) -> Batch:
        """The batch on ``device`` (Lightning's device transfer calls it); copies from page-locked
        memory to a GPU do not block."""
        return Batch(**{
            f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
            for f in fields(self)
        })
