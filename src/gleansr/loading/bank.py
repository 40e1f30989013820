"""StyleGAN2 banks from any supported file, in gleansr's (MMGeneration's) key layout.

One adapter module per source format, each with ``detect(obj) -> bool`` and
``convert(obj) -> (generator_state, discriminator_state | None, config)`` (``config``: typed
:mod:`gleansr.arch` configs under ``generator`` / ``discriminator``), driven by an explicit key
table (:mod:`.rules`):

- :mod:`.mmgen`: MMGeneration/MMEditing official weights and gleansr bank checkpoints
  (``generator_ema.`` / ``generator.`` / ``discriminator.`` prefixes; keys already ours);
- :mod:`.rosinality`: rosinality/stylegan2-pytorch ``.pt`` files (``g_ema``, ``d``);
- :mod:`.nvidia`: NVlabs/stylegan2-ada-pytorch ``.pkl`` network pickles (restricted unpickler).

gleansr's own exports (``gleansr convert``, ``gleansr bank train``: a bare generator
safetensors with its sibling ``<stem>.discriminator.safetensors``) and bank run folders are read
directly. A stored architecture is validated as data and held against the file's tensors
(:func:`check_sizes`) before anything is built; every result is then checked by building both
networks strictly.
"""
from __future__ import annotations

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from ..arch import DiscriminatorConfig, StyleGAN2Config
from ..errors import CheckpointError
from ..models.discriminator import StyleGAN2Discriminator
from ..models.glean import GLEANStyleGANv2
from ..models.stylegan2 import StyleGAN2Generator
from .configs import check_sizes, checked
from .read import RawFile, read_file, summarize
from .strict import SAFETENSORS_ARCH_KEY, SAFETENSORS_CONFIG_KEY, load_state_dict_strict

FORMATS = ("mmgen", "rosinality", "nvidia")
GENERATOR_ARCH = "StyleGAN2Generator"
DISCRIMINATOR_ARCH = "StyleGAN2Discriminator"
BANK_FILE = "bank.safetensors"  # what a bank run folder exports
GLEAN_ENCODER_KEY = "encoder.0.0.conv_first.weight"  # present in every GLEAN state dict


@dataclass
class BankWeights:
    """A StyleGAN2 bank in our layout, with the architecture of both networks."""

    generator: dict[str, torch.Tensor]
    generator_config: StyleGAN2Config
    discriminator: dict[str, torch.Tensor] | None = None
    discriminator_config: DiscriminatorConfig | None = None
    source_format: str = "gleansr"
    notes: list[str] = field(default_factory=list)

    def build_generator(self, source: str = "bank") -> StyleGAN2Generator:
        """A StyleGAN2Generator with these weights, loaded strictly (every key, every shape)."""
        check_sizes(self.generator, self.generator_config.state_size(), f"{source} (generator)")
        g = StyleGAN2Generator.from_config(self.generator_config)
        return load_state_dict_strict(g, self.generator, f"{source} (generator)")

    def build_discriminator(self, source: str = "bank") -> StyleGAN2Discriminator | None:
        if self.discriminator is None or self.discriminator_config is None:
            return None
        check_sizes(self.discriminator, self.discriminator_config.state_size(), f"{source} (discriminator)")
        d = StyleGAN2Discriminator.from_config(self.discriminator_config)
        return load_state_dict_strict(d, self.discriminator, f"{source} (discriminator)")



def _adapters() -> dict[str, Any]:
    from . import mmgen, nvidia, rosinality

    return {"mmgen": mmgen, "rosinality": rosinality, "nvidia": nvidia}


def read_source(path: str | os.PathLike) -> Any:
    """The object stored in ``path`` under the one safety policy (see :func:`.read.read_file`)."""
    return read_file(path).obj


def _keys(obj: Any) -> list[Any]:
    """Top-level keys of a mapping, and those under its ``state_dict``."""
    if not isinstance(obj, Mapping):
        return []
    inner = obj.get("state_dict")
    return list(obj) + (list(inner) if isinstance(inner, Mapping) else [])


def detected_layouts(obj: Any) -> list[str]:
    """Names of the adapters that recognise ``obj`` (exactly one for any file they can read)."""
    return [name for name, adapter in _adapters().items() if adapter.detect(obj)]


def _refuse_glean(obj: Any, path: str | os.PathLike) -> None:
    """A GLEAN file (whose generator holds a bank's keys too) is named as such, not half-converted."""
    inner = obj.get("generator") if isinstance(obj, Mapping) else None
    training = isinstance(inner, Mapping) and any(str(k).endswith(GLEAN_ENCODER_KEY) for k in inner)
    if training or any(str(k).endswith(GLEAN_ENCODER_KEY) for k in _keys(obj)):
        what = "a GLEAN training checkpoint (gleansr export makes a release file of it)" if training else \
            "already a GLEAN model file"
        raise CheckpointError(f"{path} is {what}, not a StyleGAN2 bank: convert, bank sample and train --bank take "
                              "StyleGAN2 banks (MMGeneration, rosinality or NVIDIA files); a GLEAN file is used as "
                              "it is, with --weights (upscale, eval, demo) or --init (train)")


def detect_format(obj: Any, path: str | os.PathLike = "checkpoint") -> str:
    """Name of the one adapter that recognises ``obj``; the error says what the file holds."""
    _refuse_glean(obj, path)
    found = detected_layouts(obj)
    if len(found) != 1:
        what = "no known StyleGAN2 layout" if not found else f"several layouts ({', '.join(found)})"
        raise CheckpointError(f"{path}: {what} recognised (MMGeneration, rosinality or NVIDIA) in what it holds: "
                              f"{summarize(obj)}; pass --from {'|'.join(FORMATS)} to force one")
    return found[0]


