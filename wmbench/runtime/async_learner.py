"""Asynchronous training, DayDreamer's split: actor processes act while the learner trains.

Wu et al., *DayDreamer: World Models for Physical Robot Learning*, CoRL 2022, Sec. 2: a learner
process trains the world model and the actor-critic from replay while an actor process keeps
stepping the environment with the newest policy weights it has received. Here::

    actor i (train.actors processes, spawned)             learner (this process)
      own env (seed + 1000·i), own CPU DreamerModule    rows     one Replay per actor
      acts with encoder + RSSM posterior + actor   ─────────▶   (replay/actor-<i>/ on disk)
                                                    (queue)     AsyncReplayStream → Lightning fit
      copies the weights when their version        ◀─────────   publishes every publish_every
      changes                                  shared memory    updates (share_memory_() tensors)

The actor side (limiter bounds, shared weights, the actor's loop) is
``wmbench.runtime.async_actor``; this module is the learner's side. Each actor's rows go to its own
replay, so every replay holds one stream of whole episodes (``wmbench.data.replay.Replay``'s
invariant); a batch draws its B sequences from the actors' replays in proportion to their sizes.

**Train ratio.** As in sync mode, the first ``learning_starts`` env frames are collected with
uniform random actions, then one update is due every ``B·T / train_ratio`` collected agent steps.
``RatioSchedule`` (``wmbench.runtime.schedule``) holds the realised ratio (``async/train_ratio``:
replayed agent steps per agent step collected after the prefill, in ``train.train_ratio``'s units)
within ±5 % (``ASYNC_SLACK``): the learner starts an update only while the ratio stays at most 5 %
above the target, and the actors take a step only while it keeps them at most 5 % ahead (but always
as far as the next update needs). Steps are whole, so over the first few updates one step can be
more than 5 %. Whichever side is faster waits; ``async/learner_wait`` and ``async/actor_wait`` are
the fractions of wall time each spent waiting. A run does the same number of updates as a sync run
of the same configuration.

**Evaluation** is done by the learner with its current weights when the env frames it has received
pass the evaluation cadence (and at 0 and at the end), as in sync mode; its updates pause meanwhile
and the actors run on up to the limiter's bound.

**Logged** every ``agent.log_every`` updates, besides the sync mode's columns:
``async/train_ratio``, ``async/policy_lag`` (learner updates since the weights that chose the newest
received action were published), ``async/env_frames_per_s`` (all actors), ``async/updates_per_s``,
``async/learner_wait``, ``async/actor_wait`` (mean over actors).

**Failures.** An exception in an actor reaches the learner as ``ActorError`` with the actor's
traceback (an actor that dies without one, e.g. killed, is reported with its exit code) when the
learner next fetches a batch, i.e. between two updates. An exception in the learner, Ctrl-C or
SIGTERM (the run stops after the update in progress with a checkpoint, see
``wmbench.runtime.signals``) stops the actors (``AsyncReplayStream.close``); an actor whose learner
died (kill -9) exits by itself. Actors ignore SIGINT: the learner stops them. The
learner takes no lock an actor could hold, so an actor killed mid-step cannot leave it waiting on
one.

**Resume.** Checkpoints hold the counters, the replays and the learner's model and optimizers, like
sync ones, so a resumed run continues with the counters, replay and weights of the checkpoint and
ends with the same env frames and updates. Not exact: the episodes the actors were in at the
checkpoint are dropped (from the replays and the counters; their steps are collected again), the
actors' RNGs and envs start afresh, and the scheduling of processes makes every async run differ.
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch.multiprocessing as mp
from lightning.pytorch.loggers import Logger

from wmbench.agents.module import DreamerModule
from wmbench.data.replay import Replay, draw_windows
from wmbench.data.replay_disk import ReplayDisk
from wmbench.errors import RunError
from wmbench.run_config import RunConfig
from wmbench.runtime.async_actor import POLL_S, Control, SharedWeights, Step, actor_main
from wmbench.runtime.schedule import ASYNC_SLACK
from wmbench.runtime.signals import StopOnSignal
from wmbench.runtime.stream import Counters, PendingBatch, StreamBase, set_global_rng_state
from wmbench.types import Batch


class ActorError(RunError):
    """An actor process failed; the message holds its traceback (or exit code if it left none)."""


class _Rates:
    """Throughput and waiting between two metric rows (see the module docstring)."""

    def __init__(self, actors: int) -> None:
        self.actor_wait = [0.0] * actors  # cumulative seconds each actor was held, as last reported
        self.learner_wait = 0.0  # cumulative seconds the learner waited for rows

    def start(self, env_frames: int, updates: int) -> None:
        self.since, self.frames, self.updates = time.perf_counter(), env_frames, updates
        self.seen_actor_wait, self.seen_learner_wait = sum(self.actor_wait), self.learner_wait

    def take(self, env_frames: int, updates: int) -> dict[str, float]:
        """Rates since the last call (or ``start``), then restarts the interval."""
        elapsed = max(time.perf_counter() - self.since, 1e-9)
        rates = {
            "async/env_frames_per_s": (env_frames - self.frames) / elapsed,
            "async/updates_per_s": (updates - self.updates) / elapsed,
            "async/learner_wait": (self.learner_wait - self.seen_learner_wait) / elapsed,
            "async/actor_wait": (sum(self.actor_wait) - self.seen_actor_wait)
            / len(self.actor_wait)
            / elapsed,
        }
        self.start(env_frames, updates)
        return rates


class AsyncReplayStream(StreamBase):
    """The learner's side: receives the actors' rows, holds the train ratio, yields replayed
    batches.

    Yields the same batches as ``wmbench.runtime.sync.ReplayStream`` (the sequences drawn from the
    actors' replays in proportion to their sizes). Starts the actors when iterated; ``close`` stops
    them. Every wait (queue, limiter) is at most ``POLL_S`` long, so failures and signals are seen
    soon.

    Args:
        cfg: the run's configuration (``cfg.train.mode == "async"``).
        eval_env: the learner's evaluation environment.
        module: the learner's module; its weights are published to the actors.
        loggers: where the metric rows go.
        stop: the run's signal handlers (see ``StreamBase``).
        replay_dir: the run's ``replay/``; actor i's rows go to ``replay_dir/actor-<i>``.

    Raises (while iterated):
        ActorError: an actor failed (its traceback in the message) or exited.
    """

    def __init__(self, cfg: RunConfig, eval_env: gym.Env, module: DreamerModule,
                 loggers: list[Logger], stop: StopOnSignal, replay_dir: Path) -> None:
        super().__init__(cfg, eval_env, module, loggers, stop)
        t = cfg.train
        self.module = module
        self.schedule = cfg.ratio_schedule(ASYNC_SLACK)
        shape, action_dim = eval_env.observation_space.shape, eval_env.action_space.shape[0]
        self.replays = [
            Replay(t.replay_capacity // t.actors, shape, action_dim, seed=cfg.seed + i)
            for i in range(t.actors)
        ]
        self.disks = [
            ReplayDisk(Path(replay_dir) / f"actor-{i}", t.replay_chunk) for i in range(t.actors)
        ]
        self.episode_start = [
            0
        ] * t.actors  # stream index of the first row of each actor's current episode
        self.rng = np.random.default_rng(
            cfg.seed
        )  # draws each batch's split over the actors' replays
        self.version = 0  # weights version that chose the newest received action
        self.processes: list[Any] = []
        self.control: Control | None = None
        self.rates = _Rates(t.actors)

    @property
    def replay_rows(self) -> int:
        return sum(replay.added for replay in self.replays)

    def __iter__(self) -> Iterator[Batch | PendingBatch]:
        if self.resume_state is not None:
            self._restore(self.resume_state)
            self.resume_state = None
        if self.finished:
            return
        self.batches = self.session_start = self.module.updates
        self._start_actors()
        self._maybe_evaluate()
        while (batch := self._next_batch()) is not None:
            yield batch

    def _start_actors(self) -> None:
        context = mp.get_context("spawn")
        t = self.cfg.train
        self.control = Control(
            # Only the actors lock the step count. The learner writes the update count and the stop
            # flag alone and takes no lock that an actor killed while holding it would leave held
            # forever.
            SharedWeights(self.module, context),
            context.Value("q", self.counters.agent_steps),
            context.Value("q", self.batches, lock=False),
            context.Queue(maxsize=64 * t.actors),
            context.Value("b", 0, lock=False),
            os.getpid(),
        )
        for i in range(t.actors):
            process = context.Process(
                target=actor_main,
                args=(i, self.cfg, self.schedule, self.control),
                name=f"wmbench-actor-{i}",
                daemon=True,
            )
            process.start()
            self.processes.append(process)
        self.rates.start(self.counters.env_frames, self.batches)

    def _next_batch(self) -> Batch | PendingBatch | None:
        """Receives rows until the limiter lets the next update start; ``None`` once the budget is
        spent."""
        assert self.control is not None
        self._settle()
        while True:
            self._receive(block=False)
            self._maybe_evaluate()
            if (
                self.batches < self.schedule.updates_allowed(self.counters.agent_steps)
                and self._sampleable()
            ):
                break
            if self.counters.agent_steps >= self.schedule.total_steps:
                self._finish()
                return None
            self._stop_if_asked()
            started = time.perf_counter()
            self._receive(block=True)
            self.rates.learner_wait += time.perf_counter() - started
        number = self.batches + 1
        self.control.updates.value = number
        if self.module.updates - self.control.weights.version >= self.cfg.train.publish_every:
            self.control.weights.publish(self.module)
        extra = None
        if number % self.cfg.agent.log_every == 0:  # logged in the row of this batch's update
            extra = self.rates.take(self.counters.env_frames, number) | {
                "async/train_ratio": self.cfg.train.train_ratio
                * self.schedule.ratio(number, self.counters.agent_steps),
                "async/policy_lag": float(self.module.updates - self.version),
            }
        return self._sample(extra)

    def _receive(self, block: bool) -> None:
        """Adds the queued steps to the replays (waiting up to ``POLL_S`` for the first if
        ``block``)."""
        assert self.control is not None
        try:
            item = (
                self.control.queue.get(timeout=POLL_S) if block else self.control.queue.get_nowait()
            )
        except queue.Empty:
            self._check_actors()
            return
        while True:
            self._add(item)
            try:
                item = self.control.queue.get_nowait()
            except queue.Empty:
                return

    def _add(self, item: Step | tuple) -> None:
        if not isinstance(item, Step):
            _, actor, text = item
            raise ActorError(f"actor {actor} failed:\n{text}")
        replay, disk = self.replays[item.actor], self.disks[item.actor]
        for row in item.rows:
            if row[3]:  # is_first
                self.episode_start[item.actor] = replay.added
            replay.add(*row)
            disk.maybe_flush(replay)
        self.counters.agent_steps += 1
        self.counters.env_frames += self.cfg.env.action_repeat
        self.bar.update(self.cfg.env.action_repeat)
        self.version = item.version
        self.rates.actor_wait[item.actor] = item.wait_s
        if item.episode_return is not None:
            self._episode_done(item.episode_return)

    def _check_actors(self) -> None:
        """Raises ``ActorError`` if an actor has exited (with its traceback when it sent one)."""
        for i, process in enumerate(self.processes):
            if process.is_alive():
                continue
            deadline = time.time() + 1.0  # its error message may still be in the pipe
            while time.time() < deadline:
                try:
                    self._add(self.control.queue.get(timeout=POLL_S))
                except queue.Empty:
                    pass
            raise ActorError(
                f"actor {i} exited with code {process.exitcode} without reporting an error"
            )

    def _sampleable(self) -> bool:
        return any(len(replay) >= self.cfg.train.seq_len for replay in self.replays)

    def _sample(self, extra: dict[str, float] | None) -> Batch | PendingBatch:
        t = self.cfg.train
        return self._batch(draw_windows(self.replays, self.rng, t.batch_size, t.seq_len), extra)

    def flush(self) -> None:
        """Writes the pending replay rows to disk (before a checkpoint)."""
        for replay, disk in zip(self.replays, self.disks, strict=True):
            disk.flush(replay)

    def state_dict(self) -> dict[str, Any]:
        """Counters, evaluation schedule, replay rows up to each actor's current episode, RNG
        states.

        The actors' unfinished episodes are left out, of the replays and of the counters: a resumed
        actor starts a new episode (a replay holds one stream of whole episodes), and the steps left
        out are collected again, as in sync mode.
        """
        rows = [
            start
            if replay.added and not replay.rows(replay.added - 1, replay.added)["is_last"][0]
            else replay.added
            for replay, start in zip(self.replays, self.episode_start, strict=True)
        ]
        unfinished = sum(
            replay.added - n - 1
            for replay, n in zip(self.replays, rows, strict=True)
            if replay.added > n
        )  # reset rows are no steps
        counters = Counters(self.counters.env_frames - unfinished * self.cfg.env.action_repeat,
                            self.counters.agent_steps - unfinished, self.counters.episodes)
        return self._stream_state(counters) | {
            "replay_rows": rows,
            "sample_rng": [self.rng.bit_generator.state]
            + [replay.rng_state() for replay in self.replays],
        }

    def _restore(self, state: dict[str, Any]) -> None:
        """Restores a ``state_dict`` (the replays from their chunk files).

        Raises:
            RuntimeError: The replay chunks do not cover the checkpoint.
        """
        self._restore_stream_state(state)
        for replay, disk, rows in zip(self.replays, self.disks, state["replay_rows"], strict=True):
            disk.restore(replay, rows)
        self.episode_start = [replay.added for replay in self.replays]
        self.rng.bit_generator.state = state["sample_rng"][0]
        for replay, rng in zip(self.replays, state["sample_rng"][1:], strict=True):
            replay.set_rng_state(rng)
        set_global_rng_state(state["rng"])

    def close(self) -> None:
        """Stops the actors (stop flag; then terminate, then kill, any still running after 5 s)."""
        if self.control is not None:
            self.control.stop.value = 1
            deadline = time.time() + 5.0
            for process in self.processes:
                process.join(timeout=max(0.0, deadline - time.time()))
            for process in self.processes:
                if process.is_alive():
                    process.terminate()
                    process.join(timeout=1.0)
                if process.is_alive():
                    process.kill()
                    process.join()
            self.control.queue.cancel_join_thread()
            self.control.queue.close()
            self.processes, self.control = [], None
        super().close()
