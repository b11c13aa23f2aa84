"""Building blocks: Dreamer's convolutional encoder/decoder and MLP heads.

Architecture from Hafner et al., *Dream to Control* (ICLR 2020), Appendix A: four convolutions with
kernel 4, stride 2 and depths 1, 2, 4, 8 × ``depth`` (ELU), and a transposed-convolution decoder
with kernels 5, 5, 6, 6. Only 64×64 images fit these strides exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wmbench.agents.config import SUPPORTED_IMAGE_SIZE


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


class ConvEncoder(nn.Module):
    """Image encoder e_t = enc(o_t).

    Args:
        depth: channel multiplier (Dreamer: 32).
        channels: image channels (3).

    Input uint8 ``[..., 3, 64, 64]``; output float32 ``[..., E]`` with ``E = 32 * depth``.
    """

    def __init__(self, depth: int = 32, channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = channels
        for mult in (1, 2, 4, 8):
            layers += [
                nn.Conv2d(in_ch, mult * depth, kernel_size=4, stride=2),
                nn.ELU(inplace=True),
            ]
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
        y = x @ self.weight.flatten(1)
        return y.view(-1, self.out_channels, *self.kernel_size) + self.bias[:, None, None]


class ConvDecoder(nn.Module):
    """Image decoder: mean of a unit-variance Gaussian over pixels, p(o_t | s_t).

    Input ``[..., F]``; output float32 mean image ``[..., 3, 64, 64]`` in the encoder's [-0.5, 0.5]
    scale.
    """

    def __init__(self, feat_dim: int, depth: int = 32, channels: int = 3) -> None:
        super().__init__()
        self.fc = nn.Linear(feat_dim, 32 * depth)
        self.net = nn.Sequential(
            VectorConvTranspose(32 * depth, 4 * depth, kernel_size=5, stride=2),
            nn.ELU(inplace=True),
            nn.ConvTranspose2d(4 * depth, 2 * depth, kernel_size=5, stride=2),
            nn.ELU(inplace=True),
            nn.ConvTranspose2d(2 * depth, depth, kernel_size=6, stride=2),
            nn.ELU(inplace=True),
            nn.ConvTranspose2d(depth, channels, kernel_size=6, stride=2),
        )

    def forward(self, feat: Tensor) -> Tensor:
        x, lead = flatten_time(feat, 1)
        x = self.net[0](self.fc(x)).contiguous(memory_format=torch.channels_last)
        x = self.net[1:](x)
        return x.reshape(*lead, *x.shape[1:])


class MLP(nn.Module):
    """``layers`` hidden ELU layers of ``units`` each, then a linear output of ``out_dim``.

    Input ``[..., in_dim]``; output ``[..., out_dim]``.
    """

    def __init__(self, in_dim: int, out_dim: int, units: int, layers: int) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        for _ in range(layers):
            mods += [nn.Linear(in_dim, units), nn.ELU()]
            in_dim = units
        mods.append(nn.Linear(in_dim, out_dim))
        self.net = nn.Sequential(*mods)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ScalarHead(nn.Module):
    """MLP that outputs one scalar per input: ``[..., in_dim]`` to ``[...]``.

    Used for the reward head (mean of a unit-variance Gaussian, nats via ``gaussian_nll``), the
    continue head (Bernoulli logits) and the critic.
    """

    def __init__(self, in_dim: int, units: int, layers: int) -> None:
        super().__init__()
        self.mlp = MLP(in_dim, 1, units, layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x).squeeze(-1)


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
