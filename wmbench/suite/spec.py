"""Suite files: a comparison grid as data.

Schema (``suites/smoke.yaml`` is an example)::

    name: smoke                      # output goes to runs/<name>/
    description: free text
    objectives: [reward, reconstruction, contrastive]
    tasks: [dmc:cartpole-balance]
    seeds: [0, 1]
    random_baseline: true            # also evaluate a uniform random policy per task and seed
    config:                          # RunConfig keys shared by every run (same RSSM and learner
      env: {action_repeat: 8}        # for every objective); not `objective` or `seed`
      train: {env_frames: 20000}

Every run's configuration is built and checked (unknown keys, wrong types, impossible values,
unknown objective or task) before any run starts; all problems are reported together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wmbench.config import ConfigError, from_dict, load_yaml
from wmbench.runtime.config import RunConfig


SUITE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class SuiteSpec:
    """A suite file.

    Attributes:
        name: suite name; runs are written to ``<out>/<name>/``.
        objectives: registered objective names.
        tasks: task names (``dmc:<domain>-<task>``).
        seeds: integer seeds; every objective × task runs once per seed.
        config: ``RunConfig`` overrides shared by all runs (not ``objective`` or ``seed``).
        random_baseline: evaluate a uniform random policy per task × seed for reference.
        description: free text.
    """

    name: str
    objectives: tuple[str, ...]
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    config: dict[str, Any] = field(default_factory=dict)
    random_baseline: bool = True
    description: str = ""


@dataclass(frozen=True)
class Run:
    """One cell of the grid: ``run_id`` names its directory."""

    run_id: str
    config: RunConfig


def run_id(objective: str, task: str, seed: int) -> str:
    """Directory name of a run, e.g. ``reconstruction-dmc_cartpole-balance-s0``.

    Characters of the task name other than letters, digits, ``.``, ``_`` and ``-`` become ``_``
    (``dmc:walker-walk?background=video`` gives ``dmc_walker-walk_background_video``).
    """
    return f"{objective}-{re.sub(r'[^A-Za-z0-9_.-]', '_', task)}-s{seed}"


def load_suite(path: str | Path) -> tuple[SuiteSpec, list[Run]]:
    """Read, validate and expand a suite file, before any compute.

    Raises:
        ConfigError: one message listing every problem (file, key, what is allowed).
    """
    from wmbench.envs import check_task
    from wmbench.objectives import registry
    from wmbench.runtime.sync import prepare

    path = Path(path)
    spec = from_dict(SuiteSpec, load_yaml(path), where=f"{path}: suite")
    problems: list[str] = []

    def problem(message: str) -> None:
        message = message if str(path) in message else f"{path}: {message}"
        if message not in problems:
            problems.append(message)

    if not SUITE_NAME.fullmatch(spec.name):
        problem(f"suite.name: {spec.name!r} must be letters, digits, '.', '_' or '-' (it names a directory)")
    for key in ("objective", "seed"):
        if key in spec.config:
            problem(f"config.{key}: set it in the suite's '{key}s' list, not in config")
    for key in ("objectives", "tasks", "seeds"):
        values = getattr(spec, key)
        if not values:
            problem(f"suite.{key}: must list at least one entry")
        if len(set(values)) != len(values):
            problem(f"suite.{key}: lists an entry twice")
    valid = set()
    for name, check in [(o, registry.get) for o in spec.objectives] + [(t, check_task) for t in spec.tasks]:
        try:
            check(name)
            valid.add(name)
        except ValueError as err:  # UnknownObjectiveError, UnknownTaskError
            problem(str(err))
    runs: list[Run] = []
    for objective in spec.objectives:
        for task in spec.tasks:
            for seed in spec.seeds:
                data = {**spec.config, "objective": objective, "seed": seed}
                env = spec.config.get("env", {})
                data["env"] = {**env, "task": task} if isinstance(env, dict) else env
                try:
                    cfg = from_dict(RunConfig, data, where=f"{path}: config")
                    if objective in valid and task in valid and seed == spec.seeds[0]:
                        prepare(cfg)  # the objective's own config
                    runs.append(Run(run_id(objective, task, seed), cfg))
                except ValueError as err:
                    problem(str(err))
    if problems:
        raise ConfigError("invalid suite:\n  " + "\n  ".join(problems))
    return spec, runs
