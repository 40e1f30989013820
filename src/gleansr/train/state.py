"""Training checkpoints (everything needed to continue exactly) and release exports.

A training checkpoint is a dict saved with ``torch.save`` and read back with
``weights_only=True`` (it holds only tensors, numbers, strings and containers):

- ``format``: :data:`CHECKPOINT_FORMAT`; ``kind``: the recipe (``glean``, ``stylegan2-bank``; a
  checkpoint without one is GLEAN's); ``iteration``: iterations completed;
- ``config``: the :class:`~gleansr.train.config.TrainConfig` as a dict (the model's
  GLEANConfig under ``model``), so resume and export rebuild the networks from it;
- GLEAN's recipe: ``generator``: the whole generator state dict, frozen bank included (the file is then
  self-contained: resuming or exporting never needs the bank file again); ``discriminator``;
- ``optimizer_g`` / ``optimizer_d`` (Adam), ``scheduler`` (its settings, for information: the
  learning rate is a function of the iteration), ``scaler_g`` / ``scaler_d`` (GradScaler);
- ``rng``: one entry per rank (python, numpy, torch CPU, CUDA);
- ``data``: ``{'epoch', 'batch', 'world_size', 'batch_size'}``, the position of the next batch
  (for information: :class:`~gleansr.train.distributed.ResumableBatchSampler` derives it from
  the iteration).

A run folder keeps ``last.pt`` and ``previous.pt``. A save writes a temporary file, moves the
old ``last.pt`` to ``previous.pt``, then moves the new file into place, so a crash at any point
leaves at least one complete checkpoint; :func:`load_latest` falls back to ``previous.pt`` if
``last.pt`` is missing or unreadable (the trainer then renames the damaged file
``last.pt.damaged``, so that its next save cannot rotate it over the good ``previous.pt``).

Resuming is exact on CPU (tested bit for bit against an uninterrupted run). On GPUs,
cuDNN's autotuned, non-deterministic kernels make any two runs drift apart slightly (about
1e-4 in the weights after a few Adam steps, measured on an H200), resumed or not.
"""
from __future__ import annotations

import json
import logging
import os
import random
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..atomic import atomic_path
from ..checkpoints import SAFETENSORS_CONFIG_KEY, load_state_dict_strict, save_safetensors
from ..errors import CheckpointError, GleanError
from ..models import GLEANStyleGANv2, StyleGAN2Discriminator
from .config import TrainConfig, config_from_dict

CHECKPOINT_FORMAT = "gleansr-train-1"
LAST = "last.pt"
PREVIOUS = "previous.pt"


