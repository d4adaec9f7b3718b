"""The one reader of config files, and typed builders of settings from their tables.

Every config voxaudit reads (audit, train run, sweep, guard) comes through here, so that a
wrong type or an unknown key fails as one line naming the file, the section and the key,
before anything trains: ``audit.toml: [audit]: key 'max_per_side': expected an integer, got
'eight'``. The types are the annotations of the dataclass (or the function) the settings are
for, so a new field is checked without a new rule.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from voxaudit.errors import VoxauditError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

T = TypeVar("T")
#: What a config writes for None: TOML has no null.
NONE = "none"
_SCALARS: dict[Any, str] = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    Path: "a path",
}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The table in a TOML, YAML (.yaml, .yml) or JSON config file; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise VoxauditError(f"{path}: cannot read the config file ({exc.strerror})") from exc
    kind = {".toml": "TOML", ".json": "JSON", ".yaml": "YAML", ".yml": "YAML"}.get(path.suffix)
    if kind is None:
        raise VoxauditError(f"{path}: config files end in .toml, .yaml, .yml or .json")
    try:
        if kind == "TOML":
            data: Any = tomllib.loads(text)
        elif kind == "JSON":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise VoxauditError(f"{path}: invalid {kind}: {exc}") from exc
    if not isinstance(data, dict):
        raise VoxauditError(f"{path}: expected a table of settings at the top level")
    return data


def from_mapping(cls: type[T], values: Mapping[str, Any], where: str) -> T:
    """An instance of dataclass ``cls`` from a config table, every key checked first.

    ``where`` names the table in errors, e.g. ``"audit.toml: [audit]"``. Keys must be fields of
    ``cls``, and fields without a default must be given. Each value must fit the field's
    annotation: ``int`` (not a bool), ``float`` (an int is accepted and kept as given, so
    records of a config do not change), ``bool``, ``str``, ``Path`` (from a string),
    ``Literal[...]``, ``tuple[T, ...]`` and ``tuple[A, B]`` (from a list), ``list[T]``,
    ``dict[K, V]``, a nested dataclass (from a table) and unions. TOML has no null, so for an
    ``X | None`` field the string ``"none"`` (any case) stands for None. Errors raised by
    ``cls`` itself (its ``__post_init__`` checks) are prefixed with ``where``.
    """
    checked_values = checked(values, field_types(cls), where)
    required = [
        f.name
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in checked_values]
    if missing:
        raise VoxauditError(f"{where}: missing key(s) {', '.join(missing)}")
    try:
        return cls(**checked_values)
    except VoxauditError as exc:
        raise VoxauditError(f"{where}: {exc}") from None


def field_types(cls: type) -> dict[str, Any]:
    """The resolved annotation of each init field of dataclass ``cls``, in field order."""
    hints = _hints(cls)
    return {
        f.name: hints.get(f.name, Any)
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.init
    }


def keyword_types(function: Callable[..., Any]) -> dict[str, Any]:
    """The resolved annotation of each parameter ``function`` takes by keyword, in order.

    For a class, its constructor's. Unannotated parameters are ``Any``; ``*args``,
    ``**kwargs`` and positional-only parameters are left out.
    """
    by_keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    hints = _hints(function.__init__ if isinstance(function, type) else function)
    return {
        name: hints.get(name, Any)
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.kind in by_keyword
    }


def checked(values: Mapping[str, Any], types: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``values`` (a config table) with each value checked against ``types`` and converted.

    Conversions are those of :func:`from_mapping`; ``values`` read from a file may be anything,
    and what is no table is refused. The values of known keys are checked before
    unknown keys are refused, so that a bad selector (e.g. a model ``family``, which decides
    the other keys) is reported as itself.
    """
    if not isinstance(values, Mapping):
        raise VoxauditError(f"{where}: expected a table of settings, got {values!r}")
    result = {}
    for key, value in values.items():
        if key in types:
            try:
                result[key] = _convert(value, types[key], where, str(key))
            except _Mismatch as bad:
                raise VoxauditError(
                    f"{where}: key {bad.key!r}: expected {bad.expected}, got {bad.value!r}"
                ) from None
    unknown = sorted(str(key) for key in values if key not in types)
    if unknown:
        raise VoxauditError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(types))}"
        )
    return result


