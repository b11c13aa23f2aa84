"""A run's environments: one env's resets and steps as replay rows (``EnvSteps``), and the
``train.envs`` envs of a sync run stepped together (``EnvPool``).

``EnvSteps`` is the one place that turns env calls into replay rows, for sync mode, async actors,
evaluation and the diagnostics' episodes. ``EnvPool`` holds env i seeded ``env_seed(seed, i)``
(env 0: the run's seed): one env is stepped in this process; with more, each lives in its own worker
process (spawned; it imports no torch) and a step sends every env its action before it waits for
any, so N envs step in about the time of one. Each env's episode bookkeeping (its generator state
before the episode's reset and the episode's actions) lives beside it, so a checkpoint can replay
every env's current episode exactly (``state``, ``restore``). An env that raises in a worker stops
the run with ``EnvWorkerError`` and the worker's traceback. Workers ignore SIGINT (the run stops
them) and exit when their run's process dies. No torch here.
"""

from __future__ import annotations

import functools
import multiprocessing
import signal
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from wmbench.data.replay import Row
from wmbench.envs import make_env
from wmbench.errors import RunError
from wmbench.run_config import RunConfig

ENV_SEED_STRIDE = 1000
"""Env i of a run (or async actor i) is seeded ``seed + ENV_SEED_STRIDE * i``."""

POLL_S = 1.0
"""How often a wait for a worker's answer checks that the worker is still alive."""


def env_seed(seed: int, index: int) -> int:
    """Seed of env (or async actor) ``index`` of a run with ``seed``; env 0 gets ``seed``."""
    return seed + ENV_SEED_STRIDE * index


def make_run_env(cfg: RunConfig, seed: int) -> gym.Env:
    """The run's environment (``cfg.env``) seeded with ``seed``."""
    return make_env(
        cfg.env.task,
        seed=seed,
        image_size=cfg.env.image_size,
        action_repeat=cfg.env.action_repeat,
        render_quality=cfg.env.render_quality,
    )


class EnvSteps:
    """Steps one env and returns each reset and step as a replay row (``wmbench.types``' alignment).

    ``reset`` gives row 0 (o_0, zero action, reward 0, ``is_first``); ``step(a)`` gives the next row
    (o_t, a_{t-1} = a, r_t, ``is_terminal``, ``is_last``). After a last row the episode is over
    (``in_episode`` is false) until the next ``reset``.

    Attributes:
        env: the env (observations uint8 ``[3, 64, 64]``, actions float32 ``[A]`` in [-1, 1]).
        obs: the current observation; ``None`` between episodes.
        info: the ``info`` of the last reset or step (e.g. ``qpos``/``qvel``).
        steps: steps taken in the current episode.
        episode_return: sum of the current episode's rewards.
    """

    def __init__(self, env: gym.Env) -> None:
        self.env = env
        self.obs: np.ndarray | None = None
        self.info: dict[str, Any] = {}
        self.steps = 0
        self.episode_return = 0.0

    @property
    def in_episode(self) -> bool:
        return self.obs is not None

    def reset(self, seed: int | None = None) -> Row:
        """Starts an episode (``env.reset(seed=seed)``); returns its first row."""
        self.obs, self.info = self.env.reset(seed=seed)
        self.steps, self.episode_return = 0, 0.0
        return Row(
            self.obs, np.zeros(self.env.action_space.shape, np.float32), 0.0, True, False, False
        )

    def step(self, action: np.ndarray) -> Row:
        """Steps the env with ``action`` (float32 ``[A]``); returns the new row."""
        action = np.asarray(action, np.float32)
        obs, reward, terminated, truncated, self.info = self.env.step(action)
        self.steps += 1
        self.episode_return += float(reward)
        last = bool(terminated or truncated)
        self.obs = None if last else obs
        return Row(obs, action, float(reward), False, bool(terminated), last)


