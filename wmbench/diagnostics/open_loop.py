"""Open-loop prediction: observe k context frames, imagine n steps with the recorded actions.

Each held-out episode is cut into non-overlapping windows of ``k + n`` rows. In a window the world
model filters rows ``0 … k−1`` from a reset state (posterior), then rolls its prior forward with
``img_step`` over rows ``k … k+n−1`` using the recorded actions a_{t−1}; horizon step ``h = 1 … n``
is row ``k + h − 1``. At every step the prediction is compared with the truth:

- ``reward``: squared error of the reward head's mean against r_t;
- ``state``: squared error of the state probe (fitted on posterior features) against the true state,
  in standardised units, averaged over state dimensions;
- ``image``: per-pixel squared error of the probe decoder against o_t in [-0.5, 0.5] units;
- ``decoder_image``: the same through the objective's own decoder, for objectives whose ``decode``
  hook returns images (``reconstruction``).

Each is averaged over windows, giving arrays of shape ``[n]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from wmbench.agents.world_model import WorldModel  # noqa: E402
from wmbench.diagnostics.episodes import Episode  # noqa: E402
from wmbench.diagnostics.probe import RidgeProbe  # noqa: E402
from wmbench.nn.nets import ConvDecoder, image_to_float  # noqa: E402


@dataclass(frozen=True)
class HorizonErrors:
    """Mean prediction errors per horizon step ``h = 1 … n`` (index ``h − 1``), float64 ``[n]``
    each.

    Attributes:
        reward: squared reward error (reward units²).
        state: squared state-probe error (standardised units², mean over state dimensions).
        image: per-pixel squared error of the probe decoder ([-0.5, 0.5] units², i.e. [0, 1]
            units²).
        decoder_image: the same for the objective's own decoder; ``None`` without one.
        windows: number of windows averaged.
    """

    reward: np.ndarray
    state: np.ndarray
    image: np.ndarray
    decoder_image: np.ndarray | None
    windows: int


def windows(episodes: list[Episode], context: int, horizon: int) -> dict[str, Tensor]:
    """Non-overlapping windows of ``k + n`` rows from each episode, stacked.

    Returns:
        ``image`` uint8 ``[W, k+n, 3, 64, 64]``, ``prev_action`` float32 ``[W, k+n, A]``, ``reward``
        float32 ``[W, k+n]``, ``state`` float64 ``[W, k+n, Z]``.

    Raises:
        ValueError: ``context`` or ``horizon`` < 1, or no episode has ``k + n`` rows (names the
            fix).
    """
    if context < 1 or horizon < 1:
        raise ValueError(f"open-loop context and horizon must be >= 1, got {context} and {horizon}")
    size = context + horizon
    cut = {key: [] for key in ("image", "prev_action", "reward", "state")}
    for episode in episodes:
        for start in range(0, len(episode) - size + 1, size):
            for key in cut:
                cut[key].append(getattr(episode, key)[start : start + size])
    if not cut["image"]:
        longest = max((len(e) for e in episodes), default=0)
        raise ValueError(
            f"no held-out episode has context + horizon = {size} rows (longest: {longest}); lower "
            "--context/--horizon or raise --max-steps"
        )
    return {key: torch.as_tensor(np.stack(value)) for key, value in cut.items()}


@torch.no_grad()
def rollout(
    world_model: WorldModel, image: Tensor, prev_action: Tensor, context: int
) -> tuple[Tensor, Tensor]:
    """Filter the first ``k`` rows, then imagine the rest with the recorded actions.

    Args:
        world_model: the world model.
        image: uint8 ``[W, k+n, 3, 64, 64]``.
        prev_action: a_{t−1}, float32 ``[W, k+n, A]``.
        context: k ≥ 1.

    Returns:
        ``(context_feat, predicted_feat)``: posterior features ``[W, k, F]`` and imagined features
        ``[W, n, F]``.
    """
    rssm = world_model.rssm
    is_first = torch.zeros(image.shape[:2], dtype=torch.bool)[:, :context]
    is_first[:, 0] = True
    post, _ = rssm.observe(
        world_model.encoder(image[:, :context]), prev_action[:, :context], is_first
    )
    state = post.map(lambda x: x[:, -1])
    predicted = []
    for t in range(context, image.shape[1]):
        state = rssm.img_step(state, prev_action[:, t])
        predicted.append(rssm.feat(state))
    return rssm.feat(post), torch.stack(predicted, 1)


def to_uint8(image: Tensor) -> Tensor:
    """Decoder output in [-0.5, 0.5] (any shape) to uint8 pixels in [0, 255]."""
    return ((image + 0.5) * 255.0).round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def evaluate(
    world_model: WorldModel,
    episodes: list[Episode],
    context: int,
    horizon: int,
    probe: RidgeProbe,
    probe_decoder: ConvDecoder,
) -> tuple[HorizonErrors, Tensor, list[str]]:
    """Open-loop errors per horizon step on held-out episodes, and an image strip of the first
    window.

    Args:
        world_model: the trained world model.
        episodes: held-out episodes.
        context: k observed rows per window.
        horizon: n imagined rows per window.
        probe: state probe fitted on posterior features ``feat`` of training episodes.
        probe_decoder: see ``wmbench.diagnostics.probe_decoder``.

    Returns:
        ``(errors, strip, labels)``: see ``HorizonErrors`` (arrays ``[n]``); strip uint8
        ``[R, k+n, 3, 64, 64]`` of the first window — the truth, then each decoder's output
        (posterior features for the k context columns, imagined ones after); one label per strip
        row.

    Raises:
        ValueError: see ``windows``.
    """
    cut = windows(episodes, context, horizon)
    context_feat, predicted = rollout(world_model, cut["image"], cut["prev_action"], context)
    truth = image_to_float(cut["image"][:, context:])
    reward = ((world_model.reward(predicted).mean - cut["reward"][:, context:]) ** 2).mean(0)
    state = (
        (probe.predict(predicted.numpy()) - probe.standardise(cut["state"][:, context:].numpy()))
        ** 2
    ).mean((0, 2))
    decoders = {"probe decoder": probe_decoder}
    if world_model.objective.decode(predicted[:1, :1]) is not None:
        decoders["objective's decoder"] = world_model.objective.decode
    image_errors, strip = {}, [cut["image"][0]]
    for name, decoder in decoders.items():
        image_errors[name] = ((decoder(predicted) - truth) ** 2).mean((0, 2, 3, 4)).double().numpy()
        strip.append(to_uint8(decoder(torch.cat([context_feat[0], predicted[0]]))))
    errors = HorizonErrors(
        reward=reward.double().numpy(),
        state=np.asarray(state, np.float64),
        image=image_errors["probe decoder"],
        decoder_image=image_errors.get("objective's decoder"),
        windows=len(predicted),
    )
    return errors, torch.stack(strip), ["truth", *decoders]


def save_strip(
    strip: Tensor,
    labels: list[str],
    context: int,
    path: str | Path,
    title: str = "",
) -> None:
    """Write an image strip as a PNG: one row per label, every column (no step left out), the
    context frames left of a red line; each frame is drawn 0.9 inch wide (about 90 pixels).

    Args:
        strip: uint8 ``[R, C, 3, 64, 64]``.
        labels: R row labels.
        context: columns before the first imagined one.
        path: output file.
        title: figure title.
    """
    rows, columns, _, side, _ = strip.shape
    grid = strip.permute(0, 3, 1, 4, 2).reshape(rows * side, columns * side, 3)
    fig, ax = plt.subplots(figsize=(0.9 * columns + 1.4, 0.9 * rows + 0.9))
    ax.imshow(grid.numpy(), interpolation="nearest")
    ax.axvline(side * context - 0.5, color="red", lw=2)
    ax.set_yticks([side * (i + 0.5) for i in range(rows)], labels, fontsize=9)
    ax.set_xticks([side * (i + 0.5) for i in range(columns)],
                  [str(c - context + 1) for c in range(columns)], fontsize=8)
    ax.set_xlabel("step (≤ 0: observed context; > 0: imagined open loop)", fontsize=9)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
