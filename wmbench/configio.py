"""Strict loading of nested frozen-dataclass configs from mappings, YAML and overrides."""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar, Union

import yaml

from wmbench.errors import UsageError

T = TypeVar("T")


class ConfigError(UsageError, ValueError):
    """A config value, key, override, file or run directory is invalid; the message names where and
    the fix."""


def from_dict(cls: type[T], data: Mapping, where: str = "config") -> T:
    """Builds a (possibly nested) dataclass from a mapping, strictly.

    Missing keys take the field defaults. Supported field types: ``int``, ``float``
    (ints are converted; a string is accepted only if ``float()`` parses it, since YAML
    1.1 reads ``3e-4`` as a string), ``bool`` (no ints), ``str``, ``Literal[...]``,
    ``X | None``, ``tuple[X, ...]`` (from a list or tuple), ``dict[str, X]`` /
    ``Mapping[str, X]`` (returned as a dict; ``X = Any`` passes values through),
    ``Any``, and nested dataclasses (from a nested mapping). String annotations are
    resolved with ``typing.get_type_hints``, so nested dataclass types must be
    reachable from the module globals of ``cls``.

    Args:
        cls: Dataclass type to build.
        data: Mapping from field names to values.
        where: Path of ``data`` used in error messages, e.g. ``"smoke.yaml: config"``;
            nested keys are appended as ``.key`` and tuple items as ``[i]``.

    Returns:
        An instance of ``cls``.

    Raises:
        ConfigError: If ``data`` is not a mapping, has a key that is not an init field
            of ``cls`` (message names the path, the allowed keys and a close match),
            lacks a field without default, holds a value of the wrong type, or if the
            dataclass constructor (e.g. ``__post_init__``) raises ``ValueError``.
        TypeError: If ``cls`` is not a dataclass type or has an unsupported field type.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"from_dict expects a dataclass type, got {cls!r}")
    if not isinstance(data, Mapping):
        got = f"{data!r} ({type(data).__name__})"
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {got}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    data = _with_preset(cls, data, where)
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{where}.{key}: unknown key {key!r}{hint} (allowed keys: {', '.join(fields)})"
            )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}.{name}: missing required key {name!r}")
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ConfigError(f"{where}: invalid {cls.__name__}: {exc}") from exc


def _with_preset(cls: type, data: Mapping, where: str) -> Mapping:
    """``data`` laid over the preset it names, for dataclasses with a ``PRESETS`` table.

    Such a dataclass has a ``preset`` field (its default names the preset its field defaults
    describe) and a class attribute ``PRESETS``: preset name to the nested mapping of what that
    preset sets. Keys of ``data`` win over the preset's, at every depth.

    Raises:
        ConfigError: the preset is not in ``PRESETS`` (names the ones that are).
    """
    presets = getattr(cls, "PRESETS", None)
    if presets is None:
        return data
    name = data.get(
        "preset", next(f.default for f in dataclasses.fields(cls) if f.name == "preset")
    )
    if name not in presets:
        raise ConfigError(
            f"{where}.preset: unknown preset {name!r}; choose one of {', '.join(presets)}"
        )
    return _merge(presets[name], data)


def _merge(base: Mapping, top: Mapping) -> dict:
    """``top`` over ``base``: nested mappings merged key by key, any other value of ``top`` wins."""
    out = dict(base)
    for key, value in top.items():
        both = isinstance(out.get(key), Mapping) and isinstance(value, Mapping)
        out[key] = _merge(out[key], value) if both else value
    return out


def _type_name(tp: Any) -> str:
    """Returns a readable name for a type annotation, e.g. ``int`` or ``tuple[int, ...]``."""
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return repr(tp).replace("typing.", "")


def _mismatch(tp: Any, value: Any, path: str) -> ConfigError:
    """Returns the error for a value that does not match its field type."""
    return ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _convert(tp: Any, value: Any, path: str) -> Any:
    """Validates ``value`` against annotation ``tp`` and converts it (see ``from_dict``).

    Raises:
        ConfigError: If the value does not match ``tp``.
        TypeError: If ``tp`` is not a supported annotation.
    """
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if origin is Union or origin is types.UnionType:
        others = [a for a in args if a is not type(None)]
        if len(others) != 1 or len(args) != 2:
            raise TypeError(
                f"{path}: unsupported union type {_type_name(tp)}; only X | None is supported"
            )
        return None if value is None else _convert(others[0], value, path)
    if origin is Literal:
        # Compare types too, so that True does not match Literal[1] (True == 1).
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise ConfigError(f"{path}: expected one of {list(args)}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _mismatch(tp, value, path)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _mismatch(tp, value, path)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise _mismatch(tp, value, path)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _mismatch(tp, value, path)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(value, (list, tuple)):
            raise _mismatch(tp, value, path)
        return tuple(_convert(args[0], item, f"{path}[{i}]") for i, item in enumerate(value))
    if origin in (dict, Mapping) and len(args) == 2 and args[0] is str:
        if not isinstance(value, Mapping):
            raise _mismatch(tp, value, path)
        for key in value:
            if not isinstance(key, str):
                raise ConfigError(f"{path}: keys must be str, got {key!r} ({type(key).__name__})")
        return {key: _convert(args[1], item, f"{path}.{key}") for key, item in value.items()}
    raise TypeError(f"{path}: unsupported config field type {_type_name(tp)}")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Converts a dataclass config to a plain nested dict of builtins.

    Nested dataclasses become dicts, tuples and lists become lists; only init fields are
    included, so ``from_dict(type(cfg), to_dict(cfg)) == cfg``.

    Args:
        cfg: Dataclass instance.

    Returns:
        Nested dict suitable for ``yaml.safe_dump``.

    Raises:
        TypeError: If ``cfg`` is not a dataclass instance.
    """
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise TypeError(f"to_dict expects a dataclass instance, got {cfg!r}")
    return {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init}


