"""The settings of ``segzero shapeworld train-models``: every field of :class:`ShapeWorldTrainConfig` and
of its stage configs, by a dotted key.

A key is a field of the run (``warmup_thinking``, ``grpo_recipe``, ``stages``) or ``STAGE.FIELD`` for a
field of a stage (``warmup.steps``, ``tower.lr``, ``segmenter.device``); a stage that may be skipped
takes ``null`` (``knowledge: null``). Values are YAML, read by the reader of ``segzero train`` recipes
(:func:`segzero.train.config.read_recipe` for a flat file of ``key: value`` lines,
:func:`~segzero.train.config.parse_overrides` for ``--set key=value``), then checked against the
field's type: a bad key or value is one sentence before any stage runs.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from segzero.errors import InputError
from segzero.shapeworld.training.run import ShapeWorldTrainConfig

#: The command that lists the settings.
LISTING = "segzero shapeworld fields"


def _fields(obj: Any, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any, Any]]:
    """``(key, field, type, value)`` of every setting of a config dataclass, stage fields included."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        if not f.init or not f.metadata.get("setting", True):
            continue
        key, value = prefix + f.name, getattr(obj, f.name)
        yield key, f, hints[f.name], value
        if dataclasses.is_dataclass(value):
            yield from _fields(value, key + ".")


def describe_settings() -> list[tuple[str, str, str]]:
    """``(key, default as written, help)`` of every setting, in the run's order; a stage's own row shows
    its config class."""
    rows = []
    for key, f, _, value in _fields(ShapeWorldTrainConfig()):
        shown = type(value).__name__ if dataclasses.is_dataclass(value) else repr(value)
        rows.append((key, shown, " ".join(str(f.metadata.get("help", "")).split())))
    return rows


class _Mismatch(Exception):
    """A value that does not fit a field's type."""


def _describe(hint: Any) -> str:
    """A field's type in words, for the error sentence."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None)) + " or null"
    if origin in (tuple, list):
        if origin is tuple and args[-1] is not Ellipsis:
            return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
        return f"a list of ({_describe(args[0])})"
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a text"}.get(
        hint, str(hint)
    )


def _converted(value: Any, hint: Any) -> Any:
    """``value`` as the type ``hint`` (a YAML list as a tuple for a tuple field), or :class:`_Mismatch`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _converted(value, inner)
    if origin in (tuple, list):
        items = list(value) if isinstance(value, list | tuple) else [value]
        if origin is tuple and args[-1] is not Ellipsis:
            if len(items) != len(args):
                raise _Mismatch
            return tuple(_converted(v, a) for v, a in zip(items, args))
        converted = [_converted(v, args[0]) for v in items]
        return tuple(converted) if origin is tuple else converted
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise _Mismatch
    if hint in (bool, int, str) and isinstance(value, hint):
        return value
    raise _Mismatch


def apply_settings(config: ShapeWorldTrainConfig, values: Mapping[str, Any]) -> ShapeWorldTrainConfig:
    """Set ``values`` (dotted key -> YAML value) on ``config``, in place; returns it.

    Raises:
        InputError: an unknown key (with the closest known ones), a value that does not fit its field, a
            stage set to anything but null, or a field set of a stage that is also set to null.
    """
    from segzero.train.config import reject_unknown

    known = {key: (f, hint, default) for key, f, hint, default in _fields(ShapeWorldTrainConfig())}
    reject_unknown(values, known, "train-models setting(s)", LISTING)
    for key, value in values.items():
        stage = key.partition(".")[0]
        if "." in key and stage in values and values[stage] is None:
            raise InputError(f"{key} is set, but {stage} is null (skipped); drop one of the two.")
        f, hint, default = known[key]
        if dataclasses.is_dataclass(default):
            skippable = type(None) in typing.get_args(hint)
            if value is not None or not skippable:
                takes = "null (to skip the stage), or " if skippable else ""
                raise InputError(f"{key} takes {takes}its fields as {key}.FIELD; got {value!r}.")
            setattr(config, key, None)
            continue
        try:
            converted = _converted(value, hint)
        except _Mismatch:
            raise InputError(f"{key} must be {_describe(hint)}; got {value!r}.") from None
        owner = config
        for part in key.split(".")[:-1]:
            owner = getattr(owner, part)
        setattr(owner, f.name, converted)
    return config


def read_settings(path: str | Path | None = None, sets: Sequence[str] = ()) -> ShapeWorldTrainConfig:
    """The run's config: the defaults, then the settings file at ``path`` (flat YAML), then ``sets``
    (``["key=value", ...]``), checked as a whole (:meth:`ShapeWorldTrainConfig.check`)."""
    from segzero.train.config import parse_overrides, read_recipe

    values = {}
    if path is not None:
        if not Path(path).is_file():
            raise InputError(
                f"The settings file {path} does not exist; write `key: value` lines (see `{LISTING}`)."
            )
        values = read_recipe(path)
    values.update(parse_overrides(sets))
    config = apply_settings(ShapeWorldTrainConfig(), values)
    config.check()
    return config
