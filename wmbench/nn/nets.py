"""Building blocks: Dreamer's convolutional encoder/decoder and MLP heads.

Architecture from Hafner et al., *Dream to Control* (ICLR 2020), Appendix A: four convolutions with
kernel 4, stride 2 and depths 1, 2, 4, 8 × ``depth``, and a transposed-convolution decoder with
kernels 5, 5, 6, 6. Only 64×64 images fit these strides exactly.

Every block takes an activation (``act``: ``elu``, ``relu`` or ``silu``) and a normalisation
(``norm``: ``none``, or ``layer`` for LayerNorm before each hidden activation, over the features of
dense layers and over the channels of feature maps, as in DreamerV3, Hafner et al. 2023, Sec. 2 and
App. B). Dream to Control uses ELU in dense layers and ReLU in convolutions without normalisation;
DreamerV3 uses LayerNorm and SiLU everywhere. A layer followed by a LayerNorm has no bias (the
norm's own offset replaces it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmbench.agents.config import SUPPORTED_IMAGE_SIZE
from wmbench.nn.dists import TwoHot

ACTIVATIONS: dict[str, type[nn.Module]] = {"elu": nn.ELU, "relu": nn.ReLU, "silu": nn.SiLU}
"""Activations by config name."""

NORM_EPS = 1e-3
"""LayerNorm epsilon (DreamerV3)."""


def flatten_time(x: Tensor, keep: int) -> tuple[Tensor, tuple[int, ...]]:
    """Merge all leading dims except the last ``keep`` into one; returns the tensor and the leading
    shape."""
    lead = x.shape[: x.dim() - keep]
    return x.reshape(-1, *x.shape[x.dim() - keep :]), tuple(lead)


def image_to_float(image: Tensor) -> Tensor:
    """uint8 pixels in [0, 255] to float32 in [-0.5, 0.5] (the one place this conversion happens).

    Keeps the input's memory format (e.g. channels-last).
    """
    return image.to(torch.float32, copy=True).div_(255.0).sub_(0.5)


def dense(in_dim: int, units: int, act: str = "elu", norm: str = "none") -> list[nn.Module]:
    """One hidden dense layer as modules: Linear, LayerNorm if ``norm == "layer"``, activation.

    Input ``[..., in_dim]``; output ``[..., units]``.
    """
    if norm == "layer":
        return [
            nn.Linear(in_dim, units, bias=False),
            nn.LayerNorm(units, eps=NORM_EPS),
            ACTIVATIONS[act](),
        ]
    return [nn.Linear(in_dim, units), ACTIVATIONS[act]()]


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of each pixel of ``[N, C, H, W]`` feature maps.

    On channels-last tensors (as the conv nets here keep them) both permutes are free.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=NORM_EPS)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _conv_block(conv: nn.Module, channels: int, act: str, norm: str) -> list[nn.Module]:
    """A convolution, its channel norm if ``norm == "layer"``, and its activation."""
    return [
        conv,
        *([ChannelNorm(channels)] if norm == "layer" else []),
        ACTIVATIONS[act](inplace=True),
    ]


class ConvEncoder(nn.Module):
    """Image encoder e_t = enc(o_t).

    Args:
        depth: channel multiplier (Dreamer: 32).
        channels: image channels (3).
        act: activation after each convolution (``ACTIVATIONS``).
        norm: ``none`` or ``layer`` (channel LayerNorm before each activation).

    Input uint8 ``[..., 3, 64, 64]``; output float32 ``[..., E]`` with ``E = 32 * depth``.
    """

    def __init__(
        self, depth: int = 32, channels: int = 3, act: str = "elu", norm: str = "none"
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = channels
        for mult in (1, 2, 4, 8):
            conv = nn.Conv2d(in_ch, mult * depth, kernel_size=4, stride=2, bias=norm == "none")
            layers += _conv_block(conv, mult * depth, act, norm)
            in_ch = mult * depth
        self.net = nn.Sequential(*layers)
        self.embed_dim = 8 * depth * 2 * 2

    def forward(self, image: Tensor) -> Tensor:
        if image.shape[-2:] != (SUPPORTED_IMAGE_SIZE, SUPPORTED_IMAGE_SIZE):
            raise ValueError(
                f"ConvEncoder needs {SUPPORTED_IMAGE_SIZE}x{SUPPORTED_IMAGE_SIZE} images, got "
                f"{tuple(image.shape[-2:])}; set env.image_size={SUPPORTED_IMAGE_SIZE}"
            )
        x, lead = flatten_time(image, 3)
        # Reorder the uint8 pixels (1 byte each) rather than the floats; conversion keeps the
        # format.
        x = self.net(image_to_float(x.contiguous(memory_format=torch.channels_last)))
        return x.reshape(*lead, self.embed_dim)


class VectorConvTranspose(nn.ConvTranspose2d):
    """A transposed convolution applied to a 1×1 input, computed as one matrix product.

    On a 1×1 input, ``ConvTranspose2d(C_in, C_out, k)`` is
    ``y[n, c, i, j] = Σ_m x[n, m] W[m, c, i, j] + b[c]``: the same parameters and result as the
    module it subclasses, but oneDNN's CPU transposed convolution is about 5× slower than the matmul
    for this shape (Dreamer's first decoder layer).

    Input ``[N, C_in]``; output ``[N, C_out, k, k]``.
    """

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        y = (x @ self.weight.flatten(1)).view(-1, self.out_channels, *self.kernel_size)
        return y if self.bias is None else y + self.bias[:, None, None]


class ConvDecoder(nn.Module):
    """Image decoder: mean of a unit-variance Gaussian over pixels, p(o_t | s_t).

    Args:
        feat_dim: F.
        depth: channel multiplier (Dreamer: 32).
        channels: image channels (3).
        act, norm: as for ``ConvEncoder`` (the output layer has neither).

    Input ``[..., F]``; output float32 mean image ``[..., 3, 64, 64]`` in the encoder's [-0.5, 0.5]
    scale.
    """

    def __init__(
        self,
        feat_dim: int,
        depth: int = 32,
        channels: int = 3,
        act: str = "elu",
        norm: str = "none",
    ) -> None:
        super().__init__()
        bias = norm == "none"
        self.fc = nn.Linear(feat_dim, 32 * depth)
        self.net = nn.Sequential(
            *_conv_block(
                VectorConvTranspose(32 * depth, 4 * depth, kernel_size=5, stride=2, bias=bias),
                4 * depth,
                act,
                norm,
            ),
            *_conv_block(
                nn.ConvTranspose2d(4 * depth, 2 * depth, kernel_size=5, stride=2, bias=bias),
                2 * depth,
                act,
                norm,
            ),
            *_conv_block(
                nn.ConvTranspose2d(2 * depth, depth, kernel_size=6, stride=2, bias=bias),
                depth,
                act,
                norm,
            ),
            nn.ConvTranspose2d(depth, channels, kernel_size=6, stride=2),
        )

    def forward(self, feat: Tensor) -> Tensor:
        x, lead = flatten_time(feat, 1)
        x = self.net[0](self.fc(x)).contiguous(memory_format=torch.channels_last)
        x = self.net[1:](x)
        return x.reshape(*lead, *x.shape[1:])


class MLP(nn.Module):
    """``layers`` hidden layers of ``units`` each (see ``dense``), then a linear output.

    Args:
        in_dim, out_dim: input and output sizes.
        units, layers: hidden width and number of hidden layers.
        act, norm: see ``dense``.
        out_scale: factor on the output layer's initial weights and bias; 0 starts the output at
            exactly zero (DreamerV3's reward and critic heads), 0.01 near zero (its actor).

    Input ``[..., in_dim]``; output ``[..., out_dim]``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        units: int,
        layers: int,
        act: str = "elu",
        norm: str = "none",
        out_scale: float = 1.0,
    ) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        for _ in range(layers):
            mods += dense(in_dim, units, act, norm)
            in_dim = units
        out = nn.Linear(in_dim, out_dim)
        if out_scale != 1.0:
            with torch.no_grad():
                out.weight.mul_(out_scale)
                out.bias.mul_(out_scale)
        self.net = nn.Sequential(*mods, out)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ScalarHead(nn.Module):
    """MLP that outputs one scalar per input: ``[..., in_dim]`` to ``[...]``.

    Used for the continue head (Bernoulli logits), and for the reward head and critic of Dream to
    Control (mean of a unit-variance Gaussian, nats via ``gaussian_nll``). Arguments as ``MLP``.
    """

    def __init__(
        self, in_dim: int, units: int, layers: int, act: str = "elu", norm: str = "none"
    ) -> None:
        super().__init__()
        self.mlp = MLP(in_dim, 1, units, layers, act, norm)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x).squeeze(-1)


