"""Typed ``key=value`` overrides, config files and resume checks, for any frozen config dataclass.

Both training configs (GLEAN's :class:`~gleansr.train.config.TrainConfig`, the bank's
:class:`~gleansr.train.bank.BankConfig`) are frozen dataclasses; a field whose type is itself a
dataclass (GLEAN's ``model``) is addressed with dotted keys (``model.in_size``). Values from
``--set`` are text and parsed by the field's type (``betas=0.9,0.99``, ``flip=false``); values
from JSON/TOML files must already have the right type; floats must be finite. Unknown keys and bad values are one-line
:class:`GleanError`\\ s naming the key.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import math
import sys
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

from ..errors import GleanError

C = TypeVar("C")


class Values(enum.Enum):
    """How override values arrive: ``TEXT`` (``--set`` strings, parsed by the field's type) or
    ``TYPED`` (from a JSON/TOML file or a checkpoint: already of the field's type)."""

    TEXT = "text"
    TYPED = "typed"


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _nested(cls: type) -> dict[str, type]:
    """Fields of ``cls`` that are dataclasses themselves (addressed as ``name.field``)."""
    return {name: kind for name, kind in _hints(cls).items() if dataclasses.is_dataclass(kind)}


def field_type(cls: type, key: str) -> Any:
    """Type of dotted ``key`` in config class ``cls``; GleanError naming the known keys if unknown."""
    head, _, rest = key.partition(".")
    nested = _nested(cls)
    hints = _hints(nested[head]) if head in nested and rest else _hints(cls)
    name = rest if head in nested and rest else key
    if name not in hints or name in nested or "." in name:
        known = [k for k in _hints(cls) if k not in nested]
        known += [f"{n}.{k}" for n, kind in nested.items() for k in _hints(kind)]
        raise GleanError(f"unknown config key {key!r} (known: {', '.join(known)})")
    return hints[name]


def _parse_list(key: str, value: Any, from_text: bool) -> list[Any]:
    if isinstance(value, str) and from_text:
        text = value.strip()
        try:
            items = json.loads(text) if text.startswith("[") else [v for v in text.split(",") if v.strip()]
        except json.JSONDecodeError:
            raise GleanError(f"config key {key!r}: expected a list like 1,2 or [1, 2], got {value!r}") from None
        if isinstance(items, list):
            return items
    elif isinstance(value, (list, tuple)):
        return list(value)
    raise GleanError(f"config key {key!r}: expected a list, got {value!r}")


def _scalar(value: Any, kind: Any, from_text: bool) -> Any:
    """``value`` as ``kind`` (bool, int, float, str), or a ValueError."""
    text = from_text and isinstance(value, str)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if text and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if text:
            return int(value)
    elif kind is float:  # finite: a NaN or infinite rate or weight is never meant
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        if text and math.isfinite(float(value)):
            return float(value)
    elif kind is str and isinstance(value, str):
        return value
    raise ValueError


def coerce(key: str, value: Any, kind: Any, from_text: bool) -> Any:
    """``value`` as type ``kind`` (scalars, tuples of scalars); GleanError otherwise."""
    if typing.get_origin(kind) is tuple:
        items = _parse_list(key, value, from_text)
        args = typing.get_args(kind)
        if args[-1] is not Ellipsis and len(items) != len(args):
            raise GleanError(f"config key {key!r}: expected {len(args)} values, got {len(items)}")
        return tuple(coerce(key, item, args[0], from_text and isinstance(value, str)) for item in items)
    if typing.get_origin(kind) is typing.Union:  # float | int (e.g. a channel multiplier): the first that fits
        for option in typing.get_args(kind):
            try:
                return _scalar(value, option, from_text)
            except ValueError:
                continue
    else:
        try:
            return _scalar(value, kind, from_text)
        except ValueError:
            pass
    name = "a finite float" if kind is float else getattr(kind, "__name__", str(kind))
    raise GleanError(f"config key {key!r}: expected {name}, got {value!r}")


def with_overrides(config: C, values: Mapping[str, Any], source: str = "--set", form: Values = Values.TEXT) -> C:
    """A copy of ``config`` with dotted keys replaced, each coerced to its field's type.

    String values are parsed (``"3"`` -> 3) only for ``form=Values.TEXT``; ``source`` names where
    the values came from in messages.
    """
    cls = type(config)
    nested = _nested(cls)
    top = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in nested}
    inner = {name: dataclasses.asdict(getattr(config, name)) for name in nested}
    for key, value in values.items():
        try:
            typed = coerce(key, value, field_type(cls, key), from_text=form is Values.TEXT)
        except GleanError as exc:
            raise GleanError(f"{source}: {exc}") from None
        head, _, rest = key.partition(".")
        if head in nested and rest:
            inner[head][rest] = typed
        else:
            top[key] = typed
    try:
        return cls(**top, **{name: nested[name](**fields) for name, fields in inner.items()})
    except (TypeError, ValueError) as exc:
        raise GleanError(f"{source}: {exc}") from None


def parse_overrides(cls: type, items: Sequence[str]) -> dict[str, str]:
    """``["a=1", "model.b=x"]`` -> ``{"a": "1", "model.b": "x"}``; checks the keys exist in ``cls``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise GleanError(f"--set expects key=value, got {item!r}")
        field_type(cls, key.strip())
        out[key.strip()] = value.strip()
    return out


def flatten(data: Mapping[str, Any], cls: type, source: str) -> dict[str, Any]:
    """File keys -> dotted keys; a table named after a nested field (``model``) becomes ``model.*``."""
    nested = _nested(cls)
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in nested:
            if not isinstance(value, Mapping):
                raise GleanError(f"{source}: {key!r} must be a table of {nested[key].__name__} fields, got {value!r}")
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def read_config_file(path: Path) -> dict[str, Any]:
    """A ``.json`` or ``.toml`` file as a dict (one-line GleanError if unreadable)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GleanError(f"cannot read config {path}: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            try:
                import tomli as tomllib
            except ModuleNotFoundError:
                raise GleanError(f"{path}: TOML configs need Python 3.11+ or the 'tomli' package; "
                                 "use a .json config") from None
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise GleanError(f"{path}: invalid TOML ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GleanError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise GleanError(f"{path}: a config must be a JSON object")
    return data


def resume_conflict(saved: Mapping[str, Any], requested: Mapping[str, Any], resumable: frozenset[str]) -> str | None:
    """The first field (other than ``resumable``) where two config dicts differ, as text."""
    for key, old in saved.items():
        if key in resumable:
            continue
        new = requested.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            for sub in old:
                if old[sub] != new.get(sub):
                    return f"{key}.{sub} ({old[sub]!r} in the checkpoint, {new.get(sub)!r} now)"
        elif old != new:
            return f"{key} ({old!r} in the checkpoint, {new!r} now)"
    return None


def resolve_run_config(requested: C | None, overrides: Mapping[str, str], previous: C | None, source: str, *,
                       resumable: frozenset[str], start_only: frozenset[str] = frozenset(),
                       adjust: typing.Callable[[C], C] | None = None) -> C:
    """A run's config, the same way for every recipe: ``requested`` (None: the checkpoint's), then the
    ``--set`` ``overrides``, then ``adjust``; on resume (``previous`` from the checkpoint in
    ``source``) the ``start_only`` fields are the checkpoint's and only ``resumable`` fields may differ."""
    base = requested if requested is not None else previous
    if base is None:
        raise GleanError("no config given and no checkpoint to resume from; pass a preset or a config file")
    config = with_overrides(base, overrides)
    if adjust is not None:
        config = adjust(config)
    if previous is not None:
        config = dataclasses.replace(config, **{k: getattr(previous, k) for k in start_only})  # type: ignore[type-var]
        check_resume(previous.to_dict(), config.to_dict(), resumable, source)  # type: ignore[attr-defined]
    return config


def check_resume(saved: Mapping[str, Any], requested: Mapping[str, Any], resumable: frozenset[str],
                 source: str) -> None:
    """GleanError when ``requested`` is not the run saved in ``source`` (beyond ``resumable`` fields)."""
    conflict = resume_conflict(saved, requested, resumable)
    if conflict:
        raise GleanError(f"cannot resume {source}: config field {conflict} differs; only "
                         f"{', '.join(sorted(resumable))} may change on resume (or use a new --out)")
