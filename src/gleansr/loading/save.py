"""Every weights file gleansr writes: safetensors, MMEditing-layout releases, bank exports.

All writes are atomic and never replace an existing file unless asked; every file gets the same
permissions as any other output (``0o666`` less the umask, e.g. 0644), whichever library wrote it.
"""
from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal, Mapping

import torch
import torch.nn as nn

from ..arch import DiscriminatorConfig, StyleGAN2Config
from ..atomic import atomic_torch_save, atomic_write_bytes
from ..errors import CheckpointError, GleanError
from ..models.discriminator import StyleGAN2Discriminator
from ..models.glean import GLEANConfig, GLEANStyleGANv2, build_uninitialised
from .bank import DISCRIMINATOR_ARCH, GENERATOR_ARCH, BankWeights, discriminator_path
from .configs import check_sizes, infer_discriminator_config
from .mmgen import BANK_META_KEY
from .strict import SAFETENSORS_ARCH_KEY, SAFETENSORS_CONFIG_KEY, SAFETENSORS_LAYOUT_KEY, load_state_dict_strict
from .training import read_training_checkpoint

ExportFormat = Literal["mmedit", "safetensors"]


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.is_file() and not overwrite:  # a folder there: the writer says so
        raise GleanError(f"{path} already exists; pass --overwrite (overwrite=True) to replace it")


def save_safetensors(module_or_state: nn.Module | Mapping[str, torch.Tensor], path: str | os.PathLike,
                     config: Mapping[str, Any] | None = None, arch: str = "GLEANStyleGANv2",
                     overwrite: bool = False, bare: bool = True) -> Path:
    """Write tensors (contiguous, CPU) and the model config as safetensors metadata, atomically.

    ``bare`` marks a file holding one network's own keys (no 'generator.'-style prefix).
    """
    from safetensors.torch import save

    state = module_or_state.state_dict() if isinstance(module_or_state, nn.Module) else module_or_state
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    metadata = {SAFETENSORS_ARCH_KEY: arch, SAFETENSORS_LAYOUT_KEY: "bare" if bare else "prefixed"}
    if config is not None:
        metadata[SAFETENSORS_CONFIG_KEY] = json.dumps(dict(config), sort_keys=True)
    path = Path(path)
    _refuse_existing(path, overwrite)
    data = save(tensors, metadata=metadata)  # bytes, written by Python so that OS errors say what failed
    return atomic_write_bytes(path, data, overwrite)


def _save_torch_legacy(obj: Any, path: Path, overwrite: bool) -> Path:
    """``torch.save`` in the legacy format of MMEditing/MMGeneration release files."""
    _refuse_existing(path, overwrite)
    atomic_torch_save(obj, path, overwrite, _use_new_zipfile_serialization=False)
    return path


