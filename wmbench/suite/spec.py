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

Every run's configuration is built and checked (unknown keys, wrong types, unknown objective or
task) before any run starts; all problems are reported together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wmbench.config import ConfigError, from_dict, load_yaml
from wmbench.runtime.config import RunConfig


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
    """Directory name of a run, e.g. ``reconstruction-dmc_cartpole-balance-s0``."""
    return f"{objective}-{task.replace(':', '_')}-s{seed}"


def load_suite(path: str | Path) -> tuple[SuiteSpec, list[Run]]:
    """Read, validate and expand a suite file, before any compute.

    Raises:
        ConfigError: one message listing every problem (file, key, what is allowed).
    """
    from wmbench.runtime.sync import prepare

    path = Path(path)
    spec = from_dict(SuiteSpec, load_yaml(path), where=f"{path}: suite")
    problems = []
    for key in ("objective", "seed"):
        if key in spec.config:
            problems.append(f"{path}: config.{key}: set it in the suite's '{key}s' list, not in config")
    for key in ("objectives", "tasks", "seeds"):
        if not getattr(spec, key):
            problems.append(f"{path}: {key}: must list at least one entry")
    runs: list[Run] = []
    checked: set[str] = set()
    for objective in spec.objectives:
        for task in spec.tasks:
            for seed in spec.seeds:
                data = {**spec.config, "objective": objective, "seed": seed}
                env = spec.config.get("env", {})
                data["env"] = {**env, "task": task} if isinstance(env, dict) else env
                try:
                    cfg = from_dict(RunConfig, data, where=f"{path}: config")
                    key = f"{objective}|{task}"
                    if key not in checked:
                        checked.add(key)
                        prepare(cfg)
                    runs.append(Run(run_id(objective, task, seed), cfg))
                except ValueError as err:  # ConfigError, UnknownObjectiveError, UnknownTaskError
                    msg = f"{path}: {err}" if str(path) not in str(err) else str(err)
                    if msg not in problems:
                        problems.append(msg)
    if problems:
        raise ConfigError("invalid suite:\n  " + "\n  ".join(problems))
    return spec, runs
