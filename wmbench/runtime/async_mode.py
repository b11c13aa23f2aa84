"""Asynchronous training, DayDreamer's split: actor processes act while the learner trains.

Wu et al., *DayDreamer: World Models for Physical Robot Learning*, CoRL 2022, Sec. 2: a learner
process trains the world model and the actor-critic from replay while an actor process keeps
stepping the environment with the newest policy weights it has received. Here::

    actor i (train.actors processes, torch.multiprocessing spawn)      learner (this process)
      own env (seed + 1000·i), own CPU DreamerModule          rows     one Replay per actor
      acts with encoder + RSSM posterior + actor         ─────────▶   (replay/actor-<i>/ on disk)
                                                          (queue)     AsyncReplayStream → Lightning fit
      copies the weights when their version changes      ◀─────────   publishes every publish_every updates
                                                     shared memory    (share_memory_() tensors + version)

Each actor's rows go to its own replay, so every replay holds one stream of whole episodes
(``wmbench.replay.Replay``'s invariant); a batch draws its B sequences from the actors' replays in
proportion to their sizes.

**Train ratio.** As in sync mode, the first ``learning_starts`` env frames are collected with uniform
random actions, then one update is due every ``B·T / train_ratio`` collected agent steps.
``RatioSchedule`` holds the realised ratio (``async/train_ratio``: replayed agent steps per agent step
collected after the prefill, in ``train.train_ratio``'s units) within ±5 % (``RATIO_SLACK``): the learner starts
an update only while the ratio stays at most 5 % above the target, and the actors take a step only
while it keeps them at most 5 % ahead (but always as far as the next update needs). Steps are whole,
so over the first few updates one step can be more than 5 %. Whichever side is faster waits;
``async/learner_wait`` and ``async/actor_wait`` are the fractions of wall time each spent waiting.
A run does the same number of updates as a sync run of the same configuration.

**Evaluation** is done by the learner with its current weights when the env frames it has received
pass the evaluation cadence (and at 0 and at the end), as in sync mode; its updates pause meanwhile
and the actors run on up to the limiter's bound.

**Logged** every ``agent.log_every`` updates, besides the sync mode's columns: ``async/train_ratio``,
``async/policy_lag`` (learner updates since the weights that chose the newest received action were
published), ``async/env_frames_per_s`` (all actors), ``async/updates_per_s``, ``async/learner_wait``,
``async/actor_wait`` (mean over actors).

**Failures.** An exception in an actor reaches the learner as ``ActorError`` with the actor's
traceback (an actor that dies without one, e.g. killed, is reported with its exit code) within a
second; an exception in the learner, or Ctrl-C, stops the actors (``AsyncReplayStream.close``), and an
actor whose learner died exits by itself. Actors ignore SIGINT: the learner stops them.

**Resume.** Checkpoints hold the counters, the replays and the learner's model and optimizers, like
sync ones, so a resumed run continues with the counters, replay and weights of the checkpoint and
ends with the same env frames and updates. Not exact: the episodes the actors were in at the
checkpoint are dropped (from the replays and the counters; their steps are collected again), the
actors' RNGs and envs start afresh, and the scheduling of processes makes every async run differ.
"""

from __future__ import annotations

import math
import os
import queue
import signal
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
import torch.multiprocessing as mp

from wmbench.agents.module import DreamerModule
from wmbench.replay import FIELDS, Replay
from wmbench.replay_disk import ReplayDisk
from wmbench.runtime.checkpoint import global_rng_state, set_global_rng_state
from wmbench.runtime.config import RunConfig
from wmbench.runtime.sync import AgentPolicy, Counters, StreamBase, make_run_env, prepare

RATIO_SLACK = 0.05
"""How far (relative) either side may run ahead of the train ratio."""

ACTOR_SEED_STRIDE = 1000
"""Actor i seeds its env, action space and torch with ``seed + ACTOR_SEED_STRIDE * i`` (actor 0: the run's seed)."""

POLL_S = 0.1
"""Longest single wait on the queue or the limiter; every wait loop re-checks for failures and stops this often."""

