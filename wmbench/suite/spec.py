"""Suite files: a comparison grid as data.

Schema (``suites/smoke.yaml`` and ``suites/dmc-vision.yaml`` are examples)::

    name: smoke                      # output goes to runs/<name>/
    description: free text
    objectives:                      # a registered name, or a labelled variant with its options
      - reward
      - {name: contrastive-wide, objective: contrastive, objective_config: {units: 800}}
      - {name: recon-x2, objective: reconstruction, objective_scales: {image: 2.0}}
    tasks: [dmc:cartpole-balance]
    seeds: [0, 1]
    evaluation: {every: 2500, episodes: 5, final_episodes: 10}   # train.eval_every, .eval_episodes
                                     # and .final_eval_episodes
    references:                      # per-task (low, high) return for normalised scores in reports
      dmc:cartpole-balance: {low: 0, high: 1000}
    config:                          # RunConfig keys shared by every run (same RSSM and learner
      env: {action_repeat: 8}        # for every objective); not objective, objective_config,
                                     # agent.world_model.objective_scales or seed
      train: {env_frames: 20000}

Besides the grid, every suite evaluates two trivial policies per task × seed, a zero-action and a
uniform random one (``baseline_runs``), on the episodes of the runs' first and final evaluations.

Every run's configuration is built and checked (unknown keys, wrong types, impossible values,
unknown objective or task) before any run starts; all problems are reported together, each naming
the file, the key and what is allowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wmbench.configio import ConfigError, from_dict, load_yaml
from wmbench.run_config import RunConfig, prepare
from wmbench.rundir import BASELINES, UNTRAINED, run_id

SUITE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
SCOPED = {
    "objective_config": "objective_config",
    "agent.world_model.objective_scales": "objective_scales",
}
"""Run-config keys an entry of the suite's ``objectives`` list sets, by that entry's key."""


@dataclass(frozen=True)
class ObjectiveSpec:
    """One objective of a suite: a registered objective, possibly with its own options.

    Attributes:
        name: label of the objective in run ids, tables and figures (a directory-safe name, unique
            in the suite); a bare string in the suite file is the name of a registered objective.
        objective: registered objective name (default: ``name``).
        objective_config: options of that objective (keys of its ``Config`` dataclass).
        objective_scales: weights of its losses (``agent.world_model.objective_scales`` of its
            runs; keys are the loss names it declares).
    """

    name: str
    objective: str = ""
    objective_config: dict[str, Any] = field(default_factory=dict)
    objective_scales: dict[str, float] = field(default_factory=dict)

    @property
    def registered(self) -> str:
        """The registered objective name."""
        return self.objective or self.name


@dataclass(frozen=True)
class EvaluationSpec:
    """Evaluation cadence of every run (unset: the ``train`` config's values).

    Attributes:
        every: env frames between evaluations (``train.eval_every``).
        episodes: episodes per evaluation between the first and the last
            (``train.eval_episodes``).
        final_episodes: episodes of the first and the final evaluation, and of the baselines
            (``train.final_eval_episodes``).
    """

    every: int | None = None
    episodes: int | None = None
    final_episodes: int | None = None


@dataclass(frozen=True)
class Reference:
    """Returns that map to normalised scores 0 and 1: score = (return − low) / (high − low)."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not self.high > self.low:
            raise ValueError(f"high must be greater than low, got low={self.low}, high={self.high}")


@dataclass(frozen=True)
class SuiteSpec:
    """A suite file.

    Attributes:
        name: suite name; runs are written to ``<out>/<name>/``.
        objectives: the objectives compared (see ``ObjectiveSpec``).
        tasks: task names (``dmc:<domain>-<task>``).
        seeds: integer seeds; every objective × task runs once per seed.
        config: ``RunConfig`` overrides shared by all runs (not ``objective``, ``objective_config``,
            ``agent.world_model.objective_scales`` or ``seed``).
        evaluation: evaluation cadence (see ``EvaluationSpec``).
        references: task to the (low, high) returns that normalise its scores in reports.
        description: free text.
    """

    name: str
    objectives: tuple[ObjectiveSpec, ...]
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    config: dict[str, Any] = field(default_factory=dict)
    evaluation: EvaluationSpec = field(default_factory=EvaluationSpec)
    references: dict[str, Reference] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class Run:
    """One cell of the grid: ``run_id`` names its directory, ``label`` its objective in tables."""

    run_id: str
    config: RunConfig
    label: str


def baseline_runs(spec: SuiteSpec, runs: list[Run]) -> list[Run]:
    """The baselines' runs of a suite: each of ``BASELINES`` once per task and seed, with that
    cell's configuration (its evaluation episodes) and the baseline's name as label."""
    first = spec.objectives[0].name
    return [
        Run(run_id(policy, r.config.env.task, r.config.seed), r.config, policy)
        for policy in BASELINES
        for r in runs
        if r.label == first
    ]


def read_suite(path: str | Path) -> SuiteSpec:
    """Parse a suite file into a ``SuiteSpec`` (a bare objective name becomes ``{name: ...}``).

    Checks the schema only; ``load_suite`` validates the runs.

    Raises:
        ConfigError: unreadable file, YAML error, unknown key or wrong type (the first one).
    """
    data = load_yaml(path)
    if isinstance(data.get("objectives"), list):
        data["objectives"] = [{"name": o} if isinstance(o, str) else o for o in data["objectives"]]
    return from_dict(SuiteSpec, data, where=f"{path}: suite")


def _run_data(spec: SuiteSpec, objective: ObjectiveSpec, task: str, seed: int) -> dict[str, Any]:
    """The ``RunConfig`` mapping of one run: the shared config plus this cell's keys."""
    data = {
        **spec.config,
        "objective": objective.registered,
        "objective_config": objective.objective_config,
        "seed": seed,
    }
    env, train = spec.config.get("env", {}), spec.config.get("train", {})
    data["env"] = {**env, "task": task} if isinstance(env, dict) else env
    agent = spec.config.get("agent", {})
    if objective.objective_scales and isinstance(agent, dict):
        world_model = agent.get("world_model") or {}
        if isinstance(world_model, dict):
            scales = {"objective_scales": objective.objective_scales}
            data["agent"] = {**agent, "world_model": {**world_model, **scales}}
    cadence = {
        "eval_every": spec.evaluation.every,
        "eval_episodes": spec.evaluation.episodes,
        "final_eval_episodes": spec.evaluation.final_episodes,
    }
    if isinstance(train, dict):
        data["train"] = {**train, **{k: v for k, v in cadence.items() if v is not None}}
    return data


def load_suite(path: str | Path) -> tuple[SuiteSpec, list[Run]]:
    """Read, validate and expand a suite file, before any compute.

    Returns:
        ``(spec, runs)``: runs ordered objective, then task, then seed.

    Raises:
        ConfigError: one message listing every problem (file, key, what is allowed).
    """
    from wmbench.envs import check_task
    from wmbench.objectives import registry

    path = Path(path)
    spec = read_suite(path)
    problems: list[str] = []

    def problem(message: str) -> None:
        message = message if str(path) in message else f"{path}: {message}"
        if message not in problems:
            problems.append(message)

    names = [o.name for o in spec.objectives]
    for key, value in [("suite.name", spec.name)] + [
        (f"suite.objectives[{i}].name", n) for i, n in enumerate(names)
    ]:
        if not SUITE_NAME.fullmatch(value):
            problem(
                f"{key}: {value!r} must be letters, digits, '.', '_' or '-' (it names a directory)"
            )
    for i, name in enumerate(names):
        if name in (*BASELINES, UNTRAINED):
            problem(
                f"suite.objectives[{i}].name: {name!r} is reserved for a baseline; choose another "
                "label"
            )
    for key in ("objective", "objective_config", "seed"):
        if key in spec.config:
            where = (
                "the suite's 'seeds' list"
                if key == "seed"
                else "an entry of the suite's 'objectives' list"
            )
            problem(f"config.{key}: set it in {where}, not in config")
    agent = spec.config.get("agent")
    if isinstance(agent, dict) and "objective_scales" in (agent.get("world_model") or {}):
        problem(
            "config.agent.world_model.objective_scales: set objective_scales in an entry of the "
            "suite's 'objectives' list (loss names differ between objectives), not in config"
        )
    for key, field_ in (
        ("every", "eval_every"),
        ("episodes", "eval_episodes"),
        ("final_episodes", "final_eval_episodes"),
    ):
        if getattr(spec.evaluation, key) is not None and field_ in (spec.config.get("train") or {}):
            problem(
                f"suite.evaluation.{key} and config.train.{field_} both set the evaluation "
                "cadence; keep one"
            )
    for key, values in (("objectives", names), ("tasks", spec.tasks), ("seeds", spec.seeds)):
        if not values:
            problem(f"suite.{key}: must list at least one entry")
        if len(set(values)) != len(values):
            problem(
                f"suite.{key}: lists an entry "
                f"twice{' (give each variant its own name)' if key == 'objectives' else ''}"
            )
    for task in sorted(set(spec.references) - set(spec.tasks)):
        problem(f"suite.references.{task}: not one of the suite's tasks ({', '.join(spec.tasks)})")
    valid = set()
    for name, check in [(o.registered, registry.get) for o in spec.objectives] + [
        (t, check_task) for t in spec.tasks
    ]:
        try:
            check(name)
            valid.add(name)
        except ValueError as err:  # UnknownObjectiveError, UnknownTaskError
            problem(str(err))
    runs: list[Run] = []
    for i, objective in enumerate(spec.objectives):
        for task in spec.tasks:
            for seed in spec.seeds:
                try:
                    cfg = from_dict(
                        RunConfig, _run_data(spec, objective, task, seed), where=f"{path}: config"
                    )
                    if objective.registered in valid and task in valid and seed == spec.seeds[0]:
                        try:
                            prepare(cfg)  # the objective's own config, its check and scales
                        except ConfigError as err:
                            message = str(err)  # name this entry's keys
                            for key, entry_key in SCOPED.items():
                                if message.startswith(key):
                                    message = f"suite.objectives[{i}].{entry_key}" + message[
                                        len(key) :
                                    ]
                            raise ConfigError(message) from None
                    runs.append(Run(run_id(objective.name, task, seed), cfg, objective.name))
                except ValueError as err:
                    problem(str(err))
    if len(problems) == 1:
        raise ConfigError(f"invalid suite: {problems[0]}")
    if problems:
        raise ConfigError("invalid suite:\n  " + "\n  ".join(problems))
    return spec, runs
