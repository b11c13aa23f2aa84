"""The objective plugin interface: ``Objective``, its inputs and output, and ``ModelDims``.

An objective is the part of the world-model loss that shapes the representation. The reward head,
the continue head and the KL term are core (imagination needs them under every objective); an
objective adds its own per-step losses and owns its parameters (decoder, projection heads, targets),
which train with the world-model optimizer.

Besides the batch's tensors, the inputs carry two of the world model's own modules, read-only:
``encoder`` (to encode augmented views of the images) and ``rssm`` (to roll the prior forward
open-loop with ``img_step``, or to read ``feat`` of the prior). An objective may call them, and
gradients of its losses reach their parameters through those calls, but it must not register them
as its own submodules or change their parameters: they belong to the world model, which owns and
checkpoints them.

Lifecycle, as ``wmbench.agents`` drives it:

1. ``__init__(config, dims)`` builds the networks (sizes from ``ModelDims``).
2. ``after_update(encoder, rssm)`` once when the world model is built, so that targets start as
   copies of the online networks.
3. Each update: ``forward(inputs)`` (pure: it changes no state), the world-model optimizer step,
   then ``after_update(encoder, rssm)``, where state moves (EMA targets).
4. ``decode(feat)``: diagnostics ask it for images; ``None`` (the default) means the objective has
   no decoder.

A plugin imports from ``wmbench.objectives`` only (see its ``__init__``); the README's "Writing an
objective" walks through ``examples/objective-plugin``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor, nn

from wmbench.nn.nets import ConvEncoder
from wmbench.nn.rssm import RSSM
from wmbench.types import RSSMState


@dataclass(frozen=True)
class ModelDims:
    """Sizes and layer style of the world model, which an objective's networks follow.

    Attributes:
        image_shape: ``(C, W, W)`` of observations, ``(3, 64, 64)``.
        embed: E, encoder output size.
        deter: D.
        stoch: flattened stoch size (S or S*K).
        feat: F = D + stoch.
        action: A.
        cnn_depth: channel multiplier of the world model's conv nets (for a matching decoder or EMA
            target encoder).
        cnn_act: activation of the world model's convolutions (``elu``, ``relu`` or ``silu``).
        act: activation of the world model's dense layers (same choices).
        norm: ``layer`` or ``none``: the world model's normalisation. An objective builds its
            networks in the same style (``cnn_act``/``act``/``norm``), and an EMA target encoder
            must match the encoder exactly (``build_encoder``).
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

    def build_encoder(self) -> nn.Module:
        """A freshly initialised encoder of the world model's architecture (Dreamer's conv
        encoder in its style): uint8 ``[..., C, 64, 64]`` in [0, 255] to float32 ``[..., E]``.

        Its parameters have the same names and shapes as the world model's encoder, so
        ``EMATarget`` can follow that encoder with it.
        """
        return ConvEncoder(self.cnn_depth, self.image_shape[0], self.cnn_act, self.norm)


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
            (prototypes); do not change it.
        rssm: the world model's RSSM; objectives roll it forward with ``img_step`` from ``post``
            (self_predictive) or read ``feat(prior)`` (tpc); do not change it.
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
        losses: unscaled per-step losses, each float32 ``[B, T]`` (nats or the objective's unit),
            by loss name; the names must be the keys of the objective's ``loss_scales``. The world
            model averages each over ``B, T``, multiplies it by its scale
            (``agent.world_model.objective_scales.<loss name>``, else ``loss_scales[<loss
            name>]``) and adds it to the world-model loss; it is logged, scaled, as
            ``train/loss/objective/<loss name>``.
        metrics: detached finite float scalars (0-dim tensors), by name, logged as
            ``train/objective/<name>``.
    """

    losses: dict[str, Tensor]
    metrics: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class NoConfig:
    """Configuration of an objective that has no options."""


class Objective(nn.Module):
    """Base class of every representation objective.

    Subclasses set the class attributes ``name`` (the registry key), ``Config`` (a frozen
    dataclass with a default for every field and a docstring per field) and ``loss_scales``, and
    implement ``forward``; ``after_update`` and ``decode`` are optional.

    Args:
        config: an instance of ``Config``.
        dims: network sizes and layer style, see ``ModelDims``.

    Attributes:
        loss_scales: the names of the losses ``forward`` returns, each with its default weight
            (float >= 0) in the world-model loss; ``agent.world_model.objective_scales``
            overrides them per run, and a key there that is not one of these names is an error
            before any compute.
    """

    name: ClassVar[str]
    Config: ClassVar[type] = NoConfig
    loss_scales: ClassVar[dict[str, float]] = {}

    def __init__(self, config: Any, dims: ModelDims) -> None:
        super().__init__()
        self.config = config
        self.dims = dims

    def forward(self, inp: ObjectiveInputs) -> ObjectiveOutput:  # pragma: no cover - interface
        """The objective's losses and metrics on one batch.

        Pure: it must not change any parameter or buffer (state moves in ``after_update``), so
        that calling it again — for a diagnostic or a gradient measurement — changes nothing.

        Args:
            inp: the batch as the world model sees it (see ``ObjectiveInputs``).

        Returns:
            Per-step losses ``[B, T]`` named as ``loss_scales``' keys, and detached scalar metrics.
        """
        raise NotImplementedError

    def after_update(self, encoder: nn.Module, rssm: RSSM) -> None:
        """Move the objective's own state after the world model's parameters changed.

        Called once when the world model is built and after every optimizer step of the world
        model (the objective's parameters included), under ``torch.no_grad()``. EMA targets move
        here (``EMATarget.update``). The default does nothing.

        Args:
            encoder: the world model's encoder (read it, do not change it).
            rssm: the world model's RSSM (read it, do not change it).
        """

    def decode(self, feat: Tensor) -> Tensor | None:
        """Images predicted from model states, for diagnostics, or ``None`` without a decoder.

        Args:
            feat: float32 ``[..., F]``.

        Returns:
            float32 ``[..., 3, 64, 64]`` in the encoder's [-0.5, 0.5] pixel scale (pixel / 255 −
            0.5), or ``None`` (the default: the objective has no decoder).
        """
        return None
