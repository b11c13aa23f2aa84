"""Random-shift image augmentation (Kostrikov et al., *Image Augmentation Is All You Need*, DrQ,
ICLR 2021, Sec. 3.1): pad each image by ``pad`` pixels replicating its border, then crop back to the
original size at a random offset.

Used by objectives that compare augmented views of the same observation (prototypes).
"""

from __future__ import annotations

import torch
from torch import Tensor


def random_shift(image: Tensor, pad: int, generator: torch.Generator | None = None) -> Tensor:
    """Shift every sequence of images by one random offset, the same at every time step.

    Equivalent to replicate-padding by ``pad`` and cropping a ``W × W`` window at a uniform random
    offset in ``[0, 2 * pad]²``; done by index arithmetic, so it works on uint8 pixels directly.

    Args:
        image: ``[B, T, C, W, W]`` of any dtype (uint8 observations in [0, 255]).
        pad: largest shift in pixels (DrQ: 4 for 84-pixel images); 0 returns the input.
        generator: torch random generator for the offsets; ``None`` uses the global one.

    Returns:
        ``[B, T, C, W, W]``, same dtype; ``out[b, t, c, i, j] = image[b, t, c, clamp(i + dy_b),
        clamp(j + dx_b)]`` with ``dx_b, dy_b`` uniform integers in ``[-pad, pad]`` and indices
        clamped to ``[0, W - 1]``.

    Raises:
        ValueError: ``image`` is not 5-D or ``pad`` is negative.
    """
    if image.dim() != 5 or pad < 0:
        raise ValueError(
            f"random_shift needs [B, T, C, W, W] images and pad >= 0, got {tuple(image.shape)}, "
            f"pad={pad}"
        )
    if pad == 0:
        return image
    batch, steps, channels, height, width = image.shape
    shift = torch.randint(-pad, pad + 1, (2, batch), generator=generator).to(image.device)
    rows = (torch.arange(height, device=image.device) + shift[0, :, None]).clamp(
        0, height - 1
    )  # [B, W]
    cols = (torch.arange(width, device=image.device) + shift[1, :, None]).clamp(0, width - 1)
    rows = rows[:, None, None, :, None].expand(batch, steps, channels, height, width)
    cols = cols[:, None, None, None, :].expand(batch, steps, channels, height, width)
    return image.gather(3, rows).gather(4, cols)