class TwoHotHead(nn.Module):
    """MLP whose output is a ``TwoHot`` distribution over a scalar (DreamerV3's reward head and
    critic).

    The output layer starts at zero (uniform bins: a predicted mean of exactly 0), so a new head
    neither predicts large rewards or values nor sends large gradients into its inputs
    (Hafner et al. 2023, Sec. 2, "Critic learning"). Arguments as ``MLP``; ``bins``: K (255).

    Input ``[..., in_dim]``; output a ``TwoHot`` with logits ``[..., K]``.
    """

    def __init__(
        self,
        in_dim: int,
        units: int,
        layers: int,
        act: str = "silu",
        norm: str = "layer",
        bins: int = 255,
    ) -> None:
        super().__init__()
        self.mlp = MLP(in_dim, bins, units, layers, act, norm, out_scale=0.0)

    def forward(self, x: Tensor) -> TwoHot:
        return TwoHot(self.mlp(x))


def gaussian_nll(mean: Tensor, target: Tensor, event_dims: int = 0) -> Tensor:
    """Negative log-likelihood (nats) of ``target`` under a unit-variance Gaussian at ``mean``.

    Summed over the last ``event_dims`` dimensions; returns the leading shape.
    """
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    squared = F.mse_loss(
        mean, target, reduction="none"
    )  # one fused pass over e.g. [B, T, 3, 64, 64]
    if not event_dims:
        return 0.5 * squared + half_log_2pi
    return 0.5 * squared.sum(dim=tuple(range(-event_dims, 0))) + half_log_2pi * math.prod(
        target.shape[-event_dims:]
    )