def _plain(value: Any) -> Any:
    """Recursively converts dataclasses, tuples, lists and mappings to builtins."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def with_overrides(cfg: T, overrides: Sequence[str]) -> T:
    """Returns a copy of ``cfg`` with dotted ``key.sub=value`` overrides applied.

    Each value is parsed with ``yaml.safe_load`` (``rssm.deter=200`` gives an int,
    ``train.lr=3e-4`` a string accepted by float fields, ``flag=true`` a bool, an empty
    value ``None``). Overrides are applied in order (later ones win), then the result is
    validated once with ``from_dict``, so the same strict checks apply, checks that relate
    several fields see all overrides, and an error names the override its key comes from. Setting
    a key below a field that is ``None`` (e.g. an optional nested dataclass) starts it
    from an empty mapping, i.e. from that dataclass's defaults. Setting a ``preset`` key (of a
    dataclass with ``PRESETS``, e.g. ``agent.preset=dreamer-v1``) starts that whole section from
    the preset: such overrides are applied first, then the others on top of them.

    Args:
        cfg: Dataclass config instance.
        overrides: Strings of the form ``"a.b.c=value"``.

    Returns:
        Instance of ``type(cfg)`` (``cfg`` itself if ``overrides`` is empty).

    Raises:
        ConfigError: If an override has no ``=`` or an empty key, its value is not valid
            YAML, it descends into a non-mapping value, names an unknown key, or gives
            a value of the wrong type.
        TypeError: If ``cfg`` is not a dataclass instance.
    """
    if not overrides:
        return cfg
    data = to_dict(cfg)
    # Stable sort: preset overrides first, each group in the given order.
    for text in sorted(
        overrides, key=lambda t: t.partition("=")[0].strip().split(".")[-1] != "preset"
    ):
        key, sep, raw = text.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(f"override {text!r}: expected the form key.sub=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {text!r}: value is not valid YAML: {exc}") from None
        node = data
        for i, part in enumerate(parts[:-1]):
            if node.get(part) is None:  # unset optional section (or new dict key): start empty
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {'.'.join(parts[: i + 1])} is not a mapping")
        if parts[-1] == "preset":
            node.clear()
        node[parts[-1]] = value
    try:
        return from_dict(type(cfg), data)
    except ConfigError as exc:
        # Name the override whose key the error points at; cross-field errors name none.
        culprits = [t for t in overrides if f"config.{t.partition('=')[0].strip()}" in str(exc)]
        raise ConfigError(
            f"override {culprits[-1]!r}: {exc}" if culprits else f"overrides: {exc}"
        ) from None


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a YAML file whose top level is a mapping.

    Args:
        path: File path.

    Returns:
        The parsed mapping (as loaded by ``yaml.safe_load``).

    Raises:
        ConfigError: If the file does not exist or cannot be read, has a YAML syntax
            error (message gives line and column), or its top level is not a mapping
            (an empty file included).
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: YAML syntax error{at}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data
