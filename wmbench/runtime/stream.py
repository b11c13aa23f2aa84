"""What every training mode shares: the evaluation env, acting, evaluation, the stream's base and
the one writer of metric rows.

``make_eval_env`` builds the evaluation env (the run's envs and their rows are
``wmbench.runtime.env_pool``'s); ``AgentPolicy`` acts in N envs at once with a ``DreamerModule``'s
posterior and actor, on the module's device; ``evaluate`` runs full episodes; ``StreamBase`` is the
part of the sync
(``wmbench.runtime.sync``) and async (``wmbench.runtime.async_learner``) replay streams that counts
env frames, shows progress, evaluates, hands out batches (read from the replays in a background
thread while the update runs, ``PendingBatch``) and writes every metric row (``log``).
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from lightning.pytorch.loggers import Logger
from torch.utils.data import IterableDataset
from tqdm.auto import tqdm

from wmbench.agents.module import DreamerModule
from wmbench.data.replay import Windows, gather_windows
from wmbench.run_config import RunConfig
from wmbench.runtime.device import rng_devices
from wmbench.runtime.env_pool import EnvSteps, make_run_env
from wmbench.runtime.signals import StopOnSignal
from wmbench.types import Batch, RSSMState

EVAL_ENV_SEED_OFFSET = 1_000_000
"""The evaluation env is seeded ``run seed + EVAL_ENV_SEED_OFFSET`` (the training env: the run
seed)."""


def make_eval_env(cfg: RunConfig) -> gym.Env:
    """The run's evaluation environment, seeded ``cfg.seed + EVAL_ENV_SEED_OFFSET``."""
    return make_run_env(cfg, seed=cfg.seed + EVAL_ENV_SEED_OFFSET)


def eval_episode_seed(seed: int, env_frames: int) -> int:
    """Reset seed of the first episode of the evaluation at ``env_frames`` of a run with ``seed``.

    Every objective's run is evaluated on the same episodes at the same env frames. The first and
    the final evaluation, and the baselines, use ``eval_episode_seed(seed, 0)`` (see
    ``StreamBase``).
    """
    return 10_000 * (seed + 1) + env_frames


def global_rng_state() -> dict[str, Any]:
    """States of the torch (CPU, and each CUDA device in use), numpy and python global
    generators."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state(i) for i in rng_devices()],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_global_rng_state(state: dict[str, Any]) -> None:
    """Restores a ``global_rng_state`` (the CUDA generators where this process has as many CUDA
    devices: a GPU run resumed on the CPU continues with the CPU generator alone)."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda", [])
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() >= len(cuda):
        for i, generator in enumerate(cuda):
            torch.cuda.set_rng_state(generator, i)
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


