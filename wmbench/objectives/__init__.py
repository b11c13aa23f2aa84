"""Representation objectives: the plugin interface, the registry and the built-in objectives."""

from wmbench.objectives.base import ModelDims, NoConfig, Objective, ObjectiveInputs, ObjectiveOutput
from wmbench.objectives.registry import ENTRY_POINT_GROUP, UnknownObjectiveError, available, get

__all__ = [
    "ENTRY_POINT_GROUP",
    "ModelDims",
    "NoConfig",
    "Objective",
    "ObjectiveInputs",
    "ObjectiveOutput",
    "UnknownObjectiveError",
    "available",
    "get",
]
