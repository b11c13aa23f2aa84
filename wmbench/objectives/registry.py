"""One registry of objectives: the built-in table plus the entry-point group ``wmbench.objectives``.

Nothing registers by import side effect. Third-party packages declare::

    [project.entry-points."wmbench.objectives"]
    mine = "my_package.my_module:MyObjective"

The key (``mine``) is the objective's name in configs, suites and reports, and must equal the
class's ``name``. An entry that cannot work — a value without ``module:Class``, a key that a
built-in or another distribution already uses, a module that does not import, a missing class, a
class that is not an ``Objective`` or whose ``name`` differs from its key — is an
``ObjectiveLoadError`` when it is used, a one-line message naming the key, the target, the
distribution and version, the group, the error and the fix; ``wmbench objectives`` marks it broken.
"""

from __future__ import annotations

import difflib
import importlib
import json
import re
import traceback
from dataclasses import dataclass
from importlib.metadata import Distribution, EntryPoint, entry_points

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

TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
"""An entry point's value: ``module.path:Attribute`` (no extras)."""


class UnknownObjectiveError(ConfigError):
    """Raised for an objective name that is neither built in nor installed as an entry point."""


class ObjectiveLoadError(ConfigError):
    """A registered objective cannot be loaded; the message is one line naming the key, the
    entry point, its distribution and version, the group, the error and the fix.

    Attributes:
        what: the error alone (no key, origin or fix), for listings.
    """

    def __init__(self, message: str, what: str) -> None:
        super().__init__(message)
        self.what = what


@dataclass(frozen=True)
class Entry:
    """One registered objective, before its module is imported.

    Attributes:
        key: the registered name (the entry point's name).
        target: ``"module:Class"`` as registered.
        distribution: name of the installed distribution declaring the entry point; ``None`` for a
            built-in objective.
        version: that distribution's version (``None`` for a built-in).
        source: editable installs only: the directory the distribution was installed from.
        problem: what is wrong with the entry itself (a value without ``module:Class``, a key
            taken by a built-in or by another distribution) and its fix; ``None`` if nothing is.
    """

    key: str
    target: str
    distribution: str | None = None
    version: str | None = None
    source: str | None = None
    problem: str | None = None

    @property
    def builtin(self) -> bool:
        return self.distribution is None

    def origin(self) -> str:
        """``built-in``, or ``entry point KEY = 'TARGET' of DIST VERSION (group ...)``."""
        if self.builtin:
            return "built-in"
        return (
            f"entry point {self.key} = {self.target!r} of {self.distribution} {self.version} "
            f"(group {ENTRY_POINT_GROUP})"
        )

    def provenance(self) -> dict[str, str]:
        """Where the objective's code comes from, for ``versions.json``: ``{"origin":
        "built-in"}`` or ``{"origin": "plugin", "distribution", "version", "entry_point"}``."""
        if self.builtin:
            return {"origin": "built-in"}
        return {
            "origin": "plugin",
            "distribution": str(self.distribution),
            "version": str(self.version),
            "entry_point": self.target,
        }

    def error(self, what: str, fix: str) -> ObjectiveLoadError:
        """The one-line error ``objective KEY (ORIGIN): WHAT; FIX``."""
        return ObjectiveLoadError(f"objective {self.key!r} ({self.origin()}): {what}; {fix}", what)

    def reinstall(self) -> str:
        """How to make a corrected entry point take effect."""
        where = self.source or "<its directory>"
        return (
            f"reinstall it (pip install -e {where}) or uninstall it (pip uninstall "
            f"{self.distribution})"
        )


def _installed(ep: EntryPoint) -> tuple[str | None, str | None, str | None]:
    """``(distribution, version, editable source directory)`` of an entry point."""
    dist: Distribution | None = getattr(ep, "dist", None)
    if dist is None:
        return "an unknown distribution", "?", None
    source = None
    try:
        url = json.loads(dist.read_text("direct_url.json") or "{}")
        if url.get("dir_info", {}).get("editable") and url.get("url", "").startswith("file://"):
            source = url["url"].removeprefix("file://")
    except (ValueError, OSError):
        pass
    return dist.metadata["Name"], dist.version, source


