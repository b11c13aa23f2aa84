"""Synchronous training: collect env steps, then update, at a fixed train ratio.

The Lightning Trainer drives the updates; its data loader is ``ReplayStream``, an ``IterableDataset``
that, before yielding each replayed batch, steps the environment until the train ratio is met:

    train_ratio = replayed agent steps / collected agent steps   (each update replays B·T steps)

so one update is due every ``B·T / train_ratio`` collected agent steps. The stream ends when the
budget of ``env_frames`` is spent, which ends Lightning's single epoch. Everything runs in one process
(``num_workers=0``), so the same seed gives the same run.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import lightning as L
import numpy as np
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger
from torch.utils.data import DataLoader, IterableDataset
from tqdm.auto import tqdm

from wmbench.agents.module import DreamerModule
from wmbench.config import from_dict, to_dict
from wmbench.envs import check_task, make_env
from wmbench.objectives import registry
from wmbench.replay import Replay
from wmbench.runtime.config import RunConfig
from wmbench.types import RSSMState

def prepare(cfg: RunConfig) -> tuple[type, Any]:
    """Resolve and validate the objective before any compute.

    Returns:
        ``(objective_cls, objective_config)``.

    Raises:
        wmbench.objectives.UnknownObjectiveError: unknown objective name (lists the available ones).
        wmbench.config.ConfigError: bad ``objective_config`` keys or types.
        ValueError: unknown task (see ``wmbench.envs.check_task``).
    """
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


class ReplayStream(IterableDataset):
    """Collect-then-replay stream feeding the Lightning Trainer (see the module docstring).

    Yields dicts of torch tensors ``image`` uint8 ``[B, T, 3, 64, 64]``, ``prev_action`` ``[B, T, A]``,
    ``reward`` ``[B, T]``, ``is_first``/``is_terminal``/``is_last`` bool ``[B, T]``, plus ``env_frames``
    (int) and ``wall_time`` (seconds since the run started) for logging.
    """

    def __init__(self, cfg: RunConfig, env: gym.Env, eval_env: gym.Env, module: DreamerModule, log: Callable[[dict], None]) -> None:
        self.cfg = cfg
        self.env = env
        self.eval_env = eval_env
        self.policy = AgentPolicy(module, env.action_space.shape[0])
        self.eval_policy = AgentPolicy(module, env.action_space.shape[0])
        self.log = log
        self.replay = Replay(cfg.train.replay_capacity, env.observation_space.shape, env.action_space.shape[0], seed=cfg.seed)
        self.counters = Counters()
        self.started = time.time()
        self.episode_return = 0.0
        self.obs: np.ndarray | None = None
        self.is_first = True
        self.next_eval = 0
        self.last_eval: float | None = None
        self.bar = tqdm(
            total=cfg.train.env_frames,
            unit="frame",
            desc=f"{cfg.objective} {cfg.env.task} s{cfg.seed}",
            disable=not cfg.train.progress,
            dynamic_ncols=True,
            mininterval=0.5 if sys.stderr.isatty() else 30.0,
        )

    def _reset(self) -> None:
        # make_env seeded the env with the run's seed; later episodes continue its random stream.
        self.obs, _ = self.env.reset()
        self.replay.add(self.obs, np.zeros(self.env.action_space.shape, np.float32), 0.0, True, False, False)
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
        self.counters.env_frames += self.cfg.env.action_repeat
        self.counters.agent_steps += 1
        self.bar.update(self.cfg.env.action_repeat)
        self.episode_return += float(reward)
        last = terminated or truncated
        self.replay.add(obs, np.asarray(action, np.float32), float(reward), False, terminated, last)
        self.obs, self.is_first = obs, False
        if last:
            self.counters.episodes += 1
            self._log({"train/episode_return": self.episode_return, "train/episodes": float(self.counters.episodes)})
            self.bar.set_postfix(ret=f"{self.episode_return:.1f}", eval=self.last_eval)
            self.obs = None

    def _log(self, metrics: dict[str, float]) -> None:
        self.log({**metrics, "env_frames": float(self.counters.env_frames), "wall_time": time.time() - self.started})

    def _maybe_evaluate(self, force: bool = False) -> None:
        if self.counters.env_frames < self.next_eval and not force:
            return
        t = self.cfg.train
        self.last_eval = evaluate(
            self.eval_env,
            lambda obs, first: self.eval_policy(obs, first, explore=False),
            t.eval_episodes,
            seed=10_000 * (self.cfg.seed + 1) + self.counters.env_frames,
        )
        self._log({"eval/return": self.last_eval})
        self.next_eval = self.counters.env_frames + t.eval_every

    def __iter__(self) -> Iterator[dict[str, Any]]:
        t = self.cfg.train
        per_step = t.train_ratio / (t.batch_size * t.seq_len)
        self.env.action_space.seed(self.cfg.seed)
        self._maybe_evaluate()
        while self.counters.env_frames < min(t.learning_starts, t.env_frames):
            self._collect_step(random=True)
        credit = 0.0
        while True:
            while credit < 1.0:
                if self.counters.env_frames >= t.env_frames:
                    if self.next_eval - t.eval_every < self.counters.env_frames:
                        self._maybe_evaluate(force=True)
                    self.bar.close()
                    return
                self._collect_step(random=False)
                credit += per_step
                self._maybe_evaluate()
            credit -= 1.0
            batch = {k: torch.as_tensor(v) for k, v in self.replay.sample(t.batch_size, t.seq_len).items()}
            batch["env_frames"] = self.counters.env_frames
            batch["wall_time"] = time.time() - self.started
            yield batch


def _make_loggers(cfg: RunConfig, run_dir: Path) -> list[Logger]:
    """CSV always (the result store reads ``metrics.csv``); wandb in offline mode when asked."""
    loggers: list[Logger] = [CSVLogger(save_dir=str(run_dir), name="", version="")]
    if cfg.train.logger == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(WandbLogger(save_dir=str(run_dir), project="wmbench", name=run_dir.name, offline=True))
    return loggers


def write_status(run_dir: Path, status: str, **info: Any) -> None:
    """Write ``run_dir/status.json``: ``{"status": status, **info}``."""
    (run_dir / "status.json").write_text(json.dumps({"status": status, **info}, indent=2))


def train(cfg: RunConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train one agent synchronously and write its results into ``run_dir``.

    Writes ``config.yaml`` (resolved), ``metrics.csv`` (Lightning CSV logger: ``train/*`` every
    ``agent.log_every`` updates, ``train/episode_return`` per episode and ``eval/return`` at every
    evaluation, each row with ``env_frames`` and ``wall_time`` in seconds), ``checkpoints/last.ckpt``
    and ``status.json`` (``done`` with the summary, or ``failed`` with the error).

    Args:
        cfg: the run's configuration.
        run_dir: output directory (created).

    Returns:
        The summary: final ``eval_return``, ``env_frames``, ``agent_steps``, ``updates``,
        ``wall_time`` (s), ``cpu_time`` (s, this process).

    Raises:
        UnknownObjectiveError, ConfigError, ValueError: invalid configuration, before any compute.
        RendererUnavailableError: no headless OpenGL backend for dm_control.
    """
    objective_cls, objective_cfg = prepare(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    write_status(run_dir, "running")
    try:
        summary = _train(cfg, run_dir, objective_cls, objective_cfg)
    except BaseException as err:
        write_status(run_dir, "failed", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc())
        raise
    write_status(run_dir, "done", **summary)
    return summary


def _train(cfg: RunConfig, run_dir: Path, objective_cls: type, objective_cfg: Any) -> dict[str, Any]:
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    started, cpu_started = time.time(), time.process_time()
    env_kwargs = dict(image_size=cfg.env.image_size, action_repeat=cfg.env.action_repeat, render_quality=cfg.env.render_quality)
    env = make_env(cfg.env.task, seed=cfg.seed, **env_kwargs)
    eval_env = make_env(cfg.env.task, seed=cfg.seed + 1_000_000, **env_kwargs)
    module = DreamerModule(cfg.agent, env.observation_space.shape, env.action_space.shape[0], objective_cls, objective_cfg)
    loggers = _make_loggers(cfg, run_dir)

    def log(metrics: dict[str, float]) -> None:
        for logger in loggers:
            logger.log_metrics(metrics, step=module.updates)

    stream = ReplayStream(cfg, env, eval_env, module, log)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision=cfg.train.precision,
        max_epochs=1,
        logger=loggers,
        callbacks=[ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True, save_top_k=0)],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=True,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.fit(module, train_dataloaders=DataLoader(stream, batch_size=None))
    env.close()
    eval_env.close()
    if stream.last_eval is None or not math.isfinite(stream.last_eval):
        raise RuntimeError(f"run in {run_dir} ended without a finite evaluation return")
    return {
        "eval_return": stream.last_eval,
        "env_frames": stream.counters.env_frames,
        "agent_steps": stream.counters.agent_steps,
        "updates": module.updates,
        "wall_time": time.time() - started,
        "cpu_time": time.process_time() - cpu_started,
        "params": sum(p.numel() for p in module.parameters() if p.requires_grad),  # trainable: world model, objective, actor, critic
    }


def random_baseline(cfg: RunConfig, run_dir: str | Path) -> float:
    """Evaluate a uniform random policy on ``cfg.env`` and store it as a run of objective ``random``.

    Episodes reset with the seeds of a trained run's first evaluation (``10_000 * (seed + 1)``
    onwards) in an environment seeded like its evaluation environment. Writes ``config.yaml``,
    ``metrics.csv`` (one ``eval/return`` row at 0 env frames) and ``status.json``.

    Returns:
        Mean return over ``cfg.train.eval_episodes`` episodes.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    env = make_env(cfg.env.task, seed=cfg.seed + 1_000_000, image_size=cfg.env.image_size,
                   action_repeat=cfg.env.action_repeat, render_quality=cfg.env.render_quality)
    env.action_space.seed(cfg.seed)
    value = evaluate(env, lambda obs, first: env.action_space.sample(), cfg.train.eval_episodes, seed=10_000 * (cfg.seed + 1))
    env.close()
    data = to_dict(cfg)
    data["objective"] = "random"
    (run_dir / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (run_dir / "metrics.csv").write_text(f"env_frames,wall_time,eval/return\n0,{time.time() - started},{value}\n")
    write_status(run_dir, "done", eval_return=value)
    return value
