"""Synchronous training: collect env steps, then update, at a fixed train ratio.

The Lightning Trainer drives the updates; its data loader is ``ReplayStream``, an ``IterableDataset``
that, before yielding each replayed batch, steps the environment until the train ratio is met:

    train_ratio = replayed agent steps / collected agent steps   (each update replays B·T steps)

so one update is due every ``B·T / train_ratio`` collected agent steps. The stream ends when the
budget of ``env_frames`` is spent, which ends Lightning's single epoch. Everything runs in one process
(``num_workers=0``), so the same seed gives the same run; the replay's rows go to disk as they come
(``wmbench.data.replay_disk``) and checkpoints hold the stream's whole state
(``wmbench.runtime.checkpoint``), so a killed run resumes to the same end.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gymnasium as gym
import lightning as L
import numpy as np
import torch
import yaml
from lightning.pytorch.loggers import CSVLogger, Logger
from torch.utils.data import DataLoader

from wmbench.agents.module import DreamerModule, NonFiniteLossError
from wmbench.configio import ConfigError, from_dict, to_dict
from wmbench.envs import check_task
from wmbench.objectives import registry
from wmbench.data.replay import Replay
from wmbench.data.replay_disk import ReplayDisk
from wmbench.runtime.checkpoint import (
    CHECKPOINT,
    AtomicCheckpointIO,
    RunCheckpoint,
    check_run_dir,
    continue_csv,
    set_global_rng_state,
)
from wmbench.run_config import RunConfig
from wmbench.runtime.stream import (
    AgentPolicy,
    StreamBase,
    eval_episode_seed,
    evaluate,
    make_eval_env,
    make_run_env,
)
from wmbench.types import RSSMState


def prepare(cfg: RunConfig) -> tuple[type, Any]:
    """Resolve and validate the objective before any compute.

    Returns:
        ``(objective_cls, objective_config)``.

    Raises:
        wmbench.objectives.UnknownObjectiveError: unknown objective name (lists the available ones).
        wmbench.configio.ConfigError: bad ``objective_config`` keys or types; ``train.actors`` > 1 in sync mode.
        ValueError: unknown task (see ``wmbench.envs.check_task``).
    """
    if cfg.train.actors > 1 and cfg.train.mode == "sync":
        raise ConfigError(f"train.actors={cfg.train.actors} needs train.mode=async (sync mode steps one env): "
                          "set train.mode=async (--mode async) or train.actors=1")
    cls = registry.get(cfg.objective)
    obj_cfg = from_dict(cls.Config, cfg.objective_config, where="objective_config")
    check_task(cfg.env.task)
    return cls, obj_cfg


def quiet_libraries() -> None:
    """Keep the terminal for wmbench's progress: Lightning's banners and tips go to WARNING."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("lightning"):
            logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*treespec.*")
    warnings.filterwarnings("ignore", message=".*exists and is not empty.*")