def capture_rng() -> dict[str, Any]:
    """This process's RNG states in a ``weights_only``-loadable form."""
    version, mt_state, gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "python": [version, list(mt_state), gauss],
        "numpy": [np_kind, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss),
                  float(np_gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng` (CUDA states only if CUDA is in use and the counts match)."""
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_initialized() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def save_training_checkpoint(run_dir: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` as ``run_dir/last.pt``, keeping the former ``last.pt`` as ``previous.pt``."""
    run_dir = Path(run_dir)
    last = run_dir / LAST
    with atomic_path(last, overwrite=True) as temporary:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, temporary)
        if last.exists():
            os.replace(last, run_dir / PREVIOUS)
    return last


def read_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A training checkpoint's dict (CPU tensors); CheckpointError if it is not one or is damaged."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"training checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever fails to parse, the file is damaged
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path} is not a readable training checkpoint ({first[:100]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a gleansr training checkpoint (no format {CHECKPOINT_FORMAT!r}); "
                              "release files are loaded with load_checkpoint / load_glean")
    return state


def load_latest(run_dir: str | os.PathLike) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable checkpoint of a run folder (``last.pt``, else ``previous.pt``), or None."""
    run_dir = Path(run_dir)
    candidates = [p for p in (run_dir / LAST, run_dir / PREVIOUS) if p.is_file()]
    problems = []
    for path in candidates:
        try:
            return path, read_training_checkpoint(path)
        except CheckpointError as exc:
            problems.append(str(exc))
            logging.getLogger("gleansr.train").warning("%s; trying the previous checkpoint", exc)
    if problems:
        raise CheckpointError(f"no readable checkpoint in {run_dir}: {problems[-1]}")
    return None


def checkpoint_config(state: dict[str, Any], source: str = "checkpoint") -> TrainConfig:
    return config_from_dict(state["config"], source)


def _networks_from_checkpoint(state: dict[str, Any], source: str) -> tuple[GLEANStyleGANv2, StyleGAN2Discriminator]:
    """Rebuild and strictly load both networks of a training checkpoint."""
    config = checkpoint_config(state, source)
    generator = GLEANStyleGANv2(**config.model.to_dict())
    load_state_dict_strict(generator, state["generator"], f"{source} (generator)")
    discriminator = build_discriminator(config)
    load_state_dict_strict(discriminator, state["discriminator"], f"{source} (discriminator)")
    return generator, discriminator


def build_discriminator(config: TrainConfig) -> StyleGAN2Discriminator:
    """The StyleGAN2 discriminator matching the generator's bank (same widths and blur)."""
    m = config.model
    return StyleGAN2Discriminator(m.out_size, channel_multiplier=m.channel_multiplier, blur_kernel=m.blur_kernel,
                                  mbstd_cfg={"group_size": config.mbstd_group_size}, channel_max=m.channel_max)


class _Release(nn.Module):
    """MMEditing's restorer layout: ``generator.*`` and ``discriminator.*``."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module) -> None:
        super().__init__()
        self.generator, self.discriminator = generator, discriminator


ExportFormat = Literal["mmedit", "safetensors"]


def export_release(checkpoint: str | os.PathLike, out: str | os.PathLike, fmt: ExportFormat | None = None,
                   overwrite: bool = False) -> Path:
    """Write a training checkpoint (or a run folder's latest) as a release file.

    - ``"mmedit"``: ``{'meta': ..., 'state_dict': OrderedDict('generator.*', 'discriminator.*')}``
      in the legacy ``torch.save`` format of MMEditing's release files; loads with
      ``load_checkpoint(model, out)`` (prefix ``generator.``), with :func:`gleansr.checkpoints.load_glean`
      (the exact model config is in ``meta['gleansr_config']``) and with MMEditing itself.
    - ``"safetensors"``: the generator alone, its config in the metadata (``load_glean``).

    ``fmt=None`` picks safetensors for a ``.safetensors`` suffix, else mmedit.
    """
    source = Path(checkpoint)
    if source.is_dir():
        found = load_latest(source)
        if found is None:
            raise CheckpointError(f"no training checkpoint ({LAST} / {PREVIOUS}) in {source}")
        source, state = found
    else:
        state = read_training_checkpoint(source)
    out = Path(out)
    fmt = fmt or ("safetensors" if out.suffix.lower() == ".safetensors" else "mmedit")
    generator, discriminator = _networks_from_checkpoint(state, str(source))
    if fmt == "safetensors":
        return save_safetensors(generator, out, config=generator.config.to_dict(), overwrite=overwrite)
    if fmt != "mmedit":
        raise GleanError(f"unknown export format {fmt!r}; choose mmedit or safetensors")
    meta = {
        "gleansr_version": __version__,
        "iter": int(state["iteration"]),
        "time": time.strftime("%Y%m%d_%H%M%S"),
        "config": json.dumps(state["config"], sort_keys=True),
        SAFETENSORS_CONFIG_KEY: json.dumps(generator.config.to_dict(), sort_keys=True),
    }
    state_dict: OrderedDict = _Release(generator, discriminator).state_dict()
    with atomic_path(out, overwrite=overwrite) as temporary:
        torch.save({"meta": meta, "state_dict": state_dict}, temporary, _use_new_zipfile_serialization=False)
    return out