class EnvSlot:
    """One env of a pool where it lives (this process or a worker): its ``EnvSteps`` and what a
    checkpoint needs to replay its current episode.

    Args:
        make: builds the env (seeded).
    """

    def __init__(self, make: Callable[[], gym.Env]) -> None:
        self.env = make()
        self.steps = EnvSteps(self.env)
        self.episode_rng: dict[str, Any] | None = None  # generator state before the reset
        self.actions: list[np.ndarray] = []

    def action_space(self) -> gym.spaces.Box:
        return self.env.action_space

    def reset(self) -> Row:
        """Starts an episode, continuing the env's random stream (seeded once, when made)."""
        self.episode_rng, self.actions = self.env.unwrapped.rng_state(), []
        return self.steps.reset()

    def step(self, action: np.ndarray) -> Row:
        row = self.steps.step(action)
        self.actions.append(row.prev_action)
        return row

    def state(self) -> dict[str, Any]:
        """``in_episode``, ``episode_rng`` (before the current episode's reset; between episodes
        the generator's current state) and ``episode_actions`` (float32 ``[steps, A]`` or
        ``None``)."""
        return {
            "in_episode": self.steps.in_episode,
            "episode_rng": self.episode_rng
            if self.steps.in_episode
            else self.env.unwrapped.rng_state(),
            "episode_actions": np.stack(self.actions) if self.actions else None,
        }

    def restore(self, state: dict[str, Any]) -> tuple[Row, float] | None:
        """Sets the env's generator to a ``state`` and replays the episode it was in.

        Returns:
            The replayed episode's newest row (its reset row if it had no step) and its return so
            far, or ``None`` if the state was between episodes.
        """
        self.env.unwrapped.set_rng_state(state["episode_rng"])
        if not state["in_episode"]:
            return None
        row = self.reset()
        for action in [] if state["episode_actions"] is None else state["episode_actions"]:
            row = self.step(action)
        return row, self.steps.episode_return

    def close(self) -> None:
        self.env.close()


class EnvWorkerError(RunError):
    """An env's worker process failed; the message holds its traceback (or its exit code)."""


