"""``toy:reach``: a tiny pure-numpy pixel task for fast tests (no MuJoCo needed)."""

from typing import Any

import gymnasium
import numpy as np

STEP_SCALE = 0.15
"""Largest move per step along each axis, in arena units (the arena is [-1, 1]^2)."""
REACH_RADIUS = 0.2
"""Euclidean agent-target distance, in arena units, below which the target counts as reached."""
EPISODE_STEPS = 50
"""Steps after which an episode is truncated."""
TARGET_RANGE = 0.8
"""Targets are drawn uniformly from [-TARGET_RANGE, TARGET_RANGE]^2 so they are fully visible."""

_TARGET_RGB = (0, 255, 0)
_AGENT_RGB = (255, 0, 0)


class ToyReachEnv(gymnasium.Env):
    """Move a point agent onto a randomly placed target, seen only through pixels.

    The agent starts every episode at the origin of the arena [-1, 1]^2; the target is
    drawn uniformly from [-0.8, 0.8]^2 by the env's seeded generator. An action
    ``a`` (clipped to [-1, 1]^2) moves the agent by ``0.15 * a``, then the position
    is clipped to the arena. The reward is sparse: 1.0 on every step that ends
    with the agent strictly within 0.2 of the target, else 0.0. Episodes are
    truncated after 50 steps; with ``terminal_on_reach`` they also terminate on the
    first step that ends within reach (that step still pays reward 1.0).

    Observations are uint8 images of shape (3, S, S), channel-first: a black
    background, the target as a green square and the agent as a red square drawn
    on top. Pixel row 0 is y = +1 and column 0 is x = -1.

    ``info`` holds ``"qpos"`` (agent xy, float64, shape (2,)) and ``"qvel"`` (the
    last displacement, float64, shape (2,), zeros after reset).
    """

    def __init__(self, image_size: int = 64, seed: int = 0, terminal_on_reach: bool = False):
        """Creates the env.

        Args:
            image_size: Side S of the square observation, in pixels.
            seed: Seed of the generator placing targets; used until ``reset(seed=...)``
                re-seeds it.
            terminal_on_reach: If True, reaching the target terminates the episode.
        """
        self.image_size = image_size
        self.terminal_on_reach = terminal_on_reach
        self.observation_space = gymnasium.spaces.Box(
            0, 255, (3, image_size, image_size), np.uint8
        )
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.np_random, _ = gymnasium.utils.seeding.np_random(seed)
        self._half = max(1, round(0.05 * image_size))
        self._agent = np.zeros(2)
        self._target = np.zeros(2)
        self._velocity = np.zeros(2)
        self._steps = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Starts an episode with a fresh target.

        Args:
            seed: If given, re-seeds the target generator first.
            options: Unused.

        Returns:
            ``(observation, info)``: a uint8 image (3, S, S) and the info dict.
        """
        super().reset(seed=seed)
        self._agent = np.zeros(2)
        self._velocity = np.zeros(2)
        self._target = self.np_random.uniform(-TARGET_RANGE, TARGET_RANGE, size=2)
        self._steps = 0
        return self._observation(), self._info()

    def rng_state(self) -> dict[str, Any]:
        """Returns the state of the generator that ``reset`` draws targets from (a dict of ints).

        With :meth:`set_rng_state` and the episode's actions this recreates an episode exactly:
        the env has no other randomness.
        """
        return self.np_random.bit_generator.state

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """Restores a state from :meth:`rng_state`; the next ``reset`` draws as it did then."""
        self.np_random.bit_generator.state = state

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Moves the agent by ``0.15 * clip(action, -1, 1)``.

        Args:
            action: Array-like of shape (2,), any float dtype; clipped to [-1, 1].

        Returns:
            ``(observation, reward, terminated, truncated, info)``; reward is 0.0 or 1.0.

        Raises:
            ValueError: If ``action`` does not have shape (2,).
        """
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (2,):
            raise ValueError(f"toy:reach expects an action of shape (2,), got {action.shape}")
        previous = self._agent
        self._agent = np.clip(previous + STEP_SCALE * np.clip(action, -1.0, 1.0), -1.0, 1.0)
        self._velocity = self._agent - previous
        self._steps += 1
        reached = bool(np.linalg.norm(self._agent - self._target) < REACH_RADIUS)
        terminated = reached and self.terminal_on_reach
        truncated = not terminated and self._steps >= EPISODE_STEPS
        return self._observation(), float(reached), terminated, truncated, self._info()

    def _pixel(self, xy: np.ndarray) -> tuple[int, int]:
        """Maps an arena point to its (row, column) pixel index."""
        last = self.image_size - 1
        column = round((xy[0] + 1.0) / 2.0 * last)
        row = round((1.0 - xy[1]) / 2.0 * last)
        return row, column

    def _observation(self) -> np.ndarray:
        """Draws the scene as a uint8 array of shape (3, S, S)."""
        image = np.zeros((3, self.image_size, self.image_size), dtype=np.uint8)
        for xy, rgb in ((self._target, _TARGET_RGB), (self._agent, _AGENT_RGB)):
            row, column = self._pixel(xy)
            rows = slice(max(0, row - self._half), row + self._half + 1)
            columns = slice(max(0, column - self._half), column + self._half + 1)
            image[:, rows, columns] = np.asarray(rgb, dtype=np.uint8)[:, None, None]
        return image

    def _info(self) -> dict[str, Any]:
        """Returns copies of the agent position and last displacement (float64, (2,))."""
        return {"qpos": self._agent.copy(), "qvel": self._velocity.copy()}
