"""The configuration of one run (environment, agent, training schedule, objective, seed) and its
resolution before any compute.

Every component receives its own sub-config; this file composes them. Load with
``wmbench.configio.from_dict(RunConfig, mapping)`` and override with dotted keys
(``wmbench.configio.with_overrides(cfg, ["agent.world_model.rssm.deter=200"])``); ``prepare``
resolves the objective and checks the task. Imports no torch: the command line, the suite planner
and the report read configurations cheaply.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from wmbench.agents.config import SUPPORTED_IMAGE_SIZE, AgentConfig
from wmbench.configio import ConfigError
from wmbench.runtime.schedule import RatioSchedule


@dataclass(frozen=True)
class EnvConfig:
    """Environment settings.

    Attributes:
        task: ``dmc:<domain>-<task>`` (dm_control pixels; append ``?background=video`` for the
            distracting video background, see ``wmbench.envs.backgrounds``) or ``toy:reach``
            (tests only).
        image_size: square image side in pixels; Dreamer's conv encoder/decoder need 64.
        action_repeat: physics steps per agent step; rewards are summed over them.
        render_quality: ``standard`` (dm_control's pixels, as in the papers) or ``fast`` (no shadow
            map, no multisampling, one reused camera: several times faster on CPU, other pixels).
    """

    task: str = "dmc:cartpole-balance"
    image_size: int = 64
    action_repeat: int = 2
    render_quality: Literal["standard", "fast"] = "standard"

    def __post_init__(self) -> None:
        if self.image_size != SUPPORTED_IMAGE_SIZE:
            raise ValueError(
                f"env.image_size={self.image_size} is not supported: Dreamer's conv encoder and "
                f"decoder need {SUPPORTED_IMAGE_SIZE}x{SUPPORTED_IMAGE_SIZE} images; set "
                f"env.image_size={SUPPORTED_IMAGE_SIZE}"
            )
        if self.action_repeat < 1:
            raise ValueError(f"env.action_repeat must be >= 1, got {self.action_repeat}")


@dataclass(frozen=True)
class TrainConfig:
    """Schedule of a run. Frames are env frames (physics steps incl. action repeat).

    Attributes:
        env_frames: budget of env frames to collect.
        learning_starts: env frames collected with uniform random actions before the first update.
        train_ratio: replayed agent steps per collected agent step (DreamerV3's train ratio); one
            update replays ``batch_size * seq_len`` steps.
        batch_size: B sequences per batch.
        seq_len: T steps per sequence.
        replay_capacity: replay size in agent steps (FIFO eviction beyond).
        eval_every: env frames between evaluations (deterministic policy); also one at 0 and at
            the end.
        eval_episodes: episodes per evaluation between the first and the last.
        final_eval_episodes: episodes of the evaluation at 0 env frames (the untrained agent) and
            of the final one: the same episodes for both (seeded), on which the zero-action and
            random baselines are scored too (10).
        threads: torch intra-op threads; 0 keeps torch's default (in async mode the learner then
            leaves one core to each actor; actors use one thread each).
        accelerator: where the updates, imagination and acting compute: ``cuda`` (one GPU; an error
            before compute where none is usable), ``cpu``, or ``auto`` (default: ``cuda`` where a
            GPU is usable, else ``cpu``). Not part of what a run is: a run resumes on another
            accelerator (``wmbench train --resume RUN --set train.accelerator=cpu``). See
            ``wmbench.runtime.device``.
        precision: arithmetic of the updates: ``32-true`` (fp32), ``tf32`` (fp32 with TF32 matrix
            products; CUDA only), ``bf16-mixed`` (bfloat16 autocast, with TF32 for what autocast
            keeps in fp32 on CUDA) or ``auto`` (default: ``bf16-mixed`` on a GPU with native
            bfloat16, else ``32-true``, on every CPU; a resumed run keeps the precision it started
            with). See ``wmbench.runtime.device``.
        compile: ``torch.compile`` the networks and the RSSM's one-step functions (the world
            model's filtering and the imagination rollout) before training: the same maths, fused
            kernels; the first updates wait for the compilation (seconds to minutes). CPU (needs a
            C++ compiler) or CUDA.
        compile_mode: ``default`` or ``reduce-overhead`` (CUDA graphs of the compiled functions;
            CUDA only; experimental).
        prefetch: read each replayed batch from the replays (and page-lock it, on CUDA) in a
            background thread while the previous update runs (default); the same batches as
            without it. See ``wmbench.runtime.stream.StreamBase``.
        logger: ``csv`` (Lightning CSVLogger) or ``wandb`` (offline, no login).
        progress: show a progress bar over env frames.
        checkpoint_every: env frames between checkpoints (``checkpoints/last.ckpt``, also written at
            the end); a killed run resumes from the last one.
        replay_chunk: agent steps per replay chunk file (``replay/``); at most ``replay_capacity``
            (in async mode, at most each actor's share of it).
        mode: ``sync`` (collect, then update, in one process: deterministic, see
            ``wmbench.runtime.sync``) or ``async`` (DayDreamer's split: actor processes step their
            envs while the learner trains, the train ratio held by a rate limiter; see
            ``wmbench.runtime.async_learner``).
        actors: actor processes in async mode, each with its own env and a replay of
            ``replay_capacity // actors`` steps; must be 1 in sync mode (checked when training
            starts, after every override).
        envs: sync mode: environments stepped together, each in its own worker process when more
            than one (one policy forward acts in all of them), each with a replay of
            ``replay_capacity // envs`` steps; the train ratio counts the steps of all of them.
            Must be 1 in async mode (``actors`` sets its envs). See ``wmbench.runtime.env_pool``.
        publish_every: async mode: updates between two publications of the learner's policy weights
            to the actors.
    """

    env_frames: int = 100_000
    learning_starts: int = 5_000
    train_ratio: float = 512.0
    batch_size: int = 16
    seq_len: int = 50
    replay_capacity: int = 1_000_000
    eval_every: int = 10_000
    eval_episodes: int = 1
    final_eval_episodes: int = 10
    threads: int = 0
    accelerator: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "32-true", "tf32", "bf16-mixed"] = "auto"
    compile: bool = False
    compile_mode: Literal["default", "reduce-overhead"] = "default"
    prefetch: bool = True
    logger: Literal["csv", "wandb"] = "csv"
    progress: bool = True
    checkpoint_every: int = 10_000
    replay_chunk: int = 1_000
    mode: Literal["sync", "async"] = "sync"
    actors: int = 1
    envs: int = 1
    publish_every: int = 1

    def __post_init__(self) -> None:
        for name in (
            "env_frames",
            "batch_size",
            "seq_len",
            "replay_capacity",
            "eval_every",
            "eval_episodes",
            "final_eval_episodes",
            "checkpoint_every",
            "replay_chunk",
            "actors",
            "envs",
            "publish_every",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.train_ratio <= 0 or self.learning_starts < 0 or self.threads < 0:
            raise ValueError(
                "train.train_ratio must be > 0, train.learning_starts and train.threads >= 0"
            )
        per_replay = self.replay_capacity // self.replays
        if self.replay_chunk > per_replay:
            raise ValueError(
                f"train.replay_chunk={self.replay_chunk} exceeds the replay capacity of each of "
                f"the {self.replays} actor(s) or env(s), {per_replay} (rows would be evicted "
                f"before they are written): set train.replay_chunk <= {per_replay}"
            )

    @property
    def replays(self) -> int:
        """Replays of a run, one per stream of episodes: ``actors`` (async) or ``envs`` (sync)."""
        return self.actors * self.envs


@dataclass(frozen=True)
class RunConfig:
    """One run: one objective on one task with one seed.

    Attributes:
        objective: registered objective name (``wmbench objectives`` lists them).
        objective_config: options of that objective (keys of its ``Config`` dataclass).
        seed: seeds torch, numpy, python, the environment and replay sampling.
        env: see ``EnvConfig``.
        agent: see ``wmbench.agents.config.AgentConfig``.
        train: see ``TrainConfig``.
    """

    objective: str = "reconstruction"
    objective_config: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        t, repeat = self.train, self.env.action_repeat
        prefill = self.ratio_schedule().prefill_steps
        needed = t.seq_len * t.replays  # a sequence in each actor's or env's replay
        if prefill < needed:
            per_actor = (
                f" times train.actors={t.actors}" if t.actors > 1
                else f" times train.envs={t.envs}" if t.envs > 1 else ""
            )
            least = (needed - 1) * repeat + 1
            short = [name for name in ("learning_starts", "env_frames") if getattr(t, name) < least]
            fix = " and ".join(f"train.{name} >= {least}" for name in short)
            raise ValueError(
                f"the random prefill (train.learning_starts={t.learning_starts}, "
                f"train.env_frames={t.env_frames}) is {prefill} agent steps at "
                f"env.action_repeat={repeat}, fewer than train.seq_len={t.seq_len}{per_actor}: "
                f"set {fix}"
            )


    def ratio_schedule(self, slack: float = 0.0) -> RatioSchedule:
        """The run's train-ratio schedule (``wmbench.runtime.schedule``):
        ``ceil(min(learning_starts, env_frames) / action_repeat)`` prefill steps of
        ``ceil(env_frames / action_repeat)``, then ``agent.pretrain_updates`` updates, then one
        update per ``B·T / train_ratio`` steps.
        """
        t, repeat = self.train, self.env.action_repeat
        return RatioSchedule(
            math.ceil(min(t.learning_starts, t.env_frames) / repeat),
            math.ceil(t.env_frames / repeat),
            t.batch_size * t.seq_len / t.train_ratio,
            slack,
            self.agent.pretrain_updates,
        )


def prepare(cfg: RunConfig) -> tuple[type, Any]:
    """Resolves and validates the objective and the task before any compute.

    Loads the objective (torch) and runs its fake-batch check once per process
    (``wmbench.objectives.check``), validates ``objective_config`` and
    ``agent.world_model.objective_scales`` (``check_objective_scales``), and, for ``dmc:`` tasks,
    imports dm_control's task list. Creates no environment.

    Returns:
        ``(objective_cls, objective_config)``.

    Raises:
        wmbench.objectives.UnknownObjectiveError: unknown objective name (lists the available ones).
        wmbench.objectives.ObjectiveLoadError: a broken registry entry (one line: key, entry point,
            distribution, error, fix).
        wmbench.objectives.check.ObjectiveCheckError: the objective fails its check.
        ConfigError: bad ``objective_config`` keys or values; bad ``objective_scales``;
            ``train.actors`` > 1 in sync mode, or ``train.envs`` > 1 in async mode.
        wmbench.envs.UnknownTaskError: unknown task (see ``wmbench.envs.check_task``).
        wmbench.envs.RendererUnavailableError: a ``dmc:`` task and no headless OpenGL backend.
    """
    from wmbench.envs import check_task
    from wmbench.objectives import registry
    from wmbench.objectives.check import build_config, require_ok

    if cfg.train.actors > 1 and cfg.train.mode == "sync":
        raise ConfigError(
            f"train.actors={cfg.train.actors} needs train.mode=async (sync mode steps one env): "
            "set train.mode=async (--mode async) or train.actors=1"
        )
    if cfg.train.envs > 1 and cfg.train.mode == "async":
        raise ConfigError(
            f"train.envs={cfg.train.envs} is sync mode's; in async mode each of train.actors "
            "steps one env: set train.actors instead, or train.envs=1"
        )
    cls = registry.get(cfg.objective)
    obj_cfg = build_config(cls, cfg.objective_config)
    require_ok(cls, obj_cfg)
    check_objective_scales(cfg.objective, cfg.agent.world_model.objective_scales, cls.loss_scales)
    check_task(cfg.env.task)
    return cls, obj_cfg


def check_objective_scales(
    objective: str, scales: Mapping[str, float], losses: Collection[str]
) -> None:
    """Validates ``agent.world_model.objective_scales`` against the objective's loss names.

    Args:
        objective: the objective's name.
        scales: loss name to weight, as configured.
        losses: the loss names the objective declares (``Objective.loss_scales``' keys; its
            check makes them the names ``forward`` returns).

    Raises:
        ConfigError: a key that is not one of ``losses`` (with a close match), or a weight that is
            not a finite float >= 0.
    """
    where = "agent.world_model.objective_scales"
    for key, value in scales.items():
        if key not in losses:
            close = difflib.get_close_matches(key, list(losses), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            names = ", ".join(map(repr, sorted(losses))) or "none"
            raise ConfigError(
                f"{where}.{key}: objective {objective!r} has no loss {key!r}; {hint}its losses: "
                f"{names}"
            )
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ConfigError(f"{where}.{key}: must be a finite float >= 0, got {value!r}")
