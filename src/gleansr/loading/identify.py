"""What a file holds, read once: kind (GLEAN, bank, training checkpoint), format, architecture, weights."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import CheckpointError
from ..models.glean import GLEANConfig, GLEANStyleGANv2
from .bank import GLEAN_ENCODER_KEY as GLEAN_MARKER
from .bank import BankWeights, bank_from_raw, detected_layouts, exported_bank
from .configs import infer_glean_config
from .read import RawFile, read_file, summarize, unwrap_state
from .strict import SAFETENSORS_CONFIG_KEY, select_prefix
from .training import BANK_RUN_KIND, is_training_checkpoint, latest_training_checkpoint

_FORMAT_NAMES = {"mmedit": "MMEditing GLEAN release", "gleansr": "gleansr GLEAN safetensors",
                 "bare": "bare GLEAN state dict", "mmgen": "MMGeneration StyleGAN2 bank",
                 "rosinality": "rosinality StyleGAN2 bank", "nvidia": "NVIDIA StyleGAN2-ADA bank",
                 "gleansr-bank": "gleansr StyleGAN2 bank export", "gleansr-run": "gleansr training checkpoint"}


@dataclass
class Loaded:
    """A file's contents as found: ``weights`` is the GLEAN state dict (bare keys) or a :class:`BankWeights`."""

    path: Path
    kind: str  # "glean" | "bank" | "training-checkpoint"
    format: str  # "mmedit" | "gleansr" | "bare" | "mmgen" | "rosinality" | "nvidia" | "gleansr-bank" | "gleansr-run"
    config: Any  # GLEANConfig for GLEAN weights; the generator's keyword arguments for a bank
    weights: Any = field(repr=False, default=None)
    iteration: int | None = None  # training checkpoints

    @property
    def is_glean(self) -> bool:
        return isinstance(self.config, GLEANConfig)

    def parameters(self) -> int:
        """Trainable parameters of the network described (built on the meta device: nothing allocated)."""
        from ..models.stylegan2 import StyleGAN2Generator

        with torch.device("meta"):
            net = GLEANStyleGANv2(**self.config.to_dict()) if self.is_glean else StyleGAN2Generator(**self.config)
        return sum(p.numel() for p in net.parameters())

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
            arch = (f"StyleGAN2 {c['out_size']} px, style {c['style_channels']}, "
                    + ("with" if self.weights.discriminator is not None else "without") + " discriminator")
        return f"{what}: {arch}, {self.parameters() / 1e6:.1f} M parameters"


def glean_keys(state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> dict[str, torch.Tensor] | None:
    """Bare GLEAN keys, the wrapper prefix ('generator.' in MMEditing files) stripped; None if not GLEAN."""
    for prefix in ("", "generator.", "module.", "generator_ema."):
        if prefix + GLEAN_MARKER in state:
            return select_prefix(state, prefix, path)
    return None


def _glean_config(meta: Mapping[str, Any], state: Mapping[str, torch.Tensor], path: Path) -> GLEANConfig:
    if SAFETENSORS_CONFIG_KEY not in meta:
        return infer_glean_config(state)
    try:
        return GLEANConfig.from_dict(json.loads(meta[SAFETENSORS_CONFIG_KEY]))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: unreadable model config in metadata ({exc})") from None


def _from_training(path: Path, obj: Mapping[str, Any]) -> Loaded:
    iteration = int(obj.get("iteration", 0))
    if obj.get("kind") == BANK_RUN_KIND:
        weights = BankWeights(obj["generator_ema"], _bank_kwargs(obj["config"]), obj.get("discriminator"),
                              None, "gleansr-run")
        return Loaded(path, "training-checkpoint", "gleansr-run", weights.generator_config, weights, iteration)
    try:
        config = GLEANConfig.from_dict(obj["config"]["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: training checkpoint without a readable model config ({exc})") from None
    return Loaded(path, "training-checkpoint", "gleansr-run", config, obj["generator"], iteration)


def _bank_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """StyleGAN2Generator arguments of a bank run's config (BankConfig.generator_kwargs, without importing it)."""
    keys = ("style_channels", "num_mlps", "channel_multiplier", "blur_kernel", "lr_mlp", "channel_max")
    return {"out_size": config["size"], **{k: config[k] for k in keys if k in config}}


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
        return Loaded(raw.path, "glean", fmt, _glean_config(meta, glean, raw.path), glean)
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
