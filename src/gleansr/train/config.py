"""GLEAN training configuration: one frozen dataclass, built from a preset or a JSON/TOML file.

A config holds the hyper-parameters of a run (the model's :class:`GLEANConfig` under ``model``)
and where its starting weights come from (``bank``, ``discriminator``, ``init``), never data or
run folders. Sources, later ones winning:

1. a preset's recipe (``glean_cat_8x`` ...), or a file whose optional ``"preset"`` key names the
   recipe it starts from (a file without one must give ``model.in_size`` and ``model.out_size``);
2. the file's other keys (``"model"`` is a table of GLEANConfig fields);
3. ``--set key=value`` overrides, typed by the field (``--set model.in_size=16``,
   ``--set betas=0.9,0.99``, ``--set flip=false``), see :mod:`gleansr.train.overrides`.
"""
from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..arch import DiscriminatorConfig
from ..errors import GleanError
from ..glean_config import GLEANConfig
from ..precision import PRECISIONS
from ..zoo import ZOO, get_entry, trainable_names, unknown_model_message
from .distributed import default_num_workers
from .overrides import Values, flatten, parse_overrides, read_config_file, with_overrides

VGG_INPUT_RANGES = ("[-1,1]", "[0,1]")
RANDOM = "random"  # the bank / discriminator value that asks for random initial weights
PRETRAINED = "pretrained"  # the preset's own StyleGAN2
FROM_INIT = "init"  # the bank that comes inside the --init GLEAN file (the discriminator starts random)

# A fine-tune (a run started with --init) of a converged model: Adam's first steps move every
# weight by about the learning rate whatever its gradient, so the preset's rate without a warm-up
# knocks the model back; warmed up over 20 iterations, every rate measured improved
# glean_glyphs_8x, 1e-4 to 2e-4 the most; 1e-4, the lower end, is the recipe (README "Fine-tuning
# a model on your own data"). Keys given with --set win.
FINETUNE_SETTINGS: tuple[tuple[str, Any], ...] = (("lr_g", 1e-4), ("lr_d", 1e-4), ("warmup_iters", 20))

# Fields that may differ between a checkpoint and the command that resumes it: cadence and
# machinery, plus max_iters to extend a run. Everything else would not be the same run.
RESUMABLE_CHANGES = frozenset({"max_iters", "precision", "num_workers", "log_every", "val_every", "save_every",
                               "val_samples"})
# Where a fresh run's weights came from: read only at the start, kept from the checkpoint on resume.
START_ONLY = frozenset({"bank", "discriminator", "init"})


class BankChoice(enum.Enum):
    """Where a fresh GLEAN run's latent bank (and discriminator) come from."""

    UNSET = ""  # a custom config that names none: an error unless --init or the no-bank ablation
    PRETRAINED = PRETRAINED  # the preset's own StyleGAN2, downloaded and verified
    RANDOM = RANDOM  # random bank and discriminator (not GLEAN's recipe)
    INIT = FROM_INIT  # the bank inside the --init GLEAN file
    FILE = "file"  # a StyleGAN2 file of any format the loader reads


@dataclass(frozen=True)
class BankSource:
    """``TrainConfig.bank`` read once: the choice, and the file for ``FILE``."""

    choice: BankChoice
    path: Path | None = None

    @classmethod
    def parse(cls, value: str) -> "BankSource":
        if value in ("", PRETRAINED, RANDOM, FROM_INIT):
            return cls(BankChoice(value))
        return cls(BankChoice.FILE, Path(value).expanduser())


