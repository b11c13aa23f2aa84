"""Representation objectives: the plugin API, the registry and the built-in objectives.

This package's namespace is the stable surface for plugins (and the only one the built-in
objectives import): an objective imports what it needs from ``wmbench.objectives`` and nothing
from ``wmbench.agents``, ``wmbench.nn`` or the modules below this package, which may change.

Interface (``base``):
    ``Objective`` (subclass it: ``name``, ``Config``, ``loss_scales``, ``forward``, optional
    ``after_update`` and ``decode``), ``ObjectiveInputs``, ``ObjectiveOutput``, ``ModelDims``,
    ``NoConfig``.
Helpers:
    ``EMATarget`` (momentum targets; ``EMATarget.with_encoder(dims, fraction, ...)`` copies the
    world model's encoder), ``random_shift`` (DrQ image augmentation), ``info_nce`` and
    ``gaussian_log_density_matrix`` (contrastive losses), ``MLP`` and ``ConvDecoder`` (the world
    model's dense and deconvolutional networks, in its layer style via ``ModelDims``),
    ``image_to_float`` (uint8 pixels to the encoder's [-0.5, 0.5] scale), ``gaussian_nll``.
Checking (``check``):
    ``check_objective`` (the fake-batch check behind ``wmbench objectives check``),
    ``fake_inputs``, ``CheckReport``.
Registry (``registry``):
    ``ENTRY_POINT_GROUP``, ``available``, ``get``, ``UnknownObjectiveError``,
    ``ObjectiveLoadError``.
"""

from wmbench.nn.nets import MLP, ConvDecoder, gaussian_nll, image_to_float
from wmbench.objectives.augment import random_shift
from wmbench.objectives.base import ModelDims, NoConfig, Objective, ObjectiveInputs, ObjectiveOutput
from wmbench.objectives.check import CheckReport, check_objective, fake_inputs
from wmbench.objectives.ema import EMATarget
from wmbench.objectives.nce import gaussian_log_density_matrix, info_nce
from wmbench.objectives.registry import (
    ENTRY_POINT_GROUP,
    ObjectiveLoadError,
    UnknownObjectiveError,
    available,
    get,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "MLP",
    "CheckReport",
    "ConvDecoder",
    "EMATarget",
    "ModelDims",
    "NoConfig",
    "Objective",
    "ObjectiveInputs",
    "ObjectiveLoadError",
    "ObjectiveOutput",
    "UnknownObjectiveError",
    "available",
    "check_objective",
    "fake_inputs",
    "gaussian_log_density_matrix",
    "gaussian_nll",
    "get",
    "image_to_float",
    "info_nce",
    "random_shift",
]
