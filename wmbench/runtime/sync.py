"""Synchronous training: collect env steps, then update, at a fixed train ratio.

The Lightning Trainer drives the updates; its data loader is ``ReplayStream``, an
``IterableDataset`` that, before handing out each replayed batch, steps the environments until the
next update is due (``wmbench.runtime.schedule.RatioSchedule`` with no slack: one update every
``B·T / train_ratio`` collected agent steps after the random prefill). The stream ends when the
budget of ``env_frames`` is spent, which ends Lightning's single epoch.

With ``train.envs = N`` the stream steps N envs together (``wmbench.runtime.env_pool.EnvPool``;
worker processes when N > 1): one policy forward chooses the actions of all N, every env steps, and
each step counts towards the train ratio, so the updates per collected step are those of one env.
Where fewer steps than N are left (of the prefill or of the budget) only the first envs step, so a
run collects exactly its budget. Env i's rows go to replay i (``replay/env-<i>/`` on disk; with one
env, ``replay/``), which holds one stream of whole episodes; a batch draws its windows from the
replays in proportion to their sizes (``wmbench.data.replay.draw_windows``).

Everything is decided in this process in a fixed order, so the same seed and N give the same run;
the replays' rows go to disk as they come (``wmbench.data.replay_disk``) and checkpoints hold the
stream's whole state (``wmbench.runtime.checkpoint``), so a killed run resumes to the same end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from lightning.pytorch.loggers import Logger

from wmbench.agents.module import DreamerModule
from wmbench.data.replay import Replay, Row, draw_windows
from wmbench.data.replay_disk import ReplayDisk
from wmbench.run_config import RunConfig
from wmbench.runtime.env_pool import EnvPool
from wmbench.runtime.signals import StopOnSignal
from wmbench.runtime.stream import AgentPolicy, PendingBatch, StreamBase, set_global_rng_state
from wmbench.types import Batch


class ReplayStream(StreamBase):
    """Collect-then-replay stream feeding the Lightning Trainer (see the module docstring).

    Yields ``wmbench.types.Batch`` es of ``train.batch_size`` windows of ``train.seq_len`` rows
    (``PendingBatch`` es, read in a background thread, with ``train.prefetch``).
    Every replay row also goes to disk (chunk files, see ``wmbench.data.replay_disk``).
    ``state_dict``/``load_state_dict`` make the stream resumable exactly; see ``state_dict``.

    Args:
        cfg, eval_env, module, loggers, stop: see ``StreamBase``.
        envs: the run's ``EnvPool`` (``train.envs`` envs); the stream closes it.
        replay_dir: the run's ``replay/``.
    """

    def __init__(self, cfg: RunConfig, envs: EnvPool, eval_env: gym.Env, module: DreamerModule,
                 loggers: list[Logger], stop: StopOnSignal, replay_dir: Path) -> None:
        super().__init__(cfg, eval_env, module, loggers, stop)
        t = cfg.train
        self.envs = envs
        self.schedule = cfg.ratio_schedule()
        shape, action_dim = eval_env.observation_space.shape, eval_env.action_space.shape[0]
        self.policy = AgentPolicy(module, action_dim)
        self.replays = [
            Replay(t.replay_capacity // envs.n, shape, action_dim, seed=cfg.seed + i)
            for i in range(envs.n)
        ]
        dirs = [Path(replay_dir)] if envs.n == 1 else [
            Path(replay_dir) / f"env-{i}" for i in range(envs.n)
        ]
        self.disks = [ReplayDisk(d, t.replay_chunk) for d in dirs]
        self.rng = np.random.default_rng(cfg.seed)  # draws each batch's split over the replays
        # the samplers' states before the last batch (a resumed stream samples it again)
        self.sample_rng: list[dict[str, Any]] | None = None

    @property
    def replay_rows(self) -> int:
        return sum(replay.added for replay in self.replays)

    def close(self) -> None:
        super().close()
        self.envs.close()

    def _add(self, rows: dict[int, Row]) -> None:
        for i, row in rows.items():
            self.replays[i].add(*row)
            self.disks[i].maybe_flush(self.replays[i])

    def _collect_step(self, random: bool, count: int) -> None:
        """One step in each of the first ``count`` envs (first starting an episode in every env
        between episodes): uniform random actions if ``random``, else the policy's."""
        envs = self.envs
        self._add(envs.reset([i for i in range(envs.n) if envs.obs[i] is None]))
        if random:
            actions = [space.sample() for space in envs.action_spaces[:count]]
        else:
            is_first = np.array([steps == 0 for steps in envs.steps])
            actions = self.policy.act(np.stack(envs.obs), is_first, explore=True)
        rows = envs.step({i: actions[i] for i in range(count)})
        self._add(rows)
        for i, row in rows.items():
            self._count_step()
            if row.is_last:
                self._episode_done(envs.returns[i])

    def _steps_left(self, until: int) -> int:
        """Envs to step now: N, or fewer where fewer steps are left ``until`` a step count."""
        return min(self.envs.n, until - self.counters.agent_steps)

    def _sample(self) -> Batch | PendingBatch:
        t = self.cfg.train
        self.sample_rng = [self.rng.bit_generator.state] + [r.rng_state() for r in self.replays]
        return self._batch(draw_windows(self.replays, self.rng, t.batch_size, t.seq_len))

    def _next_batch(self) -> Batch | PendingBatch | None:
        """Collects until the next update is due and samples its batch; ``None`` once the budget is
        spent."""
        self._settle()
        while self.batches >= self.schedule.updates_allowed(self.counters.agent_steps):
            if self.counters.agent_steps >= self.schedule.total_steps:
                self._finish()
                return None
            self._stop_if_asked()
            self._collect_step(random=False, count=self._steps_left(self.schedule.total_steps))
            self._maybe_evaluate()
        return self._sample()

    def __iter__(self) -> Iterator[Batch | PendingBatch]:
        if self.resume_state is not None:
            if self._restore(self.resume_state):
                # handed out again: the batch Lightning had fetched ahead at the checkpoint
                self.batches -= 1
                self.session_start = self.batches
                yield self._sample()
            self.resume_state = None
        elif not self.finished:
            self.envs.seed(self.cfg.seed)
            self._maybe_evaluate()
            while self.counters.agent_steps < self.schedule.prefill_steps:
                self._stop_if_asked()
                self._collect_step(random=True, count=self._steps_left(self.schedule.prefill_steps))
        while not self.finished and (batch := self._next_batch()) is not None:
            yield batch

    def flush(self) -> None:
        """Writes the pending replay rows to disk (before a checkpoint)."""
        for replay, disk in zip(self.replays, self.disks, strict=True):
            disk.flush(replay)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the stream exactly (taken between two batches).

        Holds the counters, batches handed out, evaluation schedule, each replay's row count, the
        samplers' states (as they were before the batch just handed out, which ``load_state_dict``
        makes the first batch again), the acting policy's recurrent state, the global RNG states
        and each env's (``EnvPool.state``: its generator state before the current episode's reset
        and the episode's actions). The envs are not pickled: on resume fresh envs replay their
        episodes, which is exact for ``toy:reach`` and for dm_control on the same machine and
        MuJoCo build (checked: each replayed last frame must equal the stored one).
        """
        return self._stream_state(self.counters) | {
            "envs": self.envs.state(),
            "replay_rows": [replay.added for replay in self.replays],
            "sample_rng": self.sample_rng,
            "policy": self.policy.state_dict(),
        }

    def _restore(self, state: dict[str, Any]) -> bool:
        """Restores a ``state_dict``; returns whether a batch was pending (to be sampled again).

        Raises:
            RuntimeError: The replay chunks do not cover the checkpoint, or an env did not
                reproduce its current episode.
        """
        self._restore_stream_state(state)
        for replay, disk, rows in zip(self.replays, self.disks, state["replay_rows"], strict=True):
            disk.restore(replay, rows)
        for i, row in self.envs.restore(state["envs"]).items():
            stored = self.replays[i].rows(self.replays[i].added - 1, self.replays[i].added)
            if not np.array_equal(row.image, stored["image"][0]):
                raise RuntimeError(
                    f"{self.cfg.env.task} did not reproduce its episode on resume (env {i}'s frame "
                    f"after {self.envs.steps[i]} replayed actions differs from the stored one); "
                    "the env is not deterministic on this machine, so this run cannot be resumed "
                    "exactly: start it over"
                )
        self.policy.load_state_dict(state["policy"])
        set_global_rng_state(state["rng"])
        if state["finished"] or state["sample_rng"] is None:
            return False
        self.rng.bit_generator.state = state["sample_rng"][0]
        for replay, rng in zip(self.replays, state["sample_rng"][1:], strict=True):
            replay.set_rng_state(rng)
        return True
