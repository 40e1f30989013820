"""Training configuration: one frozen dataclass, built from a preset or a JSON/TOML file.

A config holds the hyper-parameters of a run (the model's :class:`GLEANConfig` under ``model``),
never paths: data folders, the run folder and weight files are command-line arguments. Sources,
later ones winning:

1. a preset's recipe (``glean_cat_8x`` ...), or a file whose optional ``"preset"`` key names the
   recipe it starts from (a file without one must give ``model.in_size`` and ``model.out_size``);
2. the file's other keys (``"model"`` is a table of GLEANConfig fields);
3. ``--set key=value`` overrides, typed by the field (``--set model.in_size=16``,
   ``--set betas=0.9,0.99``, ``--set flip=false``).

Unknown keys and values of the wrong type are one-line :class:`GleanError`\\ s naming the key.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import GleanError
from ..models.glean import GLEANConfig
from ..zoo import ZOO, get_entry, unknown_model_message

from ..precision import PRECISIONS
VGG_INPUT_RANGES = ("[-1,1]", "[0,1]")

# Fields that may differ between a checkpoint and the command that resumes it: cadence and
# machinery, plus max_iters to extend a run. Everything else would not be the same run.
RESUMABLE_CHANGES = frozenset({"max_iters", "precision", "num_workers", "log_every", "val_every", "save_every",
                               "val_samples"})


@dataclass(frozen=True)
class TrainConfig:
    """GLEAN training hyper-parameters; defaults are MMEditing's recipe for the released presets.

    The learning rate follows MMCV's ``CosineRestartLrUpdater``: cosine from ``lr_*`` down to
    ``lr_min`` over each period of ``lr_periods`` (default: one period of ``max_iters``), the
    peak of period k scaled by ``lr_restart_weights[k]``.
    """

    model: GLEANConfig
    preset: str = ""  # the recipe this config started from ("" for a custom model)
    batch_size: int = 8  # per process (per GPU); the global batch is batch_size * world size
    max_iters: int = 300_000
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    lr_min: float = 1e-7
    lr_periods: tuple[int, ...] = ()
    lr_restart_weights: tuple[float, ...] = ()
    pixel_weight: float = 1.0
    perceptual_weight: float = 1e-2
    perceptual_layer: int = 21  # VGG16 features index: conv4_3 before its ReLU
    perceptual_input_range: str = "[-1,1]"  # range the images enter VGG's normalisation in
    gan_weight: float = 1e-2
    mbstd_group_size: int = 4  # discriminator minibatch-stddev group (per process batch)
    degrade: bool = False  # LR made by the in128 on-the-fly degradations instead of bicubic
    flip: bool = True  # horizontal flip augmentation (p = 0.5)
    seed: int = 0
    precision: str = "fp32"
    num_workers: int = 4
    log_every: int = 100
    val_every: int = 5000
    save_every: int = 5000
    val_samples: int = 4  # validation images saved as LR-bicubic | SR | HR strips

    def __post_init__(self) -> None:
        m = self.model
        if m.in_size < 4 or m.in_size & (m.in_size - 1) or m.out_size & (m.out_size - 1) or m.in_size >= m.out_size:
            raise ValueError(f"model sizes must be powers of two with 4 <= in_size < out_size, "
                             f"got {m.in_size} -> {m.out_size}")
        positive = ("batch_size", "max_iters", "log_every", "val_every", "save_every", "perceptual_layer",
                    "mbstd_group_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("seed", "num_workers", "val_samples", "lr_g", "lr_d", "lr_min", "pixel_weight",
                     "perceptual_weight", "gan_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.perceptual_input_range not in VGG_INPUT_RANGES:
            raise ValueError(f"perceptual_input_range must be one of {', '.join(VGG_INPUT_RANGES)}, "
                             f"got {self.perceptual_input_range!r}")
        if self.preset and self.preset not in ZOO:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of: {', '.join(ZOO)}")
        if any(p < 1 for p in self.lr_periods):
            raise ValueError(f"lr_periods must be positive, got {self.lr_periods}")
        if self.lr_restart_weights and len(self.lr_restart_weights) != len(self.periods):
            raise ValueError(f"lr_restart_weights needs one weight per period ({len(self.periods)}), "
                             f"got {len(self.lr_restart_weights)}")
        if sum(self.periods) < self.max_iters:
            raise ValueError(f"lr_periods {self.lr_periods} cover {sum(self.periods)} iterations, "
                             f"fewer than max_iters {self.max_iters}")

    @property
    def periods(self) -> tuple[int, ...]:
        return self.lr_periods or (self.max_iters,)

    @property
    def restart_weights(self) -> tuple[float, ...]:
        return self.lr_restart_weights or (1.0,) * len(self.periods)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict (``model`` as ``GLEANConfig.to_dict()``); inverse of :func:`config_from_dict`."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["model"] = self.model.to_dict()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def cosine_restart_lr(iteration: int, base_lr: float, config: TrainConfig) -> float:
    """Learning rate before running ``iteration`` (0-based count of iterations done), as MMCV's
    ``CosineRestartLrUpdater`` with ``by_epoch=False``; past the last period it stays at ``lr_min``."""
    start = 0
    for period, weight in zip(config.periods, config.restart_weights):
        if iteration < start + period:
            alpha = (iteration - start) / period
            return config.lr_min + 0.5 * weight * (base_lr - config.lr_min) * (math.cos(math.pi * alpha) + 1)
        start += period
    return config.lr_min


def preset_config(name: str) -> TrainConfig:
    """The recipe of zoo model ``name`` (batch per process, VGG input range, degradations, its settings)."""
    entry = get_entry(name)
    recipe = entry.recipe
    if recipe is None:
        raise GleanError(f"{name} declares no training recipe; give a .json/.toml config")
    config = TrainConfig(model=entry.config, preset=name, batch_size=recipe.batch_size,
                         perceptual_input_range=recipe.perceptual_input_range, degrade=recipe.degradations)
    return dataclasses.replace(config, **dict(recipe.settings))


# --- typed values -------------------------------------------------------------------------

_HINTS = {TrainConfig: typing.get_type_hints(TrainConfig), GLEANConfig: typing.get_type_hints(GLEANConfig)}


def _field_type(key: str) -> Any:
    """Type of dotted ``key`` (``batch_size``, ``model.in_size``); GleanError if unknown."""
    head, _, rest = key.partition(".")
    if head == "model" and rest:
        hints, name, known = _HINTS[GLEANConfig], rest, "model." + ", model.".join(_HINTS[GLEANConfig])
    else:
        hints, name, known = _HINTS[TrainConfig], key, ", ".join(k for k in _HINTS[TrainConfig] if k != "model")
    if name not in hints or name == "model" or "." in name:
        raise GleanError(f"unknown config key {key!r} (known: {known})")
    return hints[name]


def _coerce(key: str, value: Any, kind: Any, from_text: bool) -> Any:
    """``value`` as type ``kind``; GleanError otherwise. Strings are parsed only ``from_text``
    (--set); values from JSON/TOML files must already have the right type."""
    origin = typing.get_origin(kind)
    if origin is tuple:
        if isinstance(value, str) and from_text:
            text = value.strip()
            try:
                items = json.loads(text) if text.startswith("[") else [v for v in text.split(",") if v.strip()]
            except json.JSONDecodeError:
                raise GleanError(f"config key {key!r}: expected a list like 1,2 or [1, 2], got {value!r}") from None
            if not isinstance(items, list):
                raise GleanError(f"config key {key!r}: expected a list, got {value!r}")
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise GleanError(f"config key {key!r}: expected a list, got {value!r}")
        args = typing.get_args(kind)
        element = args[0]
        if args[-1] is not Ellipsis and len(items) != len(args):
            raise GleanError(f"config key {key!r}: expected {len(args)} values, got {len(items)}")
        return tuple(_coerce(key, item, element, from_text and isinstance(value, str)) for item in items)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if from_text and isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_text and isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if from_text and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, str):
            return value
    name = getattr(kind, "__name__", str(kind))
    raise GleanError(f"config key {key!r}: expected {name}, got {value!r}")


def _build(train: Mapping[str, Any], model: Mapping[str, Any], source: str) -> TrainConfig:
    try:
        return TrainConfig(model=GLEANConfig(**model), **train)
    except (TypeError, ValueError) as exc:
        raise GleanError(f"{source}: {exc}") from None


def with_overrides(config: TrainConfig, values: Mapping[str, Any], source: str = "--set") -> TrainConfig:
    """A copy of ``config`` with dotted keys replaced, each coerced to its field's type.

    String values are parsed (``"3"`` -> 3) only when ``source`` is ``"--set"``.
    """
    train = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "model"}
    model = dataclasses.asdict(config.model)
    for key, value in values.items():
        try:
            typed = _coerce(key, value, _field_type(key), from_text=source == "--set")
        except GleanError as exc:
            raise GleanError(f"{source}: {exc}") from None
        if key.startswith("model."):
            model[key[len("model."):]] = typed
        else:
            train[key] = typed
    return _build(train, model, source)


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    """``["a=1", "model.b=x"]`` -> ``{"a": "1", "model.b": "x"}``; checks keys exist."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise GleanError(f"--set expects key=value, got {item!r}")
        _field_type(key.strip())
        out[key.strip()] = value.strip()
    return out


