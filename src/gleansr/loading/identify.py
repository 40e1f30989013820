"""What a file holds, read once: kind (GLEAN, bank, training checkpoint), format, architecture, weights."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import torch

from ..arch import DiscriminatorConfig, StyleGAN2Config
from ..errors import CheckpointError
from ..glean_config import GLEANConfig
from .bank import GLEAN_ENCODER_KEY as GLEAN_MARKER
from .bank import BankWeights, bank_from_raw, detected_layouts, exported_bank, stored_config
from .configs import check_sizes, checked, infer_glean_config
from .read import RawFile, read_file, summarize, unwrap_state
from .strict import SAFETENSORS_CONFIG_KEY, select_prefix
from .training import BANK_RUN_KIND, is_training_checkpoint, latest_training_checkpoint

Kind = Literal["glean", "bank", "training-checkpoint"]
Format = Literal["mmedit", "gleansr", "bare", "mmgen", "rosinality", "nvidia", "gleansr-bank", "gleansr-run"]
_FORMAT_NAMES: dict[Format, str] = {"mmedit": "MMEditing GLEAN release", "gleansr": "gleansr GLEAN safetensors",
                 "bare": "bare GLEAN state dict", "mmgen": "MMGeneration StyleGAN2 bank",
                 "rosinality": "rosinality StyleGAN2 bank", "nvidia": "NVIDIA StyleGAN2-ADA bank",
                 "gleansr-bank": "gleansr StyleGAN2 bank export", "gleansr-run": "gleansr training checkpoint"}


@dataclass
class Loaded:
    """A file's contents as found: ``weights`` is the GLEAN state dict (bare keys) or a :class:`BankWeights`."""

    path: Path
    kind: Kind
    format: Format
    config: GLEANConfig | StyleGAN2Config  # GLEAN's, or a bank's generator
    weights: Any = field(repr=False, default=None)
    iteration: int | None = None  # training checkpoints

    @property
    def is_glean(self) -> bool:
        return isinstance(self.config, GLEANConfig)

    def parameters(self) -> int:
        """Parameters of the network described, computed from its config (nothing is built)."""
        return self.config.parameter_count()

    def describe(self) -> str:
        """One line, e.g. "MMEditing GLEAN release, 32 -> 256 (x8), 39.9 M parameters"."""
        what = _FORMAT_NAMES[self.format]
        if self.iteration is not None:
            what += f" at iteration {self.iteration}"
        if self.is_glean:
            c = self.config
            arch = f"GLEAN {c.in_size} -> {c.out_size} (x{c.scale})" + ("" if c.latent_bank else ", no latent bank")
        else:
            c = self.config
            arch = (f"StyleGAN2 {c.out_size} px, style {c.style_channels}, "
                    + ("with" if self.weights.discriminator is not None else "without") + " discriminator")
        return f"{what}: {arch}, {self.parameters() / 1e6:.1f} M parameters"


def glean_keys(state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> dict[str, torch.Tensor] | None:
    """Bare GLEAN keys, the wrapper prefix ('generator.' in MMEditing files) stripped; None if not GLEAN."""
    for prefix in ("", "generator.", "module.", "generator_ema."):
        if prefix + GLEAN_MARKER in state:
            return select_prefix(state, prefix, path)
    return None


def _glean_config(raw: RawFile, meta: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> GLEANConfig:
    """The stored config (validated as data, held against the tensors), else the one the shapes show."""
    if SAFETENSORS_CONFIG_KEY not in meta:
        return infer_glean_config(state)
    config = stored_config(meta, raw.path, GLEANConfig.from_dict)
    check_sizes(state, config.state_size(), f"{raw.path}: {SAFETENSORS_CONFIG_KEY!r} metadata")
    return config


def _from_training(path: Path, obj: Mapping[str, Any]) -> Loaded:
    iteration = int(obj.get("iteration", 0))
    saved = obj.get("config")
    if not isinstance(saved, Mapping):
        raise CheckpointError(f"{path}: training checkpoint without a config")
    if obj.get("kind") == BANK_RUN_KIND:
        config = checked(lambda: StyleGAN2Config.from_run_config(saved), f"{path}: invalid bank run config")
        d_config = checked(lambda: DiscriminatorConfig.matching(config, saved.get("mbstd_group_size", 4)),
                           f"{path}: invalid bank run config")
        weights = BankWeights(obj["generator_ema"], config, obj.get("discriminator"), d_config, "gleansr-run")
        check_sizes(weights.generator, config.state_size(), f"{path} (generator_ema)")
        return Loaded(path, "training-checkpoint", "gleansr-run", config, weights, iteration)
    config = checked(lambda: GLEANConfig.from_dict(saved["model"]), f"{path}: invalid model config")
    if not isinstance(obj.get("generator"), Mapping):
        raise CheckpointError(f"{path}: training checkpoint without generator weights")
    check_sizes(obj["generator"], config.state_size(), f"{path}: model config")
    return Loaded(path, "training-checkpoint", "gleansr-run", config, obj["generator"], iteration)


def _holds_tensors(obj: Any) -> bool:
    """Whether ``obj`` is a state dict, bare or under ``state_dict`` (not e.g. rosinality's ``{'g_ema': ...}``)."""
    inner = obj.get("state_dict") if isinstance(obj, Mapping) else None
    inner = inner if isinstance(inner, Mapping) else obj
    return isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values())


def _from_raw(raw: RawFile) -> Loaded:
    if is_training_checkpoint(raw.obj):
        return _from_training(raw.path, raw.obj)
    bank = exported_bank(raw)
    if bank is not None:
        return Loaded(raw.path, "bank", "gleansr-bank", bank.generator_config, bank)
    if raw.container == "safetensors":
        state, meta = raw.obj, raw.meta
    elif _holds_tensors(raw.obj):
        state, meta = unwrap_state(raw.obj, raw.path)
    else:
        state, meta = {}, {}
    glean = glean_keys(state, raw.path)
    if glean is not None:
        fmt = "gleansr" if raw.container == "safetensors" and SAFETENSORS_CONFIG_KEY in meta else (
            "mmedit" if "generator." + GLEAN_MARKER in state else "bare")
        return Loaded(raw.path, "glean", fmt, _glean_config(raw, meta, glean), glean)
    if not detected_layouts(raw.obj):
        raise CheckpointError(f"{raw.path} is not a GLEAN checkpoint (no {GLEAN_MARKER!r} key), a StyleGAN2 bank "
                              f"(MMGeneration, rosinality, NVIDIA) nor a gleansr training checkpoint; it holds "
                              f"{summarize(raw.obj)}")
    bank = bank_from_raw(raw)
    return Loaded(raw.path, "bank", bank.source_format, bank.generator_config, bank)


def inspect(path: str | os.PathLike) -> Loaded:
    """Read ``path`` once (a file, or a run folder's latest checkpoint) and say what it holds.

    CheckpointError, naming what was found, for anything that is neither GLEAN weights, a StyleGAN2
    bank in a known layout, nor a gleansr training checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        found = latest_training_checkpoint(path)
        if found is None:
            raise CheckpointError(f"{path} is a folder without a training checkpoint (last.pt / previous.pt)")
        return _from_training(*found)
    return _from_raw(read_file(path))