def _networks(state: Mapping[str, Any], source: str) -> tuple[GLEANStyleGANv2, StyleGAN2Discriminator]:
    """Both networks of a GLEAN training checkpoint, rebuilt from its config and loaded strictly."""
    try:
        config = GLEANConfig.from_dict(state["config"]["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: not a GLEAN training checkpoint (no readable model config: {exc})") from None
    check_sizes(state["generator"], config.state_size(), f"{source}: model config")
    generator = load_state_dict_strict(build_uninitialised(config), state["generator"], f"{source} (generator)")
    group = int(state["config"].get("mbstd_group_size", 4))
    d_config = infer_discriminator_config(state["discriminator"], group_size=group)
    discriminator = load_state_dict_strict(StyleGAN2Discriminator.from_config(d_config), state["discriminator"],
                                           f"{source} (discriminator)")
    return generator, discriminator


def export_release(checkpoint: str | os.PathLike, out: str | os.PathLike, fmt: ExportFormat | None = None,
                   overwrite: bool = False) -> Path:
    """Write a GLEAN training checkpoint (or a run folder's latest) as a release file.

    - ``"mmedit"``: ``{'meta': ..., 'state_dict': OrderedDict('generator.*', 'discriminator.*')}``
      in the legacy ``torch.save`` format of MMEditing's release files (the exact model config
      is in ``meta['gleansr_config']``); loads with :func:`load_glean` and with MMEditing itself.
    - ``"safetensors"``: the generator alone, its config in the metadata.

    ``fmt=None`` picks safetensors for a ``.safetensors`` suffix, else mmedit.
    """
    from .training import latest_training_checkpoint

    source, out = Path(checkpoint), Path(out)
    fmt = fmt or ("safetensors" if out.suffix.lower() == ".safetensors" else "mmedit")
    if fmt not in ("mmedit", "safetensors"):
        raise GleanError(f"unknown export format {fmt!r}; choose mmedit or safetensors")
    _refuse_existing(out, overwrite)  # before reading a large checkpoint
    if source.is_dir():
        found = latest_training_checkpoint(source)
        if found is None:
            raise CheckpointError(f"no training checkpoint (last.pt / previous.pt) in {source}")
        source, state = found
    else:
        state = read_training_checkpoint(source)
    generator, discriminator = _networks(state, str(source))
    if fmt == "safetensors":
        return save_safetensors(generator, out, config=generator.config.to_dict(), overwrite=overwrite)
    from .. import __version__

    meta = {"gleansr_version": __version__, "iter": int(state["iteration"]), "time": time.strftime("%Y%m%d_%H%M%S"),
            "config": json.dumps(state["config"], sort_keys=True),
            SAFETENSORS_CONFIG_KEY: json.dumps(generator.config.to_dict(), sort_keys=True)}
    state_dict = OrderedDict((f"generator.{k}", v) for k, v in generator.state_dict().items())
    state_dict.update((f"discriminator.{k}", v) for k, v in discriminator.state_dict().items())
    return _save_torch_legacy({"meta": meta, "state_dict": state_dict}, out, overwrite)


def export_bank(weights: BankWeights, dst: str | os.PathLike, overwrite: bool = False) -> list[Path]:
    """Write the generator to ``dst`` and the discriminator (if any) beside it; returns the paths."""
    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise CheckpointError(f"{dst}: the output must end in .safetensors")
    targets = [dst] + ([discriminator_path(dst)] if weights.discriminator is not None else [])
    for target in targets:
        _refuse_existing(target, overwrite)
    written = [save_safetensors(weights.generator, dst, weights.generator_config.to_dict(), GENERATOR_ARCH,
                                overwrite)]
    if weights.discriminator is not None and weights.discriminator_config is not None:
        written.append(save_safetensors(weights.discriminator, discriminator_path(dst),
                                        weights.discriminator_config.to_dict(), DISCRIMINATOR_ARCH, overwrite))
    return written


def export_bank_run(out: str | os.PathLike, iteration: int, generator: nn.Module, generator_ema: nn.Module,
                    discriminator: nn.Module, generator_config: StyleGAN2Config,
                    discriminator_config: DiscriminatorConfig) -> Path:
    """A bank run's files: ``bank.pth`` (MMGeneration layout) and ``bank.safetensors`` (+ discriminator)."""
    from .. import __version__

    out = Path(out)
    state = {**{f"generator.{k}": v for k, v in generator.state_dict().items()},
             **{f"generator_ema.{k}": v for k, v in generator_ema.state_dict().items()},
             **{f"discriminator.{k}": v for k, v in discriminator.state_dict().items()}}
    meta = {BANK_META_KEY: {"generator": generator_config.to_dict(), "discriminator": discriminator_config.to_dict()},
            "iter": iteration, "gleansr_version": __version__, "time": time.strftime("%Y%m%d_%H%M%S")}
    path = _save_torch_legacy({"meta": meta, "state_dict": {k: v.detach().cpu() for k, v in state.items()}},
                              out / "bank.pth", overwrite=True)
    weights = BankWeights(generator_ema.state_dict(), generator_config, discriminator.state_dict(),
                          discriminator_config)
    export_bank(weights, out / "bank.safetensors", overwrite=True)
    return path
