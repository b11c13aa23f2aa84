"""Held-out episodes with the true physics state, and the world model's features of them.

Rows follow the replay's time alignment (``wmbench.types``): row 0 is the reset, row t holds o_t,
a_{t-1}, r_t and the physics state after the step that produced o_t (``info["qpos"]``,
``info["qvel"]``, given by dm_control tasks and ``toy:reach``), with angles that wind (unlimited
hinges) as their cosine and sine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from wmbench.agents.world_model import WorldModel
from wmbench.envs import DMCEnv
from wmbench.runtime.env_pool import EnvSteps
from wmbench.types import RSSMState


@dataclass(frozen=True)
class Episode:
    """One recorded episode of ``T`` rows (the reset and ``T - 1`` steps).

    Attributes:
        image: uint8 ``[T, 3, 64, 64]`` in [0, 255].
        prev_action: a_{t-1}, float32 ``[T, A]``; zeros at row 0.
        reward: r_t, float32 ``[T]``; 0 at row 0.
        state: ``physics_state`` after the step, float64 ``[T, Z]`` (physics units; angles of
            unlimited hinges as cosine and sine).
    """

    image: np.ndarray
    prev_action: np.ndarray
    reward: np.ndarray
    state: np.ndarray

    def __len__(self) -> int:
        return len(self.image)


def circular_qpos(env: gym.Env) -> tuple[int, ...]:
    """``qpos`` indices that are angles of unlimited hinges (``DMCEnv.unlimited_hinges``; none for
    ``toy:reach``)."""
    base = env.unwrapped
    return tuple(base.unlimited_hinges()) if isinstance(base, DMCEnv) else ()


def physics_state(info: dict, circular: tuple[int, ...] = ()) -> np.ndarray:
    """The physics state from an env's ``info``: ``qpos`` then ``qvel``, float64 ``[Z]``.

    Each ``qpos`` index in ``circular`` (an angle that winds, see ``circular_qpos``) becomes its
    cosine and sine, so the state is a function of what the pixels show; ``state_names`` names the
    entries.

    Raises:
        ValueError: ``info`` has no ``qpos``/``qvel`` (the task gives no physics state to probe).
    """
    if "qpos" not in info or "qvel" not in info:
        raise ValueError(
            f"the env's info has no qpos/qvel (keys: {sorted(info)}); diagnostics need a dmc: or "
            "toy: task"
        )
    qpos = np.asarray(info["qpos"], np.float64).ravel()
    parts = [[np.cos(q), np.sin(q)] if i in circular else [q] for i, q in enumerate(qpos)]
    return np.concatenate(
        [
            np.asarray([v for part in parts for v in part]),
            np.asarray(info["qvel"], np.float64).ravel(),
        ]
    )


def state_names(info: dict, circular: tuple[int, ...] = ()) -> list[str]:
    """Names of the ``physics_state`` entries: ``qpos0``, ``qpos1.cos``, ``qpos1.sin``, …,
    ``qvel0``, …."""
    qpos = [
        [f"qpos{i}.cos", f"qpos{i}.sin"] if i in circular else [f"qpos{i}"]
        for i in range(np.size(info["qpos"]))
    ]
    return [name for names in qpos for name in names] + [
        f"qvel{i}" for i in range(np.size(info["qvel"]))
    ]


def collect(
    env: gym.Env,
    act: Callable[[np.ndarray, bool], np.ndarray],
    episodes: int,
    max_steps: int,
    seed: int,
) -> list[Episode]:
    """Record ``episodes`` episodes of at most ``max_steps`` steps each (fewer if the env ends
    them).

    Args:
        env: pixel env whose ``info`` holds ``qpos`` and ``qvel``.
        act: ``(image, is_first) -> action`` float32 ``[A]``, e.g.
            ``wmbench.runtime.stream.AgentPolicy``.
        episodes: number of episodes (≥ 1).
        max_steps: agent steps per episode (≥ 1); an episode has at most ``max_steps + 1`` rows.
        seed: reset seed of the first episode (later ones use ``seed + i``).
    """
    out, circular, steps = [], circular_qpos(env), EnvSteps(env)
    for i in range(episodes):
        rows, states = [steps.reset(seed=seed + i)], [physics_state(steps.info, circular)]
        while steps.in_episode and steps.steps < max_steps:
            rows.append(steps.step(act(steps.obs, steps.steps == 0)))
            states.append(physics_state(steps.info, circular))
        image, prev_action, reward = (
            np.stack([getattr(r, name) for r in rows])
            for name in ("image", "prev_action", "reward")
        )
        out.append(Episode(image, prev_action, reward.astype(np.float32), np.stack(states)))
    return out


def split(episodes: list[Episode], test_episodes: int) -> tuple[list[Episode], list[Episode]]:
    """Train/test split by episode: the last ``test_episodes`` episodes are held out.

    Raises:
        ValueError: not at least one episode on each side.
    """
    if not 1 <= test_episodes < len(episodes):
        raise ValueError(
            f"need at least one training and one test episode, got {len(episodes)} episodes with "
            f"{test_episodes} held out: raise --episodes or lower --test-episodes"
        )
    return episodes[:-test_episodes], episodes[-test_episodes:]


@torch.no_grad()
def posterior(world_model: WorldModel, episode: Episode) -> RSSMState:
    """Posterior states of one episode, observed from its reset: leading shape ``[T]`` (no
    gradient)."""
    image = torch.as_tensor(episode.image)[None]
    is_first = torch.zeros(1, len(episode), dtype=torch.bool)
    is_first[:, 0] = True
    post, _ = world_model.rssm.observe(
        world_model.encoder(image), torch.as_tensor(episode.prev_action)[None], is_first
    )
    return post.map(lambda x: x[0])


def features(world_model: WorldModel, episodes: list[Episode]) -> tuple[Tensor, Tensor]:
    """Posterior ``feat`` ``[N, F]`` and ``deter`` ``[N, D]`` of all rows of ``episodes``
    (concatenated, float32)."""
    posts = [posterior(world_model, e) for e in episodes]
    return torch.cat([world_model.rssm.feat(p) for p in posts]), torch.cat([p.deter for p in posts])
