"""Synchronous training: collect env steps, then update, at a fixed train ratio.

The Lightning Trainer drives the updates; its data loader is ``ReplayStream``, an
``IterableDataset`` that, before handing out each replayed batch, steps the environment until the
next update is due (``wmbench.runtime.schedule.RatioSchedule`` with no slack: one update every
``B·T / train_ratio`` collected agent steps after the random prefill). The stream ends when the
budget of ``env_frames`` is spent, which ends Lightning's single epoch. Everything runs in one
process (``num_workers=0``), so the same seed gives the same run; the replay's rows go to disk as
they come (``wmbench.data.replay_disk``) and checkpoints hold the stream's whole state
(``wmbench.runtime.checkpoint``), so a killed run resumes to the same end.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from lightning.pytorch.loggers import Logger

from wmbench.agents.module import DreamerModule
from wmbench.data.replay import Replay, Row
from wmbench.data.replay_disk import ReplayDisk
from wmbench.run_config import RunConfig
from wmbench.runtime.signals import StopOnSignal
from wmbench.runtime.stream import AgentPolicy, EnvSteps, StreamBase, set_global_rng_state
from wmbench.types import Batch, RSSMState


class ReplayStream(StreamBase):
    """Collect-then-replay stream feeding the Lightning Trainer (see the module docstring).

    Yields ``wmbench.types.Batch`` es of ``train.batch_size`` windows of ``train.seq_len`` rows.
    Every replay row also goes to ``replay_disk`` (chunk files, see ``wmbench.data.replay_disk``).
    ``state_dict``/``load_state_dict`` make the stream resumable exactly; see ``state_dict``.

    Args:
        cfg, eval_env, module, loggers, stop: see ``StreamBase``.
        env: the training env (``make_run_env`` with the run's seed).
        replay_dir: the run's ``replay/``.
    """

    def __init__(self, cfg: RunConfig, env: gym.Env, eval_env: gym.Env, module: DreamerModule,
                 loggers: list[Logger], stop: StopOnSignal, replay_dir: Path) -> None:
        super().__init__(cfg, eval_env, module, loggers, stop)
        self.env = env
        self.steps = EnvSteps(env)
        self.schedule = cfg.ratio_schedule()
        self.policy = AgentPolicy(module, env.action_space.shape[0])
        self.replay = Replay(
            cfg.train.replay_capacity,
            env.observation_space.shape,
            env.action_space.shape[0],
            seed=cfg.seed,
        )
        self.replay_disk = ReplayDisk(replay_dir, cfg.train.replay_chunk)
        self.episode_rng: dict[str, Any] | None = (
            None  # env generator state before the episode's reset
        )
        self.episode_actions: list[np.ndarray] = []
        self.sample_rng: dict[str, Any] | None = None  # replay sampler state before the last batch

    @property
    def replay_rows(self) -> int:
        return self.replay.added

    def close(self) -> None:
        super().close()
        self.env.close()

    def _add(self, row: Row) -> None:
        self.replay.add(*row)
        self.replay_disk.maybe_flush(self.replay)

    def _collect_step(self, random: bool) -> None:
        if not self.steps.in_episode:
            # make_env seeded the env with the run's seed; later episodes continue its random
            # stream.
            self.episode_rng, self.episode_actions = self.env.unwrapped.rng_state(), []
            self._add(self.steps.reset())
        if random:
            action = self.env.action_space.sample()
        else:
            action = self.policy(self.steps.obs, self.steps.steps == 0, explore=True)
        row = self.steps.step(action)
        self.episode_actions.append(row.prev_action)
        self._count_step()
        self._add(row)
        if row.is_last:
            self._episode_done(self.steps.episode_return)

    def _sample(self) -> Batch:
        t = self.cfg.train
        self.sample_rng = self.replay.rng_state()
        return self._batch(self.replay.sample(t.batch_size, t.seq_len))

    def _next_batch(self) -> Batch | None:
        """Collects until the next update is due and samples its batch; ``None`` once the budget is
        spent."""
        while self.batches >= self.schedule.updates_allowed(self.counters.agent_steps):
            if self.counters.agent_steps >= self.schedule.total_steps:
                self._finish()
                return None
            self._stop_if_asked()
            self._collect_step(random=False)
            self._maybe_evaluate()
        return self._sample()

    def __iter__(self) -> Iterator[Batch]:
        if self.resume_state is not None:
            if self._restore(self.resume_state):
                # handed out again: the batch Lightning had fetched ahead at the checkpoint
                self.batches -= 1
                self.session_start = self.batches
                yield self._sample()
            self.resume_state = None
        elif not self.finished:
            self.env.action_space.seed(self.cfg.seed)
            self._maybe_evaluate()
            while self.counters.agent_steps < self.schedule.prefill_steps:
                self._stop_if_asked()
                self._collect_step(random=True)
        while not self.finished and (batch := self._next_batch()) is not None:
            yield batch

    def flush(self) -> None:
        """Writes the pending replay rows to disk (before a checkpoint)."""
        self.replay_disk.flush(self.replay)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the stream exactly (taken between two batches).

        Holds the counters, batches handed out, evaluation schedule, replay row count and sampler
        state (as it was before the batch just handed out, which ``load_state_dict`` makes the first
        batch again), the acting policy's recurrent state, the global RNG states and the env: its
        generator state before the current episode's reset and the episode's actions. The env is not
        pickled: on resume a fresh env replays the episode, which is exact for ``toy:reach`` and for
        dm_control on the same machine and MuJoCo build (checked: the replayed last frame must equal
        the stored one).
        """
        return self._stream_state(self.counters) | {
            "in_episode": self.steps.in_episode,
            "episode_rng": self.episode_rng
            if self.steps.in_episode
            else self.env.unwrapped.rng_state(),
            "episode_actions": np.stack(self.episode_actions) if self.episode_actions else None,
            "action_space_rng": self.env.action_space.np_random.bit_generator.state,
            "replay_rows": self.replay.added,
            "sample_rng": self.sample_rng,
            "policy": {
                "state": None if self.policy.state is None else asdict(self.policy.state),
                "prev_action": self.policy.prev_action,
            },
        }

    def _restore(self, state: dict[str, Any]) -> bool:
        """Restores a ``state_dict``; returns whether a batch was pending (to be sampled again).

        Raises:
            RuntimeError: The replay chunks do not cover the checkpoint, or the env did not
                reproduce the current episode.
        """
        self._restore_stream_state(state)
        self.replay_disk.restore(self.replay, state["replay_rows"])
        self.env.action_space.np_random.bit_generator.state = state["action_space_rng"]
        self.env.unwrapped.set_rng_state(state["episode_rng"])
        if state["in_episode"]:
            self._replay_episode(state["episode_actions"])
        policy = state["policy"]
        self.policy.state = None if policy["state"] is None else RSSMState(**policy["state"])
        self.policy.prev_action = policy["prev_action"]
        set_global_rng_state(state["rng"])
        if state["finished"] or state["sample_rng"] is None:
            return False
        self.replay.set_rng_state(state["sample_rng"])
        return True

    def _replay_episode(self, actions: np.ndarray | None) -> None:
        self.episode_rng, self.episode_actions = self.env.unwrapped.rng_state(), []
        self.steps.reset()
        for action in [] if actions is None else actions:
            self.episode_actions.append(self.steps.step(action).prev_action)
        stored = self.replay.rows(self.replay.added - 1, self.replay.added)["image"][0]
        if not np.array_equal(self.steps.obs, stored):
            raise RuntimeError(
                f"{self.cfg.env.task} did not reproduce its episode on resume (the frame after "
                f"{len(self.episode_actions)} replayed actions differs from the stored one); the "
                "env is not deterministic on this machine, so this run cannot be resumed exactly: "
                "start it over"
            )