def entries() -> list[Entry]:
    """Every registered objective: the built-ins, then the installed entry points by key.

    A key registered twice appears twice: a plugin shadowing a built-in, or two distributions
    using one key, are entries with a ``problem``.
    """
    found = [Entry(key, target) for key, target in BUILTIN.items()]
    plugins = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    owners: dict[str, list[str]] = {}
    for ep in plugins:
        owners.setdefault(ep.name, []).append(_installed(ep)[0] or "")
    for ep in plugins:
        dist, version, source = _installed(ep)
        entry = Entry(ep.name, ep.value, dist, version, source)
        table = f'[project.entry-points."{ENTRY_POINT_GROUP}"] of {dist}\'s pyproject.toml'
        problem = None
        if ep.name in BUILTIN:
            problem = (
                f"the key shadows the built-in objective {ep.name!r}; rename the entry point "
                f"and the class's name (e.g. to {ep.name + '_' + _slug(dist)!r}) in {table}, "
                f"then {entry.reinstall()}"
            )
        elif len(owners[ep.name]) > 1:
            problem = (
                f"the key is registered by {len(owners[ep.name])} distributions "
                f"({', '.join(sorted(owners[ep.name]))}); rename it in one of them, or uninstall "
                "one"
            )
        elif not TARGET.fullmatch(ep.value):
            problem = (
                f"the value {ep.value!r} is not 'module:Class'; write the class after a colon, "
                f"e.g. {ep.name} = \"my_package.my_module:MyObjective\", in {table}, then "
                f"{entry.reinstall()}"
            )
        found.append(Entry(ep.name, ep.value, dist, version, source, problem))
    return found


def _slug(name: str | None) -> str:
    return re.sub(r"\W+", "_", name or "plugin").strip("_").lower()


def available() -> dict[str, str]:
    """Registered objectives that look usable: name to ``"module:Class"`` (built-ins first, then
    entry points; entries with a ``problem`` are left out, see ``entries``)."""
    return {e.key: e.target for e in entries() if e.problem is None}


def entry(name: str) -> Entry:
    """The registry entry of ``name``.

    Raises:
        UnknownObjectiveError: ``name`` is not registered; lists the names and a close match.
        ObjectiveLoadError: ``name`` is registered more than once (shadowing a built-in, or by
            two distributions) or its value is not ``module:Class``.
    """
    matches = [e for e in entries() if e.key == name]
    if not matches:
        names = sorted(available())
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownObjectiveError(
            f"unknown objective {name!r}{hint}; available: {', '.join(names)} (third-party "
            f"objectives register an entry point in group {ENTRY_POINT_GROUP!r})"
        )
    for broken in (e for e in matches if e.problem):
        raise _entry_problem(broken)
    return matches[0]


def _entry_problem(e: Entry) -> ObjectiveLoadError:
    what = str(e.problem).partition(";")[0]
    return ObjectiveLoadError(f"objective {e.key!r} ({e.origin()}): {e.problem}", what)


def load(e: Entry) -> type[Objective]:
    """Import the class of entry ``e`` and check that it is an ``Objective`` named ``e.key``.

    Raises:
        ObjectiveLoadError: the module cannot be imported (not found, or it raised), the class is
            missing, not an ``Objective`` subclass, or its ``name`` differs from ``e.key``.
    """
    if e.problem:
        raise _entry_problem(e)
    module_name, _, attr = e.target.partition(":")
    fix_target = (
        "fix the entry point's value in the distribution's pyproject.toml and " + e.reinstall()
        if not e.builtin
        else "reinstall wmbench (pip install -e .)"
    )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            raise e.error(f"module {module_name!r} not found ({err})", fix_target) from None
        raise e.error(
            f"importing {module_name!r} raised ModuleNotFoundError: {err}{_where(err)}",
            f"install the module it needs ({err.name}) or fix the import",
        ) from None
    except Exception as err:  # noqa: BLE001 - any error in the plugin's module gets one line
        raise e.error(
            f"importing {module_name!r} raised {type(err).__name__}: {err}{_where(err)}",
            "fix the plugin's module",
        ) from None
    cls = module
    for part in attr.split("."):
        if not hasattr(cls, part):
            raise e.error(f"module {module_name!r} has no attribute {attr!r}", fix_target)
        cls = getattr(cls, part)
    if not (isinstance(cls, type) and issubclass(cls, Objective)):
        raise e.error(
            f"{e.target} is {cls!r}, not a subclass of wmbench.objectives.Objective",
            "point the entry point at the objective's class, a subclass of Objective",
        )
    name = getattr(cls, "name", None)
    if name != e.key:
        raise e.error(
            f"class {cls.__qualname__} has name = {name!r} but is registered as {e.key!r}",
            f"set name = {e.key!r} in the class, or register it under the key {name!r}",
        )
    return cls


def _where(err: BaseException) -> str:
    """`` (at FILE:LINE)``: the innermost frame of ``err``'s traceback outside importlib."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if "importlib" not in f.filename]
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def get(name: str) -> type[Objective]:
    """Load the objective class registered as ``name``.

    Raises:
        UnknownObjectiveError: ``name`` is not registered; the message lists the available names.
        ObjectiveLoadError: the entry is broken (see ``entry`` and ``load``); one line naming the
            key, the entry point, its distribution and version, the group, the error and the fix.
    """
    return load(entry(name))