class AgentPolicy:
    """Acts with the module's posterior and actor in N envs at once (one forward for all), on the
    module's device; keeps each env's recurrent state between calls.

    Args:
        module: the learner's module (its current weights and device act).
        action_dim: A.

    Attributes:
        state: posterior of the last call, ``[N]`` (``None`` before the first).
        prev_action: the last actions, float32 ``[N, A]`` on the module's device.
    """

    def __init__(self, module: DreamerModule, action_dim: int) -> None:
        self.module = module
        self.action_dim = action_dim
        self.state: RSSMState | None = None
        self.prev_action = torch.zeros(1, action_dim)

    def act(self, images: np.ndarray, is_first: np.ndarray, explore: bool) -> np.ndarray:
        """Actions of N envs.

        Args:
            images: uint8 ``[N, 3, 64, 64]``, the envs' current observations (copied to the device
                as uint8).
            is_first: bool ``[N]``: the env's episode starts at this observation (its state and
                previous action start from zeros).
            explore: sample from the actor (plus ``expl_noise``) if true, else its mode.

        Returns:
            float32 ``[N, A]`` in [-1, 1].
        """
        device = self.module.device
        if is_first.all():  # every env starts: as a fresh policy
            self.state, self.prev_action = None, torch.zeros(len(images), self.action_dim)
        was_training = self.module.training
        self.module.eval()
        graphs = self.module.cuda_graphs
        if graphs:  # one CUDA-graph step per act: encoder -> obs_step -> actor in one generation
            torch.compiler.cudagraph_mark_step_begin()
        action, state = self.module.act(
            torch.as_tensor(images).to(device),
            self.prev_action.to(device),
            torch.as_tensor(is_first).to(device),
            self.state,
            explore,
        )
        # CUDA-graph outputs live in the graphs' pool and are overwritten by the next replay (the
        # next act or update): the state carried to the next call must be a copy
        self.state = state.map(torch.clone) if graphs else state
        self.module.train(was_training)
        self.prev_action = action
        return action.cpu().numpy()

    def __call__(self, image: np.ndarray, is_first: bool, explore: bool) -> np.ndarray:
        """The action float32 ``[A]`` in one env for image uint8 ``[3, 64, 64]`` (``act`` with
        N = 1)."""
        return self.act(image[None], np.array([is_first]), explore)[0]

    def state_dict(self) -> dict[str, Any]:
        """The recurrent state and the last actions (tensors as they are; ``load_state_dict``
        moves them to the module's device)."""
        return {
            "state": None if self.state is None else asdict(self.state),
            "prev_action": self.prev_action,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a ``state_dict`` onto the module's device (one written on another device
        too)."""
        device = self.module.device
        saved = state["state"]
        self.state = None if saved is None else RSSMState(
            **{k: None if v is None else v.to(device) for k, v in saved.items()}
        )
        self.prev_action = state["prev_action"].to(device)


def evaluate(
    env: gym.Env, act: Callable[[np.ndarray, bool], np.ndarray], episodes: int, seed: int
) -> float:
    """Mean undiscounted return over ``episodes`` full episodes.

    Repeatable: ``act`` runs with torch's global generator seeded with ``seed`` (the posterior
    samples of ``AgentPolicy``, which with ``explore=False`` takes the actor's mode), inside
    ``torch.random.fork_rng``, so the same weights give the same return and an evaluation leaves
    the training's random stream where it was.

    Args:
        env: evaluation environment.
        act: ``(image, is_first) -> action``.
        episodes: number of episodes (≥ 1).
        seed: reset seed of the first episode (later episodes use seed + i) and torch's seed.
    """
    steps, returns = EnvSteps(env), []
    with torch.random.fork_rng(devices=rng_devices()):
        torch.manual_seed(seed)
        for i in range(episodes):
            steps.reset(seed=seed + i)
            while steps.in_episode:
                steps.step(act(steps.obs, steps.steps == 0))
            returns.append(steps.episode_return)
    return float(np.mean(returns))


class PendingBatch:
    """A batch being read from the replays in the stream's background thread.

    The stream hands it to Lightning in place of the ``Batch``; Lightning moves anything with a
    ``to`` method to the device itself (``lightning.fabric.utilities.apply_func``), so the
    update's ``training_step`` receives the ``Batch``, read while the previous update ran.

    Args:
        future: the thread's result, a ``Batch`` (in page-locked memory when the module is on
            CUDA).
    """

    def __init__(self, future: Future[Batch]) -> None:
        self.future = future

    def to(self, device: torch.device | str, **_: Any) -> Batch:
        """Waits for the batch and returns it on ``device`` (copies from page-locked memory do not
        block; Lightning's other arguments do not apply)."""
        return self.future.result().to(device)


@dataclass
class Counters:
    """Progress counters (see ``wmbench.types`` for their meaning)."""

    env_frames: int = 0
    agent_steps: int = 0
    episodes: int = 0


class StreamBase(IterableDataset):
    """What the sync and async replay streams share: counters, progress bar, evaluation, batches and
    the metric rows.

    Every metric row of a run goes through ``log``: the stream's own (episode returns, evaluations)
    and the module's training rows (``update_done``, called by the runtime after each update with
    what ``DreamerModule.training_step`` returned), each with the ``env_frames`` and ``wall_time``
    (s, all sessions) of when its data was collected: a training row gets those of its batch,
    noted when the batch was handed out (Lightning fetches one batch ahead, so the counters have
    moved on by the time the update ends).

    Batches (``_batch``): the windows are drawn in the stream's thread, in a fixed order with
    collection, and read from the replays in a background thread (``train.prefetch``), so that
    Lightning's fetch of batch k+1, made before update k, returns at once and the rows are copied
    (and page-locked, for a GPU) while update k runs. The replays must not change while a batch is
    read: a stream calls ``_settle`` before it adds rows. The batches are those read without the
    thread.

    Evaluations (``eval/return``, the deterministic policy's mean return): one at 0 env frames
    (the untrained agent) and one when the budget is spent, each over ``train.final_eval_episodes``
    episodes reset with the same seeds, ``eval_episode_seed(seed, 0) + i`` (the zero-action and
    random baselines are scored on these episodes too, ``wmbench.runtime.train.baseline``); between
    them one every ``train.eval_every`` env frames over ``train.eval_episodes`` episodes of their
    own.

    Args:
        cfg: the run's configuration.
        eval_env: evaluation environment (``make_eval_env``).
        module: the learner's module; evaluation acts with its current weights; its ``updates`` is
            the logger step of every row.
        loggers: where the rows go.
        stop: the run's signal handlers: until the session's first batch is handed out, a signal
            stops the stream at its next env step (``stop_if_asked``).
    """

    def __init__(self, cfg: RunConfig, eval_env: gym.Env, module: DreamerModule,
                 loggers: list[Logger], stop: StopOnSignal) -> None:
        self.cfg = cfg
        self.stop = stop
        self.eval_env = eval_env
        self.module = module
        self.eval_policy = AgentPolicy(module, eval_env.action_space.shape[0])
        self.loggers = loggers
        self.counters = Counters()
        self.started = time.time()
        self.next_eval = 0
        self.last_eval: float | None = None
        self.finished = False
        self.batches = 0  # batches handed out (updates started), over all sessions
        self.session_start = 0  # batches handed out when this session's iteration started
        # batch number -> the row values of its update
        self.stamps: dict[int, dict[str, float]] = {}
        self.resume_state: dict[str, Any] | None = None
        self.reader = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="wmbench-batch")
            if cfg.train.prefetch else None
        )
        self.reading: Future[Batch] | None = None
        self.bar = tqdm(
            total=cfg.train.env_frames,
            unit="frame",
            desc=f"{cfg.objective} {cfg.env.task} s{cfg.seed}",
            disable=not cfg.train.progress,
            dynamic_ncols=True,
            mininterval=0.5 if sys.stderr.isatty() else 30.0,
        )

    def _stamp(self) -> dict[str, float]:
        return {
            "env_frames": float(self.counters.env_frames),
            "wall_time": time.time() - self.started,
        }

    def log(self, metrics: dict[str, float], stamp: dict[str, float] | None = None) -> None:
        """Writes one metrics row to every logger at step ``module.updates``: ``metrics`` plus
        ``stamp`` (default: the current ``env_frames`` and ``wall_time``), flushed at once, so
        ``metrics.csv`` grows while the run trains (a row is an append: one per ``log_every``
        updates, plus episodes and evaluations)."""
        row = {**metrics, **(self._stamp() if stamp is None else stamp)}
        for logger in self.loggers:
            logger.log_metrics(row, step=self.module.updates)
            logger.save()

    def _batch(
        self, windows: Windows, extra: dict[str, float] | None = None
    ) -> Batch | PendingBatch:
        """Hands out the next batch, the rows of ``windows`` (a ``PendingBatch`` read in the
        background thread with ``train.prefetch``); notes its stamp (and ``extra`` values for its
        update's row)."""
        self.batches += 1
        self.stamps[self.batches] = self._stamp() | (extra or {})
        if self.reader is None:
            return self._read(windows)
        self.reading = self.reader.submit(self._read, windows)
        return PendingBatch(self.reading)

    def _read(self, windows: Windows) -> Batch:
        """The batch of ``windows``, page-locked when the module is on CUDA (its copy to the GPU
        then does not block)."""
        batch = Batch.from_arrays(gather_windows(windows))
        return batch.pin_memory() if self.module.device.type == "cuda" else batch

    def _settle(self) -> None:
        """Waits until the batch being read (if any) is read: called before rows are added to the
        replays. Raises what reading it raised."""
        if self.reading is not None:
            reading, self.reading = self.reading, None
            reading.result()

    def update_done(self, row: dict[str, float] | None) -> None:
        """After update ``module.updates``: writes its metrics ``row`` (if it logs) with its batch's
        stamp."""
        stamp = self.stamps.pop(self.module.updates)
        if row is not None:
            self.log(row, stamp)

    def _stop_if_asked(self) -> None:
        """Raises ``RunInterrupted`` if a signal came before this session handed out a batch (later
        ones are handled at the end of the update in progress, by ``RunCheckpoint``)."""
        if self.batches == self.session_start:
            self.stop.check()

    def _episode_done(self, episode_return: float) -> None:
        self.counters.episodes += 1
        self.log(
            {
                "train/episode_return": episode_return,
                "train/episodes": float(self.counters.episodes),
            }
        )
        self.bar.set_postfix(ret=f"{episode_return:.1f}", eval=self.last_eval)

    def _count_step(self) -> None:
        """Counts one collected agent step."""
        self.counters.env_frames += self.cfg.env.action_repeat
        self.counters.agent_steps += 1
        self.bar.update(self.cfg.env.action_repeat)

    def _maybe_evaluate(self, force: bool = False) -> None:
        frames, t = self.counters.env_frames, self.cfg.train
        if frames < self.next_eval and not force:
            return
        first_or_last = frames == 0 or frames >= t.env_frames
        self.last_eval = evaluate(
            self.eval_env,
            lambda obs, first: self.eval_policy(obs, first, explore=False),
            t.final_eval_episodes if first_or_last else t.eval_episodes,
            seed=eval_episode_seed(self.cfg.seed, 0 if first_or_last else frames),
        )
        self.log({"eval/return": self.last_eval})
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

    def flush(self) -> None:
        """Writes the pending replay rows to disk (before a checkpoint)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the stream (taken between two batches; see subclasses)."""
        raise NotImplementedError

    def _stream_state(self, counters: Counters) -> dict[str, Any]:
        """The part of both streams' ``state_dict``: ``counters``, batches handed out, evaluation
        schedule, global RNG states, wall time."""
        return {
            "counters": asdict(counters),
            "batches": self.batches,
            "finished": self.finished,
            "next_eval": self.next_eval,
            "last_eval": self.last_eval,
            "rng": global_rng_state(),
            "wall_time": time.time() - self.started,
        }

    def _restore_stream_state(self, state: dict[str, Any]) -> None:
        """Restores what ``_stream_state`` saved, except the global RNG states (restored last, by
        the caller)."""
        self.counters = Counters(**state["counters"])
        self.batches = state["batches"]
        self.finished, self.next_eval, self.last_eval = (
            state["finished"],
            state["next_eval"],
            state["last_eval"],
        )
        self.started = time.time() - state["wall_time"]
        self.bar.update(self.counters.env_frames)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Keeps ``state`` to be restored when iteration starts (the env and replay are rebuilt
        then)."""
        self.resume_state = state

    def close(self) -> None:
        """Releases what the stream holds (progress bar, reading thread, envs, processes)."""
        if self.reader is not None:
            self.reader.shutdown(cancel_futures=True)
        self.bar.close()
        self.eval_env.close()
