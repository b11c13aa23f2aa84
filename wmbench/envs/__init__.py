"""Pixel-observation environments behind one factory, :func:`make_env`.

Task names:
    ``"dmc:<domain>-<task>"``: a dm_control suite task, e.g. ``"dmc:walker-walk"``,
        ``"dmc:cartpole-balance"``, ``"dmc:ball_in_cup-catch"`` (``"cup"`` is accepted
        as an alias of the ``ball_in_cup`` domain).
    ``"toy:reach"``: :class:`wmbench.envs.toy.ToyReachEnv`, pure numpy, no MuJoCo.

A ``dmc:`` name may end in options, ``?key=value`` (several joined with ``&``). The only option
is ``background``, one of :data:`BACKGROUNDS`: ``"dmc:walker-walk?background=video"`` plays
distracting video behind the walker (see :mod:`wmbench.envs.backgrounds`); ``standard`` is the
default. Options are part of the task name, so a suite lists standard and distracting variants of a
task as two tasks, and results keep them apart.

dm_control is imported lazily, only after :func:`wmbench.envs.gl.ensure_mujoco_gl`
has chosen a headless OpenGL backend.
"""

import difflib
from collections.abc import Sequence

import gymnasium

from wmbench.configio import ConfigError
from wmbench.envs.backgrounds import BACKGROUNDS
from wmbench.envs.dmc import RENDER_QUALITIES, DMCEnv
from wmbench.envs.gl import RendererUnavailableError, ensure_mujoco_gl
from wmbench.envs.toy import ToyReachEnv
from wmbench.envs.wrappers import ActionRepeat

__all__ = [
    "BACKGROUNDS",
    "RENDER_QUALITIES",
    "ActionRepeat",
    "DMCEnv",
    "RendererUnavailableError",
    "ToyReachEnv",
    "UnknownTaskError",
    "check_task",
    "ensure_mujoco_gl",
    "make_env",
]

MIN_IMAGE_SIZE = 8
"""Smallest allowed observation side, in pixels."""

_TOY_TASKS = ("reach",)
_DMC_DOMAIN_ALIASES = {"cup": "ball_in_cup"}
_PREFIXES = ("dmc:", "toy:")
_OPTIONS = {"background": BACKGROUNDS}
"""Task-name options of ``dmc:`` tasks and their allowed values (the first is the default)."""


class UnknownTaskError(ConfigError):
    """Raised for a task name that wmbench cannot build; the message lists valid names."""


def _dmc_tasks() -> tuple[tuple[str, str], ...]:
    """Returns dm_control's ``suite.ALL_TASKS`` ((domain, task) pairs), importing it safely.

    Raises:
        RendererUnavailableError: If no headless OpenGL backend works.
    """
    ensure_mujoco_gl()
    from dm_control import suite

    return tuple(suite.ALL_TASKS)


def _did_you_mean(name: str, valid: Sequence[str], prefix: str, suffix: str = "") -> str:
    """The hint ``" (did you mean '<prefix><closest><suffix>'?)"`` (``closest``: of ``valid`` to
    ``name``), or ``""`` if none is close."""
    close = difflib.get_close_matches(name, valid, n=1)
    return f" (did you mean '{prefix}{close[0]}{suffix}'?)" if close else ""


def _options(task: str, text: str | None) -> dict[str, str]:
    """Parses the ``key=value&key=value`` options of a task name (``None``: none given), filling in
    defaults.

    Raises:
        UnknownTaskError: If an option is malformed, unknown, repeated or has a value not allowed.
    """
    options = {key: values[0] for key, values in _OPTIONS.items()}
    if text is None:
        return options
    allowed = "; ".join(f"{key}={'|'.join(values)}" for key, values in _OPTIONS.items())
    seen = set()
    for item in text.split("&"):
        key, eq, value = item.partition("=")
        if not eq or key not in _OPTIONS or key in seen or value not in _OPTIONS[key]:
            raise UnknownTaskError(
                f"Bad option {item!r} in task {task!r}: options are ?key=value joined with '&', "
                f"each at most once, allowed: {allowed}; e.g. 'dmc:walker-walk?background=video'."
            )
        seen.add(key)
        options[key] = value
    return options


