"""What every training mode shares: the run's env, acting with the agent, evaluation, the stream's base.

``make_run_env`` builds ``cfg.env`` with a seed; ``AgentPolicy`` acts in one environment with a
``DreamerModule``'s posterior and actor; ``evaluate`` runs full episodes; ``StreamBase`` is the part of the sync (``wmbench.runtime.train``)
and async (``wmbench.runtime.async_learner``) replay streams that counts env frames, shows progress,
writes metric rows and evaluates.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch.utils.data import IterableDataset
from tqdm.auto import tqdm

from wmbench.agents.module import DreamerModule
from wmbench.envs import make_env
from wmbench.runtime.checkpoint import global_rng_state
from wmbench.run_config import RunConfig
from wmbench.types import RSSMState


EVAL_ENV_SEED_OFFSET = 1_000_000
"""The evaluation env is seeded ``run seed + EVAL_ENV_SEED_OFFSET`` (the training env: the run seed)."""


def make_run_env(cfg: RunConfig, seed: int) -> gym.Env:
    """The run's environment (``cfg.env``) seeded with ``seed``."""
    return make_env(cfg.env.task, seed=seed, image_size=cfg.env.image_size, action_repeat=cfg.env.action_repeat,
                    render_quality=cfg.env.render_quality)


def make_eval_env(cfg: RunConfig) -> gym.Env:
    """The run's evaluation environment, seeded ``cfg.seed + EVAL_ENV_SEED_OFFSET``."""
    return make_run_env(cfg, seed=cfg.seed + EVAL_ENV_SEED_OFFSET)


def eval_episode_seed(seed: int, env_frames: int) -> int:
    """Reset seed of the first episode of the evaluation at ``env_frames`` of a run with ``seed``.

    Every objective's run (and the random baseline, at 0 frames) is evaluated on the same episodes.
    """
    return 10_000 * (seed + 1) + env_frames


class AgentPolicy:
    """Stateful wrapper that acts with the module's posterior and actor, one env at a time."""

    def __init__(self, module: DreamerModule, action_dim: int) -> None:
        self.module = module
        self.action_dim = action_dim
        self.state: RSSMState | None = None
        self.prev_action = torch.zeros(1, action_dim)

    def __call__(self, image: np.ndarray, is_first: bool, explore: bool) -> np.ndarray:
        """Action float32 ``[A]`` for image uint8 ``[3, 64, 64]``."""
        if is_first:
            self.state, self.prev_action = None, torch.zeros(1, self.action_dim)
        was_training = self.module.training
        self.module.eval()
        action, self.state = self.module.act(
            torch.as_tensor(image[None]), self.prev_action, torch.tensor([is_first]), self.state, explore
        )
        self.module.train(was_training)
        self.prev_action = action
        return action[0].numpy()


def evaluate(env: gym.Env, act: Callable[[np.ndarray, bool], np.ndarray], episodes: int, seed: int) -> float:
    """Mean undiscounted return over ``episodes`` full episodes.

    Args:
        env: evaluation environment.
        act: ``(image, is_first) -> action``.
        episodes: number of episodes (≥ 1).
        seed: reset seed of the first episode (later episodes use seed + i).
    """
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, first, done = 0.0, True, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs, first))
            total += float(reward)
            first = False
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


@dataclass
class Counters:
    """Progress counters (see ``wmbench.types`` for their meaning)."""

    env_frames: int = 0
    agent_steps: int = 0
    episodes: int = 0


class StreamBase(IterableDataset):
    """What the sync and async replay streams share: counters, progress bar, metric rows, evaluation.

    Args:
        cfg: the run's configuration.
        eval_env: evaluation environment (``make_eval_env``).
        module: the learner's module; evaluation acts with its current weights.
        log: writes one metrics row (``env_frames`` and ``wall_time`` are added by ``_log``).
    """

    def __init__(self, cfg: RunConfig, eval_env: gym.Env, module: DreamerModule, log: Callable[[dict], None]) -> None:
        self.cfg = cfg
        self.eval_env = eval_env
        self.eval_policy = AgentPolicy(module, eval_env.action_space.shape[0])
        self.log = log
        self.counters = Counters()
        self.started = time.time()
        self.next_eval = 0
        self.last_eval: float | None = None
        self.finished = False
        self.resume_state: dict[str, Any] | None = None
        self.bar = tqdm(
            total=cfg.train.env_frames,
            unit="frame",
            desc=f"{cfg.objective} {cfg.env.task} s{cfg.seed}",
            disable=not cfg.train.progress,
            dynamic_ncols=True,
            mininterval=0.5 if sys.stderr.isatty() else 30.0,
        )

    def _stamped(self, batch: dict[str, Any]) -> dict[str, Any]:
        """``batch`` with the ``env_frames`` and ``wall_time`` (s, all sessions) the module logs with it."""
        return batch | {"env_frames": self.counters.env_frames, "wall_time": time.time() - self.started}

    def _log(self, metrics: dict[str, float]) -> None:
        self.log({**metrics, "env_frames": float(self.counters.env_frames), "wall_time": time.time() - self.started})

    def _episode_done(self, episode_return: float) -> None:
        self.counters.episodes += 1
        self._log({"train/episode_return": episode_return, "train/episodes": float(self.counters.episodes)})
        self.bar.set_postfix(ret=f"{episode_return:.1f}", eval=self.last_eval)

    def _maybe_evaluate(self, force: bool = False) -> None:
        if self.counters.env_frames < self.next_eval and not force:
            return
        t = self.cfg.train
        self.last_eval = evaluate(
            self.eval_env,
            lambda obs, first: self.eval_policy(obs, first, explore=False),
            t.eval_episodes,
            seed=eval_episode_seed(self.cfg.seed, self.counters.env_frames),
        )
        self._log({"eval/return": self.last_eval})
        self.next_eval = self.counters.env_frames + t.eval_every

    def _finish(self) -> None:
        """Ends the stream once the budget is spent: a last evaluation unless one was just made."""
        if self.next_eval - self.cfg.train.eval_every < self.counters.env_frames:
            self._maybe_evaluate(force=True)
        self.bar.close()
        self.finished = True

    @property
    def replay_rows(self) -> int:
        """Rows ever added to the replay (all of them on disk after ``flush``)."""
        raise NotImplementedError

    def _stream_state(self, counters: Counters) -> dict[str, Any]:
        """The part of both streams' ``state_dict``: ``counters``, evaluation schedule, global RNG states, wall time."""
        return {
            "counters": asdict(counters),
            "finished": self.finished,
            "next_eval": self.next_eval,
            "last_eval": self.last_eval,
            "rng": global_rng_state(),
            "wall_time": time.time() - self.started,
        }

    def _restore_stream_state(self, state: dict[str, Any]) -> None:
        """Restores what ``_stream_state`` saved, except the global RNG states (restored last, by the caller)."""
        self.counters = Counters(**state["counters"])
        self.finished, self.next_eval, self.last_eval = state["finished"], state["next_eval"], state["last_eval"]
        self.started = time.time() - state["wall_time"]
        self.bar.update(self.counters.env_frames)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Keeps ``state`` to be restored when iteration starts (the env and replay are rebuilt then)."""
        self.resume_state = state

    def close(self) -> None:
        """Releases what the stream holds (progress bar, envs, processes)."""
        self.bar.close()
        self.eval_env.close()
