"""The objective plugin interface.

An objective is the part of the world-model loss that shapes the representation. The reward head,
the continue head and the KL term are core (imagination needs them under every objective); an
objective adds its own per-step losses and owns its parameters (decoder, projection heads, targets),
which train with the world-model optimizer.

Besides the batch's tensors, the inputs carry two of the world model's own modules, read-only:
``encoder`` (to encode augmented views of the images, and as the source of an EMA target encoder)
and ``rssm`` (to roll the prior forward open-loop with ``img_step``, or to read ``feat`` of the
prior). An objective may call them, and gradients of its losses reach their parameters through
those calls, but it must not register them as its own submodules or change their parameters: they
belong to the world model, which owns and checkpoints them.

Writing a plugin::

    @dataclass(frozen=True)
    class MyConfig:
        temperature: float = 0.1   # docstring per field

    class MyObjective(Objective):
        name = "mine"
        Config = MyConfig

        def __init__(self, config: MyConfig, dims: ModelDims) -> None:
            super().__init__(config, dims)
            self.head = nn.Linear(dims.feat, dims.embed)

        def forward(self, inp: ObjectiveInputs) -> ObjectiveOutput:
            loss = ...                      # [B, T], unscaled
            return ObjectiveOutput(losses={"mine": loss}, metrics={})

and register it with an entry point in the group ``wmbench.objectives`` of its package::

    [project.entry-points."wmbench.objectives"]
    mine = "my_package.my_module:MyObjective"
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor, nn

from wmbench.nn.rssm import RSSM
from wmbench.types import RSSMState


@dataclass(frozen=True)
class ModelDims:
    """Sizes an objective may need to build its networks.

    Attributes:
        image_shape: ``(C, W, W)`` of observations, e.g. ``(3, 64, 64)``.
        embed: E, encoder output size.
        deter: D.
        stoch: flattened stoch size (S or S*K).
        feat: F = D + stoch.
        action: A.
        cnn_depth: channel multiplier of the world model's conv nets (for a matching decoder or EMA
            target encoder).
        cnn_act: activation of the world model's convolutions (``wmbench.nn.nets.ACTIVATIONS``).
        act: activation of the world model's dense layers.
        norm: ``layer`` or ``none``: the world model's normalisation. An objective builds its
            networks in the same style (``cnn_act``/``act``/``norm``), and an EMA target encoder
            must match the encoder exactly.
    """

    image_shape: tuple[int, int, int]
    embed: int
    deter: int
    stoch: int
    feat: int
    action: int
    cnn_depth: int
    cnn_act: str = "silu"
    act: str = "silu"
    norm: str = "layer"


@dataclass(frozen=True)
class ObjectiveInputs:
    """Everything an objective sees of one replayed batch (batch-major).

    Attributes:
        image: uint8 ``[B, T, 3, 64, 64]`` in [0, 255] (raw observations o_t).
        embed: encoder output e_t, float32 ``[B, T, E]`` (differentiable into the encoder).
        post: posterior q(z_t | h_t, e_t); deter ``[B, T, D]``, stoch ``[B, T, S(, K)]``.
        prior: prior p(z_t | h_t), same shapes.
        feat: concat(deter, flat stoch) of ``post``, float32 ``[B, T, F]``.
        prev_action: a_{t-1}, float32 ``[B, T, A]``; zeros where ``is_first``.
        reward: r_t, float32 ``[B, T]``.
        is_first: bool ``[B, T]``.
        encoder: the world model's image encoder, uint8 ``[..., 3, 64, 64]`` to float32
            ``[..., E]``; the module that produced ``embed``. Objectives call it on augmented views
            (prototypes) and copy its parameters into EMA targets (prototypes, self_predictive).
        rssm: the world model's RSSM; objectives roll it forward with ``img_step`` from ``post``
            (self_predictive) or read ``feat(prior)`` (tpc).
    """

    image: Tensor
    embed: Tensor
    post: RSSMState
    prior: RSSMState
    feat: Tensor
    prev_action: Tensor
    reward: Tensor
    is_first: Tensor
    encoder: nn.Module
    rssm: RSSM


@dataclass
class ObjectiveOutput:
    """What an objective returns.

    Attributes:
        losses: unscaled per-step losses, each float32 ``[B, T]`` (nats or the objective's unit);
            the Lightning module averages each over ``B, T``, multiplies by its loss scale (default
            1) and adds it to the world-model loss.
        metrics: detached scalars, logged as ``objective/<name>``.
    """

    losses: dict[str, Tensor]
    metrics: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class NoConfig:
    """Configuration of an objective that has no options."""


class Objective(nn.Module):
    """Base class of every representation objective.

    Subclasses set the class attributes ``name`` (registry name) and ``Config`` (a frozen dataclass
    with defaults and a docstring per field), may set ``loss_scales``, and implement ``forward``.

    Args:
        config: an instance of ``Config``.
        dims: network sizes, see ``ModelDims``.

    Attributes:
        loss_scales: default weight of each of its losses in the world-model loss (loss name to
            scale; a loss not listed weighs 1). ``agent.world_model.objective_scales`` overrides
            them per run. The built-in objectives set them so that at initialisation each puts a
            gradient of the same norm on the shared encoder and RSSM as the reconstruction
            objective does (``reports/objective-scales.md``).
    """

    name: ClassVar[str]
    Config: ClassVar[type] = NoConfig
    loss_scales: ClassVar[dict[str, float]] = {}

    def __init__(self, config: Any, dims: ModelDims) -> None:
        super().__init__()
        self.config = config
        self.dims = dims

    def forward(self, inp: ObjectiveInputs) -> ObjectiveOutput:  # pragma: no cover - interface
        raise NotImplementedError


def check_output(name: str, out: ObjectiveOutput, batch_shape: tuple[int, int]) -> None:
    """Validate an objective's output; raises ``TypeError``/``ValueError`` naming the objective."""
    if not isinstance(out, ObjectiveOutput) or not isinstance(out.losses, Mapping):
        raise TypeError(f"objective {name!r} must return ObjectiveOutput, got {type(out).__name__}")
    for key, loss in out.losses.items():
        if tuple(loss.shape) != batch_shape:
            raise ValueError(
                f"objective {name!r} loss {key!r} has shape {tuple(loss.shape)}, expected "
                f"{batch_shape} [B, T]"
            )
