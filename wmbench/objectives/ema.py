"""Slowly moving target networks (exponential moving averages of online networks).

BYOL (Grill et al., NeurIPS 2020, Sec. 3.1): after each update the target parameters become
ξ ← τ ξ + (1 − τ) θ. Here ``fraction`` is 1 − τ (the share of the online parameters taken per
update), as in Dreamer's slow critic. Targets receive no gradient.
"""

from __future__ import annotations

import torch
from torch import nn

from wmbench.objectives.base import ModelDims


class EMATarget(nn.Module):
    """Target copies of online modules, moved toward them by ``fraction`` per ``update``.

    Call ``update`` from the objective's ``after_update`` hook, never from ``forward``. The first
    ``update`` copies the online parameters (fraction 1): the world model calls ``after_update``
    once when it is built, so targets start equal to their online networks, even the world model's
    encoder, which the objective does not own. The update count is a buffer, so it is checkpointed
    with the objective. Use the targets under ``torch.no_grad()``.

    Args:
        fraction: 1 − τ in (0, 1], the share of the online parameters taken per update.
        **nets: target modules by name, with the same architecture as the online modules that
            ``update`` will receive under the same names; their parameters stop requiring
            gradients.

    Raises:
        ValueError: ``fraction`` is outside (0, 1] or no module is given.
    """

    def __init__(self, fraction: float, **nets: nn.Module) -> None:
        super().__init__()
        if not 0 < fraction <= 1 or not nets:
            raise ValueError(
                f"EMATarget needs a fraction in (0, 1] and at least one module, got {fraction}, "
                f"{sorted(nets)}"
            )
        self.fraction = fraction
        self.nets = nn.ModuleDict(nets).requires_grad_(False)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @classmethod
    def with_encoder(cls, dims: ModelDims, fraction: float, **nets: nn.Module) -> EMATarget:
        """A target of the world model's encoder, named ``encoder`` (``dims.build_encoder()``:
        the same architecture and layer style), and of ``nets``.

        Example: ``EMATarget.with_encoder(dims, 0.05, proj=nn.Linear(dims.embed, 32))``, then in
        ``after_update(encoder, rssm)``: ``self.target.update(encoder=encoder,
        proj=self.proj)``; in ``forward``: ``self.target["encoder"](image)`` (uint8 ``[B, T, 3,
        64, 64]`` to ``[B, T, E]``) under ``torch.no_grad()``.
        """
        return cls(fraction, encoder=dims.build_encoder(), **nets)

    def __getitem__(self, name: str) -> nn.Module:
        return self.nets[name]

    @torch.no_grad()
    def update(self, **online: nn.Module) -> None:
        """``target ← target + f · (online − target)`` with ``f = fraction``, or ``f = 1`` at the
        first call.

        Args:
            **online: the online modules by name (the same names as at construction).

        Raises:
            ValueError: the names or parameter shapes of ``online`` differ from the targets'.
        """
        if set(online) != set(self.nets):
            raise ValueError(
                f"EMA target has modules {sorted(self.nets)}, update got {sorted(online)}"
            )
        mix = 1.0 if int(self.updates) == 0 else self.fraction
        for name, net in self.nets.items():
            target = dict(net.named_parameters())
            source = dict(online[name].named_parameters())
            shapes = {k: tuple(v.shape) for k, v in target.items()}
            if shapes != {k: tuple(v.shape) for k, v in source.items()}:
                raise ValueError(
                    f"EMA target {name!r} does not match its online module (parameter names or "
                    "shapes differ); build the target with the online module's architecture "
                    "(for the world model's encoder: EMATarget.with_encoder)"
                )
            for key, param in target.items():
                param.lerp_(source[key].detach(), mix)
        self.updates += 1
