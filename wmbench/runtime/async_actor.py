"""The actor side of async mode (``wmbench.runtime.async_learner``): the policy weights in shared
memory, and the actor process's loop.

An actor process (one per ``train.actors``) builds its own env (seeded
``wmbench.runtime.env_pool.env_seed(seed, i)``, as is its torch generator) and a CPU
``DreamerModule``, then until the learner stops it: claims the next agent step from the limiter
(``wmbench.runtime.schedule.RatioSchedule.steps_allowed``; steps before ``learning_starts`` take
uniform random actions), copies the newest published weights if their version changed, acts with the
encoder, RSSM posterior and actor (``AgentPolicy``), steps the env (``EnvSteps``) and sends the
step's replay rows (``Step``) to the learner. It ignores SIGINT (the learner stops it), exits when
its learner has died, and sends any exception to the learner as ``("error", i, traceback)``.
"""

from __future__ import annotations

import os
import queue
import signal
import time
import traceback
from typing import Any, NamedTuple

import torch

from wmbench.agents.module import DreamerModule
from wmbench.data.replay import Row
from wmbench.run_config import RunConfig, prepare
from wmbench.runtime.env_pool import EnvSteps, env_seed, make_run_env
from wmbench.runtime.schedule import RatioSchedule
from wmbench.runtime.stream import AgentPolicy

POLL_S = 0.1
"""Longest single wait on the queue; every wait loop on either side re-checks for failures and stops
this often."""

POLICY_PREFIXES = ("world_model.encoder.", "world_model.rssm.", "actor_critic.actor.")
"""State-dict entries the actors need to act (``DreamerModule.act``): encoder, RSSM posterior,
actor."""


class SharedWeights:
    """The policy's weights (``POLICY_PREFIXES``) in shared memory, stamped with the learner's
    update count.

    Created by the learner from its module and handed to the actors at spawn; ``publish`` copies the
    learner's tensors in, ``pull`` copies them into an actor's module when the version changed.
    Nothing is pickled after the spawn. No lock: a sequence number, odd while a publication is being
    written, lets a pull detect that it overlapped one and copy again (a seqlock), so an actor that
    dies mid-copy can never block the learner.

    Attributes:
        tensors: name -> float tensor in shared (CPU) memory, shapes as in the module's state
            dict, wherever the learner's module is (the actors act on the CPU).
        version: ``updates`` of the learner when last published.
    """

    def __init__(self, module: DreamerModule, context: Any) -> None:
        own = module.state_dict()
        self.tensors = {
            k: v.detach().to("cpu", copy=True).share_memory_()
            for k, v in own.items()
            if k.startswith(POLICY_PREFIXES)
        }
        self._sequence = context.Value("q", 0, lock=False)
        self._version = context.Value("q", module.updates, lock=False)

    @property
    def version(self) -> int:
        return int(self._version.value)

    def publish(self, module: DreamerModule) -> None:
        """Copies the module's policy tensors in and sets the version to ``module.updates`` (learner
        only)."""
        own = module.state_dict()
        self._sequence.value += 1  # odd: being written
        with torch.no_grad():
            for name, tensor in self.tensors.items():
                tensor.copy_(own[name])
        self._version.value = module.updates
        self._sequence.value += 1

    def pull(self, module: DreamerModule, have: int | None) -> int:
        """Copies the published tensors into ``module`` unless it already holds version ``have``;
        returns the version held.

        Raises:
            RuntimeError: No consistent copy within ``POLL_S * 50`` seconds (the learner died
                mid-publication).
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
    """One agent step sent by an actor: its replay rows (first a reset row at an episode start)."""

    actor: int
    rows: list[Row]  # a reset row first when an episode starts, then the step's row
    version: int  # SharedWeights version that chose the action
    episode_return: float | None  # set on the episode's last step
    wait_s: float  # the actor's total time held by the limiter so far


class Control(NamedTuple):
    """What the learner shares with every actor."""

    weights: SharedWeights
    steps: Any  # mp.Value with a lock: steps claimed by the actors (all together)
    updates: Any  # lock-free mp.Value: updates started by the learner (its only writer)
    queue: Any  # mp.Queue of Step and ("error", actor, traceback)
    stop: Any  # lock-free mp.Value, set by the learner to stop the actors
    learner_pid: int


def actor_main(index: int, cfg: RunConfig, schedule: RatioSchedule, control: Control) -> None:
    """Actor process: claim a step from the limiter, act, step the env, send the rows; until
    stopped."""
    signal.signal(
        signal.SIGINT, signal.SIG_IGN
    )  # Ctrl-C reaches the learner, which stops the actors
    torch.set_num_threads(1)
    try:
        _act(index, cfg, schedule, control)
    except BaseException:  # noqa: BLE001 - every failure goes to the learner
        _put(control, ("error", index, traceback.format_exc()))
        raise SystemExit(1) from None
    control.queue.cancel_join_thread()  # stopped: rows still buffered are not needed


def _stopped(control: Control) -> bool:
    return bool(control.stop.value) or os.getppid() != control.learner_pid


def _put(control: Control, item: Any) -> None:
    while not _stopped(control):
        try:
            control.queue.put(item, timeout=POLL_S)
            return
        except queue.Full:
            continue


def _claim(control: Control, schedule: RatioSchedule) -> int | None:
    """Index of the step this actor may take now, or ``None`` while the limiter holds the actors."""
    with control.steps.get_lock():
        step = control.steps.value
        if step >= schedule.steps_allowed(control.updates.value):
            return None
        control.steps.value = step + 1
        return step


def _act(index: int, cfg: RunConfig, schedule: RatioSchedule, control: Control) -> None:
    objective_cls, objective_cfg = prepare(cfg)
    seed = env_seed(cfg.seed, index)
    torch.manual_seed(seed)
    env = make_run_env(cfg, seed)
    env.action_space.seed(seed)
    steps = EnvSteps(env)
    action_dim = env.action_space.shape[0]
    module = DreamerModule(
        cfg.agent, env.observation_space.shape, action_dim, objective_cls, objective_cfg
    )
    policy = AgentPolicy(module, action_dim)
    version = control.weights.pull(module, None)
    wait_s = 0.0
    while not _stopped(control):
        step = _claim(control, schedule)
        if step is None:
            started = time.perf_counter()
            time.sleep(0.002)
            wait_s += time.perf_counter() - started
            continue
        rows = [] if steps.in_episode else [steps.reset()]
        version = control.weights.pull(module, version)
        if step < schedule.prefill_steps:
            action = env.action_space.sample()
        else:
            action = policy(steps.obs, steps.steps == 0, explore=True)
        rows.append(row := steps.step(action))
        _put(
            control,
            Step(index, rows, version, steps.episode_return if row.is_last else None, wait_s),
        )
    env.close()
