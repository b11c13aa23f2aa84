"""Slowly moving target networks (exponential moving averages of online networks).

BYOL (Grill et al., NeurIPS 2020, Sec. 3.1): after each update the target parameters become
ξ ← τ ξ + (1 − τ) θ. Here ``fraction`` is 1 − τ (the share of the online parameters taken per
update), as in Dreamer's slow critic. Targets receive no gradient.
"""

from __future__ import annotations

import torch
from torch import nn


class EMATarget(nn.Module):
    """Target copies of online modules, moved toward them by ``fraction`` per ``update``.

    The first ``update`` copies the online parameters (fraction 1), so targets start equal to their
    online networks even when the online network (e.g. the world model's encoder) is not owned by
    the objective. The update count is a buffer, so it is checkpointed with the objective.

    Args:
        nets: target modules by name, with the same architecture as the online modules that will be
            passed to ``update`` under the same names; their parameters stop requiring gradients.
    """

    def __init__(self, nets: dict[str, nn.Module]) -> None:
        super().__init__()
        self.nets = nn.ModuleDict(nets).requires_grad_(False)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def __getitem__(self, name: str) -> nn.Module:
        return self.nets[name]

    @torch.no_grad()
    def update(self, online: dict[str, nn.Module], fraction: float) -> None:
        """``target ← target + f · (online − target)`` with ``f = fraction``, or ``f = 1`` at the
        first call.

        Args:
            online: the online modules by name (the same names as at construction).
            fraction: 1 − τ in (0, 1].

        Raises:
            ValueError: the names or parameter shapes of ``online`` differ from the targets'.
        """
        if set(online) != set(self.nets):
            raise ValueError(
                f"EMA target has modules {sorted(self.nets)}, update got {sorted(online)}"
            )
        mix = 1.0 if int(self.updates) == 0 else fraction
        for name, net in self.nets.items():
            target = dict(net.named_parameters())
            source = dict(online[name].named_parameters())
            shapes = {k: tuple(v.shape) for k, v in target.items()}
            if shapes != {k: tuple(v.shape) for k, v in source.items()}:
                raise ValueError(
                    f"EMA target {name!r} does not match its online module (parameter names or "
                    "shapes differ); build the target with the online module's architecture"
                )
            for key, param in target.items():
                param.lerp_(source[key].detach(), mix)
        self.updates += 1