def _flatten(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """File keys -> dotted keys; a ``model`` table becomes ``model.*``."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key == "model":
            if not isinstance(value, Mapping):
                raise GleanError(f"{source}: 'model' must be a table of GLEANConfig fields, got {value!r}")
            flat.update({f"model.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def config_from_dict(data: Mapping[str, Any], source: str = "config") -> TrainConfig:
    """Config from a (possibly partial) nested dict; its ``preset`` key picks the base recipe."""
    data = dict(data)
    preset = data.get("preset") or ""
    if not isinstance(preset, str):
        raise GleanError(f"{source}: 'preset' must be a preset name, got {preset!r}")
    flat = _flatten(data, source)
    if preset:
        return with_overrides(preset_config(preset), flat, source)
    model = data.get("model") or {}
    if not isinstance(model, Mapping) or "in_size" not in model or "out_size" not in model:
        raise GleanError(f"{source}: a config without 'preset' must give model.in_size and model.out_size")
    base = TrainConfig(model=GLEANConfig(in_size=4, out_size=8))  # sizes replaced by the file's just below
    return with_overrides(base, flat, source)


def _read_file(path: Path) -> dict[str, Any]:
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


def load_config(source: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """A preset name or a ``.json`` / ``.toml`` file, then ``key=value`` overrides."""
    path = Path(source)
    if str(source) in ZOO:
        config = preset_config(str(source))
    elif path.suffix.lower() in (".json", ".toml") or path.exists():
        config = config_from_dict(_read_file(path), str(path))
    else:
        raise GleanError(f"{source!r} is neither a zoo model nor a .json/.toml config file: "
                         f"{unknown_model_message(str(source))}")
    return with_overrides(config, parse_overrides(overrides)) if overrides else config


def resume_conflict(saved: TrainConfig, requested: TrainConfig) -> str | None:
    """The first field (other than :data:`RESUMABLE_CHANGES`) where two configs differ, as text."""
    a, b = saved.to_dict(), requested.to_dict()
    for key in a:
        if key in RESUMABLE_CHANGES:
            continue
        if key == "model":
            for sub in a["model"]:
                if a["model"][sub] != b["model"][sub]:
                    return f"model.{sub} ({a['model'][sub]!r} in the checkpoint, {b['model'][sub]!r} now)"
        elif a[key] != b[key]:
            return f"{key} ({a[key]!r} in the checkpoint, {b[key]!r} now)"
    return None