POLICY_PREFIXES = ("world_model.encoder.", "world_model.rssm.", "actor_critic.actor.")
"""State-dict entries the actors need to act (``DreamerModule.act``): encoder, RSSM posterior, actor."""


class ActorError(RuntimeError):
    """An actor process failed; the message holds its traceback (or its exit code if it left none)."""


@dataclass(frozen=True)
class RatioSchedule:
    """The train ratio as bounds on each side (see the module docstring). Steps are agent steps.

    Attributes:
        prefill_steps: steps collected with random actions before the first update.
        total_steps: steps of the whole budget.
        steps_per_update: ``B·T / train_ratio``.
        slack: relative lead either side may take (``RATIO_SLACK``).
    """

    prefill_steps: int
    total_steps: int
    steps_per_update: float
    slack: float = RATIO_SLACK

    @classmethod
    def of(cls, cfg: RunConfig) -> RatioSchedule:
        """The schedule of ``cfg``; the same prefill, budget and final update count as sync mode."""
        t, repeat = cfg.train, cfg.env.action_repeat
        return cls(math.ceil(min(t.learning_starts, t.env_frames) / repeat), math.ceil(t.env_frames / repeat),
                   t.batch_size * t.seq_len / t.train_ratio)

    def updates_allowed(self, steps: int) -> int:
        """Most updates the learner may have started once ``steps`` steps are in its replay.

        At most ``(1 + slack)`` times the updates due, and never more than the budget's
        ``floor((total_steps - prefill_steps) / steps_per_update)`` (sync mode's count).
        """
        due = (steps - self.prefill_steps) / self.steps_per_update
        final = (self.total_steps - self.prefill_steps) / self.steps_per_update
        return max(0, math.floor(min(due * (1 + self.slack), final) + 1e-9))

    def steps_allowed(self, updates: int) -> int:
        """Most steps the actors may have taken (all together) while the learner has started ``updates``.

        ``(1 + slack)`` times the steps the started updates are due for, but at least what the
        learner needs to start the next one (so neither side can block the other).
        """
        spu = self.steps_per_update
        lead = math.ceil(max(updates * spu * (1 + self.slack), (updates + 1) * spu / (1 + self.slack)) - 1e-9)
        return min(self.total_steps, self.prefill_steps + lead)

    def ratio(self, updates: int, steps: int) -> float:
        """Realised train ratio over the steps collected after the prefill, relative to the target (1 = on it)."""
        return updates * self.steps_per_update / max(1, steps - self.prefill_steps)


class SharedWeights:
    """The policy's weights (``POLICY_PREFIXES``) in shared memory, stamped with the learner's update count.

    Created by the learner from its module and handed to the actors at spawn; ``publish`` copies the
    learner's tensors in, ``pull`` copies them into an actor's module when the version changed.
    Nothing is pickled after the spawn. No lock: a sequence number, odd while a publication is being
    written, lets a pull detect that it overlapped one and copy again (a seqlock), so an actor that
    dies mid-copy can never block the learner.

    Attributes:
        tensors: name -> float tensor in shared memory, shapes as in the module's state dict.
        version: ``updates`` of the learner when last published.
    """

    def __init__(self, module: DreamerModule, context: Any) -> None:
        own = module.state_dict()
        self.tensors = {k: v.detach().clone().share_memory_() for k, v in own.items() if k.startswith(POLICY_PREFIXES)}
        self._sequence = context.Value("q", 0, lock=False)
        self._version = context.Value("q", module.updates, lock=False)

    @property
    def version(self) -> int:
        return int(self._version.value)

    def publish(self, module: DreamerModule) -> None:
        """Copies the module's policy tensors in and sets the version to ``module.updates`` (learner only)."""
        own = module.state_dict()
        self._sequence.value += 1  # odd: being written
        with torch.no_grad():
            for name, tensor in self.tensors.items():
                tensor.copy_(own[name])
        self._version.value = module.updates
        self._sequence.value += 1

    def pull(self, module: DreamerModule, have: int | None) -> int:
        """Copies the published tensors into ``module`` unless it already holds version ``have``; returns the version held.

        Raises:
            RuntimeError: No consistent copy within ``POLL_S * 50`` seconds (the learner died mid-publication).
        """
        if have == self.version:
            return have
        own = module.state_dict()
        deadline = time.monotonic() + POLL_S * 50
        while time.monotonic() < deadline:
            sequence = self._sequence.value
            if sequence % 2 == 0:
                version = self.version
                with torch.no_grad():
                    for name, tensor in self.tensors.items():
                        own[name].copy_(tensor)
                if self._sequence.value == sequence:
                    return version
            time.sleep(0.001)
        raise RuntimeError("the learner's weights stayed mid-publication for 5 s")