class _Mismatch(Exception):
    """A value that does not fit its annotation (turned into one error line by ``checked``)."""

    def __init__(self, key: str, expected: str, value: Any) -> None:
        super().__init__(key)
        self.key, self.expected, self.value = key, expected, value


def _hints(target: Any) -> dict[str, Any]:
    """``typing.get_type_hints`` of ``target``, which resolves string annotations.

    An annotation that names something only imported for type checkers cannot be resolved;
    its values then go unchecked (``Any``) rather than the config failing on voxaudit's code.
    """
    try:
        return get_type_hints(target)
    except (NameError, TypeError):
        return {}


def _convert(value: Any, annotation: Any, where: str, key: str) -> Any:
    """``value`` as ``annotation`` wants it, or :class:`_Mismatch` naming ``key``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        return _convert_union(value, annotation, where, key)
    if origin is Literal:
        if value not in args:
            raise _Mismatch(key, _describe(annotation), value)
        return value
    if origin in (tuple, list):
        return _convert_sequence(value, annotation, where, key)
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _Mismatch(key, _describe(annotation), value)
        key_type, value_type = args or (Any, Any)
        return {
            _convert(k, key_type, where, f"{key}.{k}"): _convert(v, value_type, where, f"{key}.{k}")
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        return from_mapping(annotation, value, f"{where}: {key}")
    if annotation in _SCALARS:
        return _convert_scalar(value, annotation, key)
    kind = origin or annotation
    if isinstance(kind, type) and not isinstance(value, kind):  # e.g. a Callable, an Enum
        raise _Mismatch(key, _describe(annotation), value)
    return value


def _convert_union(value: Any, annotation: Any, where: str, key: str) -> Any:
    arms = [arm for arm in get_args(annotation) if arm is not type(None)]
    optional = len(arms) < len(get_args(annotation))
    if optional and (value is None or (isinstance(value, str) and value.lower() == NONE)):
        return None
    for arm in arms:
        try:
            return _convert(value, arm, where, key)
        except _Mismatch as bad:
            if len(arms) == 1 and bad.key != key:  # X | None, an item of X wrong: say which
                raise
    raise _Mismatch(key, _describe(annotation), value)


def _convert_sequence(value: Any, annotation: Any, where: str, key: str) -> tuple | list:
    origin, args = get_origin(annotation), get_args(annotation)
    if not isinstance(value, (list, tuple)):
        raise _Mismatch(key, _describe(annotation), value)
    if origin is tuple and args and args[-1] is not Ellipsis:  # fixed length: tuple[A, B]
        if len(value) != len(args):
            raise _Mismatch(key, _describe(annotation), value)
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(_convert(v, a, where, f"{key}[{i}]") for i, (v, a) in pairs)
    element = args[0] if args else Any
    items = [_convert(v, element, where, f"{key}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _convert_scalar(value: Any, annotation: Any, key: str) -> Any:
    fits = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
        Path: isinstance(value, (str, Path)),
    }[annotation]
    if not fits:
        raise _Mismatch(key, _describe(annotation), value)
    return Path(value) if annotation is Path else value


def _describe(annotation: Any) -> str:
    """What a value of ``annotation`` is, in the words of an error message."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join(NONE if arm is type(None) else _describe(arm) for arm in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} values"
    if origin in (tuple, list):
        return "a list"
    if origin in (dict, Mapping) or dataclasses.is_dataclass(annotation):
        return "a table"
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    return f"a {getattr(origin or annotation, '__name__', annotation)}"