def discriminator_path(generator_path: str | os.PathLike) -> Path:
    """Where the exported discriminator sits beside an exported generator ``bank.safetensors``."""
    p = Path(generator_path)
    return p.with_name(f"{p.stem}.discriminator.safetensors")


def exported_bank(raw: RawFile) -> BankWeights | None:
    """A gleansr export (bare generator safetensors), with its sibling discriminator if present."""
    if raw.container != "safetensors" or raw.meta.get(SAFETENSORS_ARCH_KEY) != GENERATOR_ARCH:
        return None
    config = stored_config(raw.meta, raw.path, StyleGAN2Config.from_dict)
    weights = BankWeights(raw.obj, config, source_format="gleansr-bank")
    d_path = discriminator_path(raw.path)
    if d_path.is_file():
        d_raw = read_file(d_path)
        weights.discriminator, weights.discriminator_config = d_raw.obj, stored_config(d_raw.meta, d_path,
                                                                                    DiscriminatorConfig.from_dict)
    return weights


def stored_config(meta: Mapping[str, Any], path: str | os.PathLike, parse: Any) -> Any:
    """The architecture a gleansr file records in its metadata (JSON text), parsed by ``parse`` (a
    ``from_dict``); missing, unreadable or impossible metadata is one CheckpointError naming the file."""
    text = meta.get(SAFETENSORS_CONFIG_KEY)
    if not isinstance(text, str):
        raise CheckpointError(f"{path}: no {SAFETENSORS_CONFIG_KEY!r} metadata (the architecture)")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise CheckpointError(f"{path}: {SAFETENSORS_CONFIG_KEY!r} metadata is not JSON") from None
    return checked(lambda: parse(data), f"{path}: invalid {SAFETENSORS_CONFIG_KEY!r} metadata")


def bank_from_raw(raw: RawFile, fmt: str = "auto") -> BankWeights:
    """Convert what :func:`read_file` found with the matching (or the forced) adapter."""
    weights = exported_bank(raw) if fmt == "auto" else None
    if weights is not None:
        return weights
    _refuse_glean(raw.obj, raw.path)
    fmt = detect_format(raw.obj, raw.path) if fmt == "auto" else fmt
    adapter = _adapters()[fmt]
    if not adapter.detect(raw.obj):
        raise CheckpointError(f"{raw.path} is not in the {fmt} layout ({summarize(raw.obj)})")
    try:
        g_state, d_state, config = adapter.convert(raw.obj)
    except CheckpointError as exc:
        raise CheckpointError(f"{raw.path}: {exc}") from None
    return BankWeights(g_state, config["generator"], d_state, config.get("discriminator"), fmt,
                       list(config.get("notes", [])))


def load_bank(path: str | os.PathLike, fmt: str = "auto") -> BankWeights:
    """Any supported bank file (or a bank run folder) -> :class:`BankWeights`, checked by building both networks."""
    path = Path(path)
    if fmt not in ("auto", *FORMATS):
        raise CheckpointError(f"unknown format {fmt!r}; choose auto or one of: {', '.join(FORMATS)}")
    if path.is_dir():
        if not (path / BANK_FILE).is_file():
            raise CheckpointError(f"{path} is a folder without {BANK_FILE}; give a bank file or a bank run folder")
        path = path / BANK_FILE
    weights = bank_from_raw(read_file(path), fmt)
    weights.build_generator(str(path))
    weights.build_discriminator(str(path))
    return weights


def load_bank_generator(path: str | os.PathLike, fmt: str = "auto") -> StyleGAN2Generator:
    """The bank's (EMA) generator, built from the file's config and loaded strictly, in eval mode."""
    return load_bank(path, fmt).build_generator(str(path)).eval()


def check_bank_fits(glean: GLEANStyleGANv2, cfg: StyleGAN2Config, path: str | os.PathLike) -> None:
    """One line naming both architectures when a bank cannot be GLEAN's latent bank (the shapes must
    agree; ``lr_mlp`` and the blur taps' values do not change them)."""
    want = glean.config.bank
    if dataclasses.replace(cfg, lr_mlp=want.lr_mlp, blur_kernel=want.blur_kernel) != want:
        raise CheckpointError(f"{path}: the bank in this file is {cfg.describe()}; this GLEAN "
                              f"({glean.config.in_size} -> {glean.config.out_size}) needs a bank of {want.describe()}")


def init_glean_from_bank(glean: GLEANStyleGANv2, path: str | os.PathLike, fmt: str = "auto",
                         discriminator: torch.nn.Module | None = None) -> dict[str, torch.Tensor] | None:
    """Load a bank's (EMA) generator into ``glean.generator``, and its discriminator into ``discriminator``.

    Returns the bank's discriminator state (our layout) or None, as upstream starts GLEAN's
    discriminator from the StyleGAN2 one. A ``discriminator`` given but absent from the file is an error.
    """
    weights = load_bank(path, fmt)
    check_bank_fits(glean, weights.generator_config, path)
    load_state_dict_strict(glean.generator, weights.generator, f"{path} (bank generator)")
    if discriminator is not None and weights.discriminator is None:
        warnings.warn(f"{path} holds no StyleGAN2 discriminator (for an export: {discriminator_path(path).name} "
                      "beside it): GLEAN's discriminator starts random", stacklevel=2)
    elif discriminator is not None:
        load_state_dict_strict(discriminator, weights.discriminator, f"{path} (bank discriminator)")
    return weights.discriminator