@dataclass(frozen=True)
class TrainConfig:
    """GLEAN training hyper-parameters; defaults are MMEditing's recipe for the released presets.

    The learning rate follows MMCV's ``CosineRestartLrUpdater``: cosine from ``lr_*`` down to
    ``lr_min`` over each period of ``lr_periods`` (default: one period of ``max_iters``), the
    peak of period k scaled by ``lr_restart_weights[k]``.
    """

    model: GLEANConfig
    preset: str = ""  # the recipe this config started from ("" for a custom model)
    bank: str = ""  # "pretrained" (a preset's StyleGAN2), "random", "init" (the --init file's), or a file's path
    discriminator: str = ""  # "" (from the bank's file) or "random"
    init: str = ""  # a zoo name or GLEAN file the generator starts from (MMagic's load_from)
    batch_size: int = 8  # per process (per GPU) and micro-batch
    accumulate: int = 1  # micro-batches per step: the total batch is batch_size * accumulate * world size
    max_iters: int = 300_000
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    lr_min: float = 1e-7
    lr_periods: tuple[int, ...] = ()
    lr_restart_weights: tuple[float, ...] = ()
    warmup_iters: int = 0  # linear warm-up of both learning rates over the first N iterations
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
    num_workers: int = dataclasses.field(default_factory=default_num_workers)
    log_every: int = 100
    val_every: int = 5000
    save_every: int = 5000
    val_samples: int = 4  # validation images saved as LR-bicubic | SR | HR strips

    def __post_init__(self) -> None:
        positive = ("batch_size", "accumulate", "max_iters", "log_every", "val_every", "save_every", "perceptual_layer",
                    "mbstd_group_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("seed", "num_workers", "warmup_iters", "val_samples", "lr_g", "lr_d", "lr_min", "pixel_weight",
                     "perceptual_weight", "gan_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not all(0 <= beta < 1 for beta in self.betas):
            raise ValueError(f"betas must be in [0, 1), got {self.betas}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.perceptual_input_range not in VGG_INPUT_RANGES:
            raise ValueError(f"perceptual_input_range must be one of {', '.join(VGG_INPUT_RANGES)}, "
                             f"got {self.perceptual_input_range!r}")
        if self.preset and self.preset not in preset_names():
            raise ValueError(f"unknown preset {self.preset!r}; choose one of: {', '.join(preset_names())}")
        if self.bank_source.choice is BankChoice.PRETRAINED and not self.preset:
            raise ValueError("bank 'pretrained' is a preset's StyleGAN2; give the bank file's path or 'random'")
        if self.bank_source.choice is BankChoice.INIT and not self.init:
            raise ValueError("bank 'init' is the bank inside the --init file; pass --init FILE or another bank")
        if self.discriminator not in ("", RANDOM):
            raise ValueError(f"discriminator must be '' (from the bank file) or 'random', got {self.discriminator!r}")
        if any(p < 1 for p in self.lr_periods):
            raise ValueError(f"lr_periods must be positive, got {self.lr_periods}")
        if self.lr_restart_weights and len(self.lr_restart_weights) != len(self.periods):
            raise ValueError(f"lr_restart_weights needs one weight per period ({len(self.periods)}), "
                             f"got {len(self.lr_restart_weights)}")
        if sum(self.periods) < self.max_iters:
            raise ValueError(f"lr_periods {self.lr_periods} cover {sum(self.periods)} iterations, "
                             f"fewer than max_iters {self.max_iters}")

    @property
    def bank_source(self) -> BankSource:
        return BankSource.parse(self.bank)

    @property
    def discriminator_config(self) -> DiscriminatorConfig:
        """The discriminator this run trains: its bank's, with this run's minibatch-stddev group."""
        return self.model.discriminator(self.mbstd_group_size)

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


def scheduled_lr(iteration: int, base_lr: float, config: TrainConfig) -> float:
    """Learning rate before running ``iteration``: :func:`cosine_restart_lr`, ramped up linearly
    over the first ``warmup_iters`` iterations (MMCV's ``warmup="linear"`` with ``warmup_ratio=0``:
    iteration i runs at (i + 1) / warmup_iters of the scheduled rate), so a converged model's
    Adam statistics settle before it takes full steps."""
    lr = cosine_restart_lr(iteration, base_lr, config)
    if iteration < config.warmup_iters:
        lr *= (iteration + 1) / config.warmup_iters
    return lr


def with_init(config: TrainConfig, given: Mapping[str, Any]) -> tuple[TrainConfig, list[str]]:
    """``config`` for a run started from ``init`` given on the command line (``given``: the keys
    the user set): the init file's own bank unless a bank was named, and the fine-tune learning
    rates (:data:`FINETUNE_SETTINGS`) unless set. Returns the config and a note saying so."""
    if not config.init or "init" not in given:
        return config, []
    changes: dict[str, Any] = {}
    if "bank" not in given and config.bank in ("", PRETRAINED, RANDOM):  # a preset's or a file's default
        changes["bank"] = FROM_INIT
    tuned = {key: value for key, value in FINETUNE_SETTINGS if key not in given}
    changes.update(tuned)
    notes = []
    if tuned:
        what = ", ".join(f"{key}={value:g}" for key, value in tuned.items())
        notes.append(f"fine-tuning from {config.init}: {what} (the fine-tune recipe; --set KEY=VALUE to change)")
    return dataclasses.replace(config, **changes), notes


def preset_config(name: str) -> TrainConfig:
    """The released recipe of preset ``name``: its model, batch per process, VGG input range,
    degradations and pretrained bank."""
    recipe = get_entry(name).recipe
    if recipe is None:
        raise GleanError(f"{name} declares no training recipe; choose one of: {', '.join(preset_names())} "
                         "(or give a .json/.toml file)")
    config = TrainConfig(model=get_entry(name).config, preset=name, bank=PRETRAINED, batch_size=recipe.batch_size,
                         perceptual_input_range=recipe.perceptual_input_range, degrade=recipe.degradations)
    return dataclasses.replace(config, **dict(recipe.settings))


def preset_names() -> tuple[str, ...]:
    """The zoo models that can be trained by name (those that declare a recipe)."""
    return tuple(trainable_names())


def config_from_dict(data: Mapping[str, Any], source: str = "config") -> TrainConfig:
    """Config from a (possibly partial) nested dict; its ``preset`` key picks the base recipe."""
    data = dict(data)
    preset = data.get("preset") or ""
    if not isinstance(preset, str):
        raise GleanError(f"{source}: 'preset' must be a preset name, got {preset!r}")
    flat = flatten(data, TrainConfig, source)
    if preset:
        return with_overrides(preset_config(preset), flat, source, Values.TYPED)
    model = data.get("model") or {}
    if not isinstance(model, Mapping) or "in_size" not in model or "out_size" not in model:
        raise GleanError(f"{source}: a config without 'preset' must give model.in_size and model.out_size")
    base = TrainConfig(model=GLEANConfig(in_size=4, out_size=8))  # sizes replaced by the file's just below
    return with_overrides(base, flat, source, Values.TYPED)


def load_config(source: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """A preset name or a ``.json`` / ``.toml`` file, then ``key=value`` overrides."""
    path = Path(source)
    if str(source) in ZOO:
        config = preset_config(str(source))
    elif path.suffix.lower() in (".json", ".toml") or path.exists():
        config = config_from_dict(read_config_file(path), str(path))
    else:
        raise GleanError(f"{source!r} is neither a zoo model nor a .json/.toml config file: "
                         f"{unknown_model_message(str(source))}")
    return with_overrides(config, parse_overrides(TrainConfig, overrides)) if overrides else config