def _serve(conn: Any, make: Callable[[], gym.Env]) -> None:
    """A worker process: builds its ``EnvSlot``, then answers ``(method, args)`` requests with
    ``("ok", result)`` or ``("error", traceback)`` until ``close`` or its run's end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C: the run stops its workers
    try:
        slot = EnvSlot(make)
    except BaseException:  # noqa: BLE001 - the run reports it
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ok", None))
    while True:
        try:
            method, args = conn.recv()
        except EOFError:  # the run's process is gone
            break
        if method == "close":
            break
        try:
            conn.send(("ok", getattr(slot, method)(*args)))
        except Exception:  # noqa: BLE001 - the run reports it
            conn.send(("error", traceback.format_exc()))
    slot.close()


class _Here:
    """An ``EnvSlot`` in this process, behind the same ``send``/``recv`` as a worker."""

    def __init__(self, make: Callable[[], gym.Env]) -> None:
        self.slot = EnvSlot(make)
        self.result: Any = None

    def send(self, method: str, *args: Any) -> None:
        self.result = getattr(self.slot, method)(*args)

    def recv(self) -> Any:
        return self.result

    def close(self) -> None:
        self.slot.close()


class _Worker:
    """An ``EnvSlot`` in a spawned worker process."""

    def __init__(self, make: Callable[[], gym.Env], index: int, context: Any) -> None:
        self.index = index
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(child, make), name=f"wmbench-env-{index}", daemon=True
        )
        self.process.start()
        child.close()

    def send(self, method: str, *args: Any) -> None:
        self.conn.send((method, args))

    def recv(self) -> Any:
        """The answer to the last request.

        Raises:
            EnvWorkerError: the request raised in the worker, or the worker exited.
        """
        while not self.conn.poll(POLL_S):
            if not self.process.is_alive():
                raise EnvWorkerError(
                    f"env {self.index}'s worker exited with code {self.process.exitcode}"
                )
        try:
            status, value = self.conn.recv()
        except EOFError:
            raise EnvWorkerError(
                f"env {self.index}'s worker exited with code {self.process.exitcode}"
            ) from None
        if status == "error":
            raise EnvWorkerError(f"env {self.index} failed:\n{value}")
        return value

    def close(self) -> None:
        """Asks the worker to close its env and exit; terminates it if it has not after 5 s."""
        try:
            self.conn.send(("close", ()))
        except (BrokenPipeError, OSError):
            pass
        self.process.join(timeout=5.0)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=1.0)
        self.conn.close()


class EnvPool:
    """The ``train.envs`` envs of a sync run, stepped together (see the module docstring).

    Attributes:
        n: number of envs N.
        action_spaces: each env's action space (a copy in this process; ``seed`` seeds it).
        obs: each env's current observation, uint8 ``[3, 64, 64]``; ``None`` between episodes.
        steps: steps taken in each env's current episode.
        returns: each env's current episode return.

    Args:
        cfg: the run's configuration (``cfg.env``, ``cfg.seed``, ``cfg.train.envs``).

    Raises:
        EnvWorkerError: a worker could not build its env.
    """

    def __init__(self, cfg: RunConfig) -> None:
        self.n = cfg.train.envs
        makes = [functools.partial(make_run_env, cfg, env_seed(cfg.seed, i)) for i in range(self.n)]
        if self.n == 1:
            self.slots: list[_Here | _Worker] = [_Here(makes[0])]
        else:
            context = multiprocessing.get_context("spawn")
            self.slots = [_Worker(make, i, context) for i, make in enumerate(makes)]
        try:
            for slot in self.slots:
                slot.recv()  # a worker's answer that its env is built
            self.action_spaces = list(self._call("action_space", {i: () for i in range(self.n)})
                                      .values())
        except BaseException:
            self.close()
            raise
        self.obs: list[np.ndarray | None] = [None] * self.n
        self.steps = [0] * self.n
        self.returns = [0.0] * self.n

    def seed(self, seed: int) -> None:
        """Seeds the action spaces' samplers: env i's with ``env_seed(seed, i)``."""
        for i, space in enumerate(self.action_spaces):
            space.seed(env_seed(seed, i))

    def _call(self, method: str, args: dict[int, tuple]) -> dict[int, Any]:
        """Calls ``method(*args[i])`` of env i's ``EnvSlot`` for every i in ``args``: all requests
        first, then all answers."""
        for i, arg in args.items():
            self.slots[i].send(method, *arg)
        return {i: self.slots[i].recv() for i in args}

    def _track(self, rows: dict[int, Row]) -> dict[int, Row]:
        for i, row in rows.items():
            if row.is_first:
                self.steps[i], self.returns[i] = 0, 0.0
            else:
                self.steps[i] += 1
                self.returns[i] += row.reward
            self.obs[i] = None if row.is_last else row.image
        return rows

    def reset(self, indices: Iterable[int]) -> dict[int, Row]:
        """Starts an episode in each env of ``indices``; returns their first rows by env."""
        return self._track(self._call("reset", {i: () for i in indices}))

    def step(self, actions: dict[int, np.ndarray]) -> dict[int, Row]:
        """Steps env i with ``actions[i]`` (float32 ``[A]``) for every i given, in parallel;
        returns their new rows by env."""
        return self._track(self._call("step", {i: (a,) for i, a in actions.items()}))

    def state(self) -> list[dict[str, Any]]:
        """Each env's ``EnvSlot.state`` and its action space's sampler state."""
        states = self._call("state", {i: () for i in range(self.n)})
        return [
            states[i] | {"action_space_rng": space.np_random.bit_generator.state}
            for i, space in enumerate(self.action_spaces)
        ]

    def restore(self, states: Sequence[dict[str, Any]]) -> dict[int, Row]:
        """Restores a ``state``: each env replays its episode.

        Returns:
            The newest row of each env that was in an episode (to check against its replay).
        """
        for space, state in zip(self.action_spaces, states, strict=True):
            space.np_random.bit_generator.state = state["action_space_rng"]
        replayed = self._call("restore", {i: (state,) for i, state in enumerate(states)})
        rows = {}
        for i, state in enumerate(states):
            self.obs[i], self.steps[i], self.returns[i] = None, 0, 0.0
            if replayed[i] is not None:
                rows[i], self.returns[i] = replayed[i]
                self.obs[i] = rows[i].image
                self.steps[i] = 0 if state["episode_actions"] is None else len(
                    state["episode_actions"]
                )
        return rows

    def close(self) -> None:
        """Closes every env (and stops the workers)."""
        for slot in getattr(self, "slots", []):
            slot.close()
        self.slots = []