def _resolve(task: str) -> tuple[str, str, str, dict[str, str]]:
    """Splits a task name into ``(prefix, domain, task, options)`` with aliases resolved.

    For ``toy:`` tasks the domain is the toy task's name and the task is ``""``; options (only for
    ``dmc:``) hold every option of ``_OPTIONS``, defaults filled in.

    Raises:
        UnknownTaskError: If the prefix, domain, task or an option is unknown; the message
            lists the valid prefixes and, for ``dmc:``, every valid dm_control task.
        RendererUnavailableError: For ``dmc:`` names, if no headless OpenGL backend works.
    """
    name_part, question, option_text = task.partition("?")
    if question and not name_part.startswith("dmc:"):
        raise UnknownTaskError(
            f"Task {task!r}: only dmc: tasks take options (e.g. "
            "'dmc:walker-walk?background=video')."
        )
    options = _options(task, option_text if question else None)
    prefix, sep, rest = name_part.partition(":")
    if prefix == "toy" and sep:
        if rest in _TOY_TASKS:
            return "toy", rest, "", {}
        raise UnknownTaskError(
            f"Unknown toy task {task!r}{_did_you_mean(rest, _TOY_TASKS, 'toy:')}. Valid toy tasks: "
            + ", ".join(f"toy:{name}" for name in _TOY_TASKS)
            + "."
        )
    if prefix == "dmc" and sep:
        domain, _, name = rest.partition("-")
        domain = _DMC_DOMAIN_ALIASES.get(domain, domain)
        valid = _dmc_tasks()
        if (domain, name) in valid:
            return "dmc", domain, name, options
        aliases = ", ".join(
            f"{short!r} for {full!r}" for short, full in _DMC_DOMAIN_ALIASES.items()
        )
        hint = _did_you_mean(f"{domain}-{name}", [f"{d}-{t}" for d, t in valid], "dmc:")
        raise UnknownTaskError(
            f"Unknown dm_control task {task!r}{hint}. Valid names are dmc:<domain>-<task> with "
            f"<domain>-<task> one of: {', '.join(f'{d}-{t}' for d, t in valid)} "
            f"(domain aliases: {aliases}), optionally followed by ?background=video."
        )
    hint = _did_you_mean(prefix, [p.rstrip(":") for p in _PREFIXES], "", f":{rest}") if sep else ""
    raise UnknownTaskError(
        f"Unknown task {task!r}{hint}: the name must start with one of {', '.join(_PREFIXES)}; "
        "e.g. 'dmc:walker-walk', 'dmc:cartpole-balance', 'dmc:cup-catch' or "
        + ", ".join(f"'toy:{name}'" for name in _TOY_TASKS)
        + "."
    )


def check_task(task: str) -> None:
    """Validates a task name without building an env or rendering.

    For ``dmc:`` names this chooses the OpenGL backend (a short subprocess probe)
    and imports ``dm_control.suite`` to read its task list.

    Args:
        task: A task name such as ``"dmc:walker-walk"`` or ``"toy:reach"``.

    Raises:
        UnknownTaskError: If the name is not a known task; the message lists the
            valid prefixes and names.
        RendererUnavailableError: For ``dmc:`` names, if no headless OpenGL backend works.
    """
    _resolve(task)


def make_env(
    task: str,
    *,
    image_size: int = 64,
    action_repeat: int = 2,
    seed: int = 0,
    render_quality: str = "standard",
) -> gymnasium.Env:
    """Builds a pixel-observation env that repeats each action ``action_repeat`` times.

    Observations are uint8 arrays of shape (3, image_size, image_size); actions are
    float32 arrays in [-1, 1]. One step of the returned env is ``action_repeat``
    steps of the underlying env, with rewards summed (stopping at episode end).

    Args:
        task: Task name, ``"dmc:<domain>-<task>"`` (optionally with options such as
            ``"?background=video"``, see the module docstring) or ``"toy:reach"``.
        image_size: Side of the square observation, in pixels (>= 8).
        action_repeat: Number of inner steps per agent step (>= 1).
        seed: Seed of the task's initial-state generator; ``reset(seed=...)`` re-seeds it.
        render_quality: One of :data:`RENDER_QUALITIES`; only affects ``dmc:`` tasks.

    Returns:
        The env.

    Raises:
        UnknownTaskError: If ``task`` is unknown (a ValueError listing valid names).
        ValueError: If ``image_size < 8``, ``action_repeat < 1`` or ``render_quality``
            is not in :data:`RENDER_QUALITIES`.
        RendererUnavailableError: For ``dmc:`` tasks, if no headless OpenGL backend works.
    """
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be an int >= {MIN_IMAGE_SIZE}, got {image_size!r}")
    if action_repeat < 1:
        raise ValueError(f"action_repeat must be an int >= 1, got {action_repeat!r}")
    if render_quality not in RENDER_QUALITIES:
        raise ValueError(
            f"render_quality must be one of {RENDER_QUALITIES}, got {render_quality!r}"
        )
    kind, domain, name, options = _resolve(task)
    if kind == "toy":
        return ActionRepeat(ToyReachEnv(image_size=image_size, seed=seed), action_repeat)
    # DMCEnv repeats internally so that only the last of the repeated frames is rendered.
    return DMCEnv(
        domain,
        name,
        image_size=image_size,
        action_repeat=action_repeat,
        seed=seed,
        render_quality=render_quality,
        background=options["background"],
    )
