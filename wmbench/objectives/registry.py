"""One registry of objectives: the built-in table plus the entry-point group ``wmbench.objectives``.

Nothing registers by import side effect. Third-party packages declare::

    [project.entry-points."wmbench.objectives"]
    mine = "my_package.my_module:MyObjective"
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from wmbench.configio import ConfigError
from wmbench.objectives.base import Objective

ENTRY_POINT_GROUP = "wmbench.objectives"

BUILTIN: dict[str, str] = {
    "reward": "wmbench.objectives.reward:RewardObjective",
    "reconstruction": "wmbench.objectives.reconstruction:ReconstructionObjective",
    "contrastive": "wmbench.objectives.contrastive:ContrastiveObjective",
    "prototypes": "wmbench.objectives.prototypes:PrototypesObjective",
    "self_predictive": "wmbench.objectives.self_predictive:SelfPredictiveObjective",
    "tpc": "wmbench.objectives.tpc:TPCObjective",
}


class UnknownObjectiveError(ConfigError):
    """Raised for an objective name that is neither built in nor installed as an entry point."""


def available() -> dict[str, str]:
    """All registered objectives: name to ``"module:Class"`` (built-ins first, then entry points).

    Built-in names cannot be shadowed by an entry point.
    """
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def get(name: str) -> type[Objective]:
    """Load the objective class registered as ``name``.

    Raises:
        UnknownObjectiveError: ``name`` is not registered; the message lists the available names.
        TypeError: the registered object is not an ``Objective`` subclass.
    """
    table = available()
    if name not in table:
        raise UnknownObjectiveError(
            f"unknown objective {name!r}; available: {', '.join(sorted(table))} "
            f"(third-party objectives register an entry point in group {ENTRY_POINT_GROUP!r})"
        )
    module_name, _, attr = table[name].partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Objective)):
        raise TypeError(
            f"objective {name!r} ({table[name]}) is not a subclass of wmbench.objectives.Objective"
        )
    return cls