class ReplayStream(StreamBase):
    """Collect-then-replay stream feeding the Lightning Trainer (see the module docstring).

    Yields dicts of torch tensors ``image`` uint8 ``[B, T, 3, 64, 64]``, ``prev_action`` ``[B, T, A]``,
    ``reward`` ``[B, T]``, ``is_first``/``is_terminal``/``is_last`` bool ``[B, T]``, plus ``env_frames``
    (int) and ``wall_time`` (seconds of training, summed over resumed sessions) for logging.

    Every replay row also goes to ``replay_disk`` (chunk files, see ``wmbench.data.replay_disk``).
    ``state_dict``/``load_state_dict`` make the stream resumable exactly; see ``state_dict``.
    """

    def __init__(
        self, cfg: RunConfig, env: gym.Env, eval_env: gym.Env, module: DreamerModule, log: Callable[[dict], None], replay_dir: Path
    ) -> None:
        super().__init__(cfg, eval_env, module, log)
        self.env = env
        self.policy = AgentPolicy(module, env.action_space.shape[0])
        self.replay = Replay(cfg.train.replay_capacity, env.observation_space.shape, env.action_space.shape[0], seed=cfg.seed)
        self.replay_disk = ReplayDisk(replay_dir, cfg.train.replay_chunk)
        self.episode_return = 0.0
        self.obs: np.ndarray | None = None
        self.is_first = True
        self.credit = 0.0  # train-ratio credit: updates due, carried between batches and across resumes
        self.episode_rng: dict[str, Any] | None = None  # env generator state before the episode's reset
        self.episode_actions: list[np.ndarray] = []
        self.sample_rng: dict[str, Any] | None = None  # replay sampler state before the last batch

    @property
    def replay_rows(self) -> int:
        return self.replay.added

    def close(self) -> None:
        super().close()
        self.env.close()

    def _add(self, *row: Any) -> None:
        self.replay.add(*row)
        self.replay_disk.maybe_flush(self.replay)

    def _reset(self) -> None:
        # make_env seeded the env with the run's seed; later episodes continue its random stream.
        self.episode_rng, self.episode_actions = self.env.unwrapped.rng_state(), []
        self.obs, _ = self.env.reset()
        self._add(self.obs, np.zeros(self.env.action_space.shape, np.float32), 0.0, True, False, False)
        self.is_first = True
        self.episode_return = 0.0

    def _collect_step(self, random: bool) -> None:
        if self.obs is None:
            self._reset()
        if random:
            action = self.env.action_space.sample()
        else:
            action = self.policy(self.obs, self.is_first, explore=True)
        obs, reward, terminated, truncated, _ = self.env.step(action)
        self.episode_actions.append(np.asarray(action, np.float32))
        self.counters.env_frames += self.cfg.env.action_repeat
        self.counters.agent_steps += 1
        self.bar.update(self.cfg.env.action_repeat)
        self.episode_return += float(reward)
        last = terminated or truncated
        self._add(obs, np.asarray(action, np.float32), float(reward), False, terminated, last)
        self.obs, self.is_first = obs, False
        if last:
            self._episode_done(self.episode_return)
            self.obs = None

    def _sample(self) -> dict[str, Any]:
        t = self.cfg.train
        self.sample_rng = self.replay.rng_state()
        return self._stamped({k: torch.as_tensor(v) for k, v in self.replay.sample(t.batch_size, t.seq_len).items()})

    def _next_batch(self) -> dict[str, Any] | None:
        """Collects until an update is due and samples its batch; ``None`` once the budget is spent."""
        t = self.cfg.train
        per_step = t.train_ratio / (t.batch_size * t.seq_len)
        while self.credit < 1.0:
            if self.counters.env_frames >= t.env_frames:
                self._finish()
                return None
            self._collect_step(random=False)
            self.credit += per_step
            self._maybe_evaluate()
        self.credit -= 1.0
        return self._sample()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.resume_state is not None:
            if self._restore(self.resume_state):
                yield self._sample()  # the batch Lightning had fetched ahead when the checkpoint was taken
            self.resume_state = None
        elif not self.finished:
            t = self.cfg.train
            self.env.action_space.seed(self.cfg.seed)
            self._maybe_evaluate()
            while self.counters.env_frames < min(t.learning_starts, t.env_frames):
                self._collect_step(random=True)
        while not self.finished and (batch := self._next_batch()) is not None:
            yield batch

    def flush(self) -> None:
        """Writes the pending replay rows to disk (before a checkpoint)."""
        self.replay_disk.flush(self.replay)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the stream exactly (taken between two yields).

        Holds the counters, train-ratio credit, evaluation schedule, replay row count and sampler
        state (as it was before the batch just yielded, which ``load_state_dict`` makes the first batch
        again), the acting policy's recurrent state, the global RNG states and the env: its generator
        state before the current episode's reset and the episode's actions. The env is not pickled:
        on resume a fresh env replays the episode, which is exact for ``toy:reach`` and for dm_control on
        the same machine and MuJoCo build (checked: the replayed last frame must equal the stored one).
        """
        return self._stream_state(self.counters) | {
            "credit": self.credit,
            "episode_return": self.episode_return,
            "is_first": self.is_first,
            "in_episode": self.obs is not None,
            "episode_rng": self.episode_rng if self.obs is not None else self.env.unwrapped.rng_state(),
            "episode_actions": np.stack(self.episode_actions) if self.episode_actions else None,
            "action_space_rng": self.env.action_space.np_random.bit_generator.state,
            "replay_rows": self.replay.added,
            "sample_rng": self.sample_rng,
            "policy": {"state": None if self.policy.state is None else asdict(self.policy.state), "prev_action": self.policy.prev_action},
        }

    def _restore(self, state: dict[str, Any]) -> bool:
        """Restores a ``state_dict``; returns whether a batch was pending (to be sampled again).

        Raises:
            RuntimeError: The replay chunks do not cover the checkpoint, or the env did not reproduce
                the current episode.
        """
        self._restore_stream_state(state)
        self.credit, self.episode_return, self.is_first = state["credit"], state["episode_return"], state["is_first"]
        self.replay_disk.restore(self.replay, state["replay_rows"])
        self.env.action_space.np_random.bit_generator.state = state["action_space_rng"]
        self.env.unwrapped.set_rng_state(state["episode_rng"])
        self.obs = None
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
        self.obs, _ = self.env.reset()
        for action in [] if actions is None else actions:
            self.obs, *_ = self.env.step(action)
            self.episode_actions.append(action)
        stored = self.replay.rows(self.replay.added - 1, self.replay.added)["image"][0]
        if not np.array_equal(self.obs, stored):
            raise RuntimeError(
                f"{self.cfg.env.task} did not reproduce its episode on resume (the frame after "
                f"{len(self.episode_actions)} replayed actions differs from the stored one); the env is not "
                "deterministic on this machine, so this run cannot be resumed exactly: start it over"
            )


def _make_loggers(cfg: RunConfig, run_dir: Path, resume: dict[str, Any] | None) -> list[Logger]:
    """CSV always (the result store reads ``metrics.csv``); wandb in offline mode when asked.

    With ``resume`` (the ``RunCheckpoint`` state of a checkpoint) both continue the checkpoint's run:
    the CSV after its rows, wandb under its run id.
    """
    csv_logger = CSVLogger(save_dir=str(run_dir), name="", version="")
    if resume is not None:
        continue_csv(csv_logger, resume["metrics_rows"])
    loggers: list[Logger] = [csv_logger]
    if cfg.train.logger == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        wandb_id = resume and resume["wandb_id"]
        loggers.append(WandbLogger(save_dir=str(run_dir), project="wmbench", name=run_dir.name, offline=True,
                                   id=wandb_id, resume="allow" if wandb_id else None))
    return loggers


def write_status(run_dir: Path, status: str, **info: Any) -> None:
    """Write ``run_dir/status.json``: ``{"status": status, **info}``."""
    (run_dir / "status.json").write_text(json.dumps({"status": status, **info}, indent=2))


def train(cfg: RunConfig, run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train one agent and write its results into ``run_dir``.

    ``cfg.train.mode`` picks how: ``sync`` (this module: collect, then update, in one process) or
    ``async`` (actor processes act while this process trains; see ``wmbench.runtime.async_learner``,
    which also says what its resume keeps: not bit-exact). Both write the same files and the same
    metrics columns (async adds ``async/*``; its replay lives in ``replay/actor-<i>/``).

    Writes ``config.yaml`` (resolved), ``metrics.csv`` (Lightning CSV logger: ``train/*`` every
    ``agent.log_every`` updates, ``train/episode_return`` per episode and ``eval/return`` at every
    evaluation, each row with ``env_frames`` and ``wall_time`` in seconds), ``replay/`` (the replay's
    rows in chunk files, see ``wmbench.data.replay_disk``), ``checkpoints/last.ckpt`` (every
    ``train.checkpoint_every`` env frames and at the end; see ``wmbench.runtime.checkpoint``) and
    ``status.json`` (``running``; ``done`` with the summary; or ``failed`` with the error).

    Resuming continues from the checkpoint with its counters, replay, RNG states and train-ratio
    credit, and appends to ``metrics.csv`` after the rows it had written: on CPU the run ends with
    the same parameters and metrics as one never stopped (``wall_time`` aside). A run directory without
    a checkpoint (killed before the first one) starts over.

    Args:
        cfg: the run's configuration.
        run_dir: output directory (created).
        resume: continue the run in ``run_dir`` from its checkpoint.

    Returns:
        The summary: final ``eval_return``, ``env_frames``, ``agent_steps``, ``updates``,
        ``replay_rows`` (rows ever added to the replay, all on disk), ``wall_time`` (s, all sessions),
        ``cpu_time`` (s, this process).

    Raises:
        UnknownObjectiveError, ConfigError, ValueError: invalid configuration or run directory (see
            ``wmbench.runtime.checkpoint.check_run_dir``), before any compute.
        RendererUnavailableError: no headless OpenGL backend for dm_control.
        NonFiniteLossError: a loss or gradient norm became NaN or infinite; names the update, the
            values and the last good checkpoint (also in ``status.json``).
        wmbench.runtime.async_learner.ActorError: async mode: an actor process failed (its traceback
            in the message and in ``status.json``).
    """
    objective_cls, objective_cfg = prepare(cfg)
    run_dir = Path(run_dir)
    checkpoint = check_run_dir(cfg, run_dir, resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    if checkpoint is None:  # start over: nothing of an earlier attempt may leak into this one
        shutil.rmtree(run_dir / "replay", ignore_errors=True)
        for name in ("metrics.csv", "metrics.csv.kept"):
            (run_dir / name).unlink(missing_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    write_status(run_dir, "running")
    try:
        summary = _train(cfg, run_dir, objective_cls, objective_cfg, checkpoint)
    except BaseException as err:
        info = {"updates": err.updates, "non_finite": err.names, "last_checkpoint": err.last_checkpoint} if isinstance(err, NonFiniteLossError) else {}
        write_status(run_dir, "failed", error=f"{type(err).__name__}: {err}", **info, traceback=traceback.format_exc())
        raise
    write_status(run_dir, "done", **summary)
    return summary


def _train(cfg: RunConfig, run_dir: Path, objective_cls: type, objective_cfg: Any, checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    cpu_started = time.process_time()
    eval_env = make_eval_env(cfg)
    module = DreamerModule(cfg.agent, eval_env.observation_space.shape, eval_env.action_space.shape[0], objective_cls, objective_cfg)
    resume = None if checkpoint is None else checkpoint["callbacks"][RunCheckpoint.__qualname__]
    if resume is not None:
        logging.getLogger("wmbench").info(
            "resuming %s at update %d, %d env frames", run_dir, checkpoint["wmbench_updates"], resume["stream"]["counters"]["env_frames"]
        )
    loggers = _make_loggers(cfg, run_dir, resume)

    def log(metrics: dict[str, float]) -> None:
        for logger in loggers:
            logger.log_metrics(metrics, step=module.updates)

    if cfg.train.mode == "async":
        from wmbench.runtime.async_learner import AsyncReplayStream  # imports this module

        stream: StreamBase = AsyncReplayStream(cfg, eval_env, module, log, run_dir / "replay")
    else:
        stream = ReplayStream(cfg, make_run_env(cfg, seed=cfg.seed), eval_env, module, log, run_dir / "replay")
    checkpointer = RunCheckpoint(stream, run_dir / CHECKPOINT, cfg.train.checkpoint_every)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision=cfg.train.precision,
        max_epochs=1,
        logger=loggers,
        callbacks=[checkpointer],
        plugins=[AtomicCheckpointIO()],
        enable_checkpointing=False,  # RunCheckpoint writes the checkpoints
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=True,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        try:
            trainer.fit(module, train_dataloaders=DataLoader(stream, batch_size=None),
                        ckpt_path=None if checkpoint is None else run_dir / CHECKPOINT, weights_only=False)
        except NonFiniteLossError as err:
            raise NonFiniteLossError(err.updates, err.names, checkpointer.last) from None
        finally:
            stream.close()
    if stream.last_eval is None or not math.isfinite(stream.last_eval):
        raise RuntimeError(f"run in {run_dir} ended without a finite evaluation return")
    return {
        "eval_return": stream.last_eval,
        "env_frames": stream.counters.env_frames,
        "agent_steps": stream.counters.agent_steps,
        "updates": module.updates,
        "replay_rows": stream.replay_rows,
        "wall_time": time.time() - stream.started,
        "cpu_time": time.process_time() - cpu_started,
        "params": sum(p.numel() for p in module.parameters() if p.requires_grad),  # trainable: world model, objective, actor, critic
    }


def random_baseline(cfg: RunConfig, run_dir: str | Path) -> float:
    """Evaluate a uniform random policy on ``cfg.env`` and store it as a run of objective ``random``.

    Episodes reset with the seeds of a trained run's first evaluation (``eval_episode_seed``) in
    the run's evaluation environment (``make_eval_env``). Writes ``config.yaml``,
    ``metrics.csv`` (one ``eval/return`` row at 0 env frames) and ``status.json``.

    Returns:
        Mean return over ``cfg.train.eval_episodes`` episodes.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    env = make_eval_env(cfg)
    env.action_space.seed(cfg.seed)
    value = evaluate(env, lambda obs, first: env.action_space.sample(), cfg.train.eval_episodes, seed=eval_episode_seed(cfg.seed, 0))
    env.close()
    data = to_dict(cfg)
    data["objective"] = "random"
    (run_dir / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (run_dir / "metrics.csv").write_text(f"env_frames,wall_time,eval/return\n0,{time.time() - started},{value}\n")
    write_status(run_dir, "done", eval_return=value)
    return value