class Step(NamedTuple):
    """One agent step sent by an actor: its replay rows (a reset row first when an episode starts)."""

    actor: int
    rows: list[tuple]  # Replay.add arguments: (image uint8 [3, 64, 64], prev_action [A], reward, is_first, is_terminal, is_last)
    version: int  # SharedWeights version that chose the action
    episode_return: float | None  # set on the episode's last step
    wait_s: float  # the actor's total time held by the limiter so far


class _Control(NamedTuple):
    """What the learner shares with every actor."""

    weights: SharedWeights
    steps: Any  # mp.Value with a lock: steps claimed by the actors (all together)
    updates: Any  # lock-free mp.Value: updates started by the learner (its only writer)
    queue: Any  # mp.Queue of Step and ("error", actor, traceback)
    stop: Any  # lock-free mp.Value, set by the learner to stop the actors
    learner_pid: int


def _actor_main(index: int, cfg: RunConfig, schedule: RatioSchedule, control: _Control) -> None:
    """Actor process: claim a step from the limiter, act, step the env, send the rows; until stopped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the learner, which stops the actors
    torch.set_num_threads(1)
    try:
        _act(index, cfg, schedule, control)
    except BaseException:  # noqa: BLE001 - every failure goes to the learner
        _put(control, ("error", index, traceback.format_exc()))
        raise SystemExit(1) from None
    control.queue.cancel_join_thread()  # stopped: rows still buffered are not needed


def _stopped(control: _Control) -> bool:
    return bool(control.stop.value) or os.getppid() != control.learner_pid


def _put(control: _Control, item: Any) -> None:
    while not _stopped(control):
        try:
            control.queue.put(item, timeout=POLL_S)
            return
        except queue.Full:
            continue


def _claim(control: _Control, schedule: RatioSchedule) -> int | None:
    """Index of the step this actor may take now, or ``None`` while the limiter holds the actors."""
    with control.steps.get_lock():
        step = control.steps.value
        if step >= schedule.steps_allowed(control.updates.value):
            return None
        control.steps.value = step + 1
        return step


def _act(index: int, cfg: RunConfig, schedule: RatioSchedule, control: _Control) -> None:
    objective_cls, objective_cfg = prepare(cfg)
    seed = cfg.seed + ACTOR_SEED_STRIDE * index
    torch.manual_seed(seed)
    env = make_run_env(cfg, seed)
    env.action_space.seed(seed)
    action_dim = env.action_space.shape[0]
    module = DreamerModule(cfg.agent, env.observation_space.shape, action_dim, objective_cls, objective_cfg)
    policy = AgentPolicy(module, action_dim)
    version = control.weights.pull(module, None)
    obs, first, episode_return, wait_s = None, True, 0.0, 0.0
    while not _stopped(control):
        step = _claim(control, schedule)
        if step is None:
            started = time.perf_counter()
            time.sleep(0.002)
            wait_s += time.perf_counter() - started
            continue
        rows = []
        if obs is None:
            obs, _ = env.reset()
            rows.append((obs, np.zeros(action_dim, np.float32), 0.0, True, False, False))
            first, episode_return = True, 0.0
        version = control.weights.pull(module, version)
        action = env.action_space.sample() if step < schedule.prefill_steps else policy(obs, first, explore=True)
        action = np.asarray(action, np.float32)
        obs, reward, terminated, truncated, _ = env.step(action)
        episode_return += float(reward)
        last = bool(terminated or truncated)
        rows.append((obs, action, float(reward), False, bool(terminated), last))
        _put(control, Step(index, rows, version, episode_return if last else None, wait_s))
        first = False
        if last:
            obs = None
    env.close()


class AsyncReplayStream(StreamBase):
    """The learner's side: receives the actors' rows, holds the train ratio, yields replayed batches.

    Yields the same batches as ``wmbench.runtime.sync.ReplayStream`` (the sequences drawn from the
    actors' replays in proportion to their sizes). Starts the actors when iterated; ``close`` stops
    them. Every wait (queue, limiter) is at most ``POLL_S`` long, so failures are seen and Lightning's
    SIGTERM handling is never blocked for long.

    Args:
        cfg: the run's configuration (``cfg.train.mode == "async"``).
        eval_env: the learner's evaluation environment.
        module: the learner's module; its weights are published to the actors.
        log: writes one metrics row.
        replay_dir: the run's ``replay/``; actor i's rows go to ``replay_dir/actor-<i>``.

    Raises (while iterated):
        ActorError: an actor failed (its traceback in the message) or exited.
    """

    def __init__(self, cfg: RunConfig, eval_env: gym.Env, module: DreamerModule, log: Any, replay_dir: Path) -> None:
        super().__init__(cfg, eval_env, module, log)
        t = cfg.train
        self.module = module
        self.schedule = RatioSchedule.of(cfg)
        shape, action_dim = eval_env.observation_space.shape, eval_env.action_space.shape[0]
        self.replays = [Replay(t.replay_capacity // t.actors, shape, action_dim, seed=cfg.seed + i) for i in range(t.actors)]
        self.disks = [ReplayDisk(Path(replay_dir) / f"actor-{i}", t.replay_chunk) for i in range(t.actors)]
        self.episode_start = [0] * t.actors  # stream index of the first row of each actor's current episode
        self.rng = np.random.default_rng(cfg.seed)  # draws each batch's split over the actors' replays
        self.updates = 0  # updates started (batches handed to Lightning)
        self.version = 0  # weights version that chose the newest received action
        self.processes: list[Any] = []
        self.control: _Control | None = None
        self.rates = _Rates(t.actors)

    @property
    def replay_rows(self) -> int:
        return sum(replay.added for replay in self.replays)

    def __iter__(self):
        if self.resume_state is not None:
            self._restore(self.resume_state)
            self.resume_state = None
        if self.finished:
            return
        self.updates = self.module.updates
        self._start_actors()
        self._maybe_evaluate()
        while (batch := self._next_batch()) is not None:
            yield batch

    def _start_actors(self) -> None:
        context = mp.get_context("spawn")
        t = self.cfg.train
        self.control = _Control(
            # Only the actors lock the step count. The learner writes the update count and the stop flag
            # alone and takes no lock that an actor killed while holding it would leave held forever.
            SharedWeights(self.module, context), context.Value("q", self.counters.agent_steps), context.Value("q", self.updates, lock=False),
            context.Queue(maxsize=64 * t.actors), context.Value("b", 0, lock=False), os.getpid(),
        )
        if not t.threads:  # leave the actors a core each where there are enough
            torch.set_num_threads(max(1, (os.cpu_count() or 1) - t.actors))
        for i in range(t.actors):
            process = context.Process(target=_actor_main, args=(i, self.cfg, self.schedule, self.control),
                                      name=f"wmbench-actor-{i}", daemon=True)
            process.start()
            self.processes.append(process)
        self.rates.start(self.counters.env_frames, self.updates)

    def _next_batch(self) -> dict[str, Any] | None:
        """Receives rows until the limiter lets the next update start; ``None`` once the budget is spent."""
        assert self.control is not None
        while True:
            self._receive(block=False)
            self._maybe_evaluate()
            if self.updates < self.schedule.updates_allowed(self.counters.agent_steps) and self._sampleable():
                break
            if self.counters.agent_steps >= self.schedule.total_steps:
                self._finish()
                return None
            started = time.perf_counter()
            self._receive(block=True)
            self.rates.learner_wait += time.perf_counter() - started
        self.updates += 1
        self.control.updates.value = self.updates
        if self.module.updates - self.control.weights.version >= self.cfg.train.publish_every:
            self.control.weights.publish(self.module)
        batch = self._sample()
        if self.updates % self.cfg.agent.log_every == 0:  # the module logs them in this update's row
            batch["metrics"] = self.rates.take(self.counters.env_frames, self.updates) | {
                "async/train_ratio": self.cfg.train.train_ratio * self.schedule.ratio(self.updates, self.counters.agent_steps),
                "async/policy_lag": float(self.module.updates - self.version),
            }
        return batch

    def _receive(self, block: bool) -> None:
        """Adds the queued steps to the replays (waiting up to ``POLL_S`` for the first if ``block``)."""
        assert self.control is not None
        try:
            item = self.control.queue.get(timeout=POLL_S) if block else self.control.queue.get_nowait()
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
            raise ActorError(f"actor {i} exited with code {process.exitcode} without reporting an error")

    def _sampleable(self) -> bool:
        return any(len(replay) >= self.cfg.train.seq_len for replay in self.replays)

    def _sample(self) -> dict[str, Any]:
        t = self.cfg.train
        sizes = np.array([len(r) if len(r) >= t.seq_len else 0 for r in self.replays], np.float64)
        counts = self.rng.multinomial(t.batch_size, sizes / sizes.sum())
        parts = [replay.sample(n, t.seq_len) for replay, n in zip(self.replays, counts) if n]
        batch: dict[str, Any] = {k: torch.as_tensor(np.concatenate([p[k] for p in parts])) for k in FIELDS}
        batch["env_frames"] = self.counters.env_frames
        batch["wall_time"] = time.time() - self.started
        return batch

    def flush(self) -> None:
        """Writes the pending replay rows to disk (before a checkpoint)."""
        for replay, disk in zip(self.replays, self.disks):
            disk.flush(replay)

    def state_dict(self) -> dict[str, Any]:
        """Counters, evaluation schedule, replay rows up to each actor's current episode, RNG states.

        The actors' unfinished episodes are left out, of the replays and of the counters: a resumed
        actor starts a new episode (a replay holds one stream of whole episodes), and the steps left
        out are collected again, as in sync mode.
        """
        rows = [start if replay.added and not replay.rows(replay.added - 1, replay.added)["is_last"][0] else replay.added
                for replay, start in zip(self.replays, self.episode_start)]
        unfinished = sum(replay.added - n - 1 for replay, n in zip(self.replays, rows) if replay.added > n)  # reset rows are no steps
        counters = Counters(self.counters.env_frames - unfinished * self.cfg.env.action_repeat,
                            self.counters.agent_steps - unfinished, self.counters.episodes)
        return {
            "counters": asdict(counters),
            "finished": self.finished,
            "next_eval": self.next_eval,
            "last_eval": self.last_eval,
            "replay_rows": rows,
            "sample_rng": [self.rng.bit_generator.state] + [replay.rng_state() for replay in self.replays],
            "rng": global_rng_state(),
            "wall_time": time.time() - self.started,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        """Restores a ``state_dict`` (the replays from their chunk files).

        Raises:
            RuntimeError: The replay chunks do not cover the checkpoint.
        """
        self.counters = Counters(**state["counters"])
        self.finished, self.next_eval, self.last_eval = state["finished"], state["next_eval"], state["last_eval"]
        self.started = time.time() - state["wall_time"]
        self.bar.update(self.counters.env_frames)
        for replay, disk, rows in zip(self.replays, self.disks, state["replay_rows"], strict=True):
            disk.restore(replay, rows)
        self.episode_start = [replay.added for replay in self.replays]
        self.rng.bit_generator.state = state["sample_rng"][0]
        for replay, rng in zip(self.replays, state["sample_rng"][1:]):
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
            "async/actor_wait": (sum(self.actor_wait) - self.seen_actor_wait) / len(self.actor_wait) / elapsed,
        }
        self.start(env_frames, updates)
        return rates
