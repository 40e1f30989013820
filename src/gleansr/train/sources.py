"""What training reads from outside ``train/``: preset recipes, weight files, GLEAN and bank loaders.

Every such fact or reader is reached through this one module, so that moving to the model zoo
(``gleansr.zoo``: ``get_entry(name).recipe``, ``weights_file``, ``VGG16_WEIGHTS``) and the one
loader (``gleansr.loading``: ``load_bank``, ``load_glean``, ``read_training_checkpoint``) is an
edit of this file alone. The names below mirror those contracts (``WeightsSource``,
``TrainingRecipe`` with the same fields).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GleanError
from ..models.glean import GLEANConfig, GLEANStyleGANv2


@dataclass(frozen=True)
class WeightsSource:
    """One downloadable file: its cache name, URL and the SHA-256 prefix it is checked against."""

    filename: str
    url: str | None = None
    sha256_prefix: str | None = None


@dataclass(frozen=True)
class TrainingRecipe:
    """What upstream trained a preset with (MMEditing 0.x configs)."""

    batch_size: int  # per process
    processes: int  # upstream world size: total batch = batch_size * processes
    degradations: bool  # LR made on the fly by the in128 degradations
    perceptual_input_range: str  # "[-1,1]" or "[0,1]"
    bank: WeightsSource | None  # the pretrained StyleGAN2 (generator_ema -> bank, discriminator -> D)

    @property
    def total_batch(self) -> int:
        return self.batch_size * self.processes


VGG16_WEIGHTS = WeightsSource("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth",
                              "397923af")

# Read from the released MMEditing configs: (batch per GPU, GPUs: the "2x8" / "2x4" / "4x2" of the
# config names, LR degraded on the fly, the range images enter VGG's normalisation in: norm_img=False
# feeds the [-1, 1] images as they are, norm_img=True maps them to [0, 1] first).
_RECIPES = {
    "glean_cat_8x": (8, 2, False, "[-1,1]"),
    "glean_cat_16x": (8, 2, False, "[-1,1]"),
    "glean_ffhq_16x": (4, 2, False, "[-1,1]"),
    "glean_in128out1024_4x2_300k_ffhq_celebahq": (2, 4, True, "[0,1]"),
}


def preset_names() -> tuple[str, ...]:
    """The models that can be trained by name (those with an upstream recipe)."""
    return tuple(_RECIPES)


def preset_model(name: str) -> GLEANConfig:
    from ..presets import get_preset

    return get_preset(name).config


def preset_recipe(name: str) -> TrainingRecipe:
    """The training recipe of preset ``name`` (GleanError if it has none)."""
    from ..hub import sha256_prefix_from_name
    from ..presets import get_preset

    preset = get_preset(name)
    if name not in _RECIPES:
        raise GleanError(f"model {name!r} has no upstream training recipe; give a .json/.toml config")
    bank = WeightsSource(preset.bank_filename, preset.bank_url, sha256_prefix_from_name(preset.bank_filename))
    return TrainingRecipe(*_RECIPES[name], bank=bank)


def weights_file(source: WeightsSource, download: bool = False) -> Path:
    """The cached copy of ``source`` (downloaded and verified with ``download``); offline: a
    one-line GleanError naming the URL and the cache path. Never builds a model."""
    from ..hub import resolve_weights

    return resolve_weights(source.filename, source.url or "", source.sha256_prefix, download_ok=download)


def load_bank(path: str | os.PathLike) -> Any:
    """Any StyleGAN2 bank file -> an object with ``.generator``, ``.generator_config`` and
    ``.discriminator`` (state dict or None), all in gleansr's layout, checked strictly."""
    from ..convert import load_bank as read_bank

    return read_bank(path)


def load_glean(path: str | os.PathLike) -> GLEANStyleGANv2:
    """A GLEAN generator from any GLEAN file (release, export, bare state dict), for ``--init``."""
    from ..checkpoints import load_glean as read_glean

    return read_glean(path)


def read_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A training checkpoint's dict (CPU tensors); CheckpointError if it is not one or is damaged."""
    from .state import read_training_checkpoint as read

    return read(path)


def init_from_bank(glean: GLEANStyleGANv2, path: str | os.PathLike) -> dict[str, Any] | None:
    """Load a bank file's (EMA) generator into ``glean.generator`` (strict; sizes checked);
    return its discriminator's state dict (gleansr layout) or None if the file has none."""
    from ..bank import init_glean_from_bank

    return init_glean_from_bank(glean, path)


def load_strict(module: Any, state: Any, source: str) -> Any:
    """``module.load_state_dict(state)`` with one-line errors naming ``source`` (every key, every shape)."""
    from ..checkpoints import load_state_dict_strict

    return load_state_dict_strict(module, state, source)
