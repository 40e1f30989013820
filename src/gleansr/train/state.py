"""Training checkpoints: everything needed to continue exactly (reading and release export: :mod:`gleansr.loading`).

A training checkpoint is a dict saved with ``torch.save`` and read back with
``weights_only=True`` (it holds only tensors, numbers, strings and containers):

- ``format``: :data:`CHECKPOINT_FORMAT`; ``kind``: the recipe (``glean``, ``stylegan2-bank``; a
  checkpoint without one is GLEAN's); ``iteration``: iterations completed;
- ``config``: the recipe's config as a dict (GLEAN's :class:`~gleansr.train.config.TrainConfig`,
  the model's GLEANConfig under ``model``; the bank's ``BankConfig``), so resume and export
  rebuild the networks from it;
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

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_path, remove_stale_temp_files, torch_save_into
from ..errors import OutputError
from ..loading import CHECKPOINT_FORMAT, LAST, PREVIOUS, latest_training_checkpoint


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
    try:
        with atomic_path(last, overwrite=True) as temporary:
            torch_save_into({"format": CHECKPOINT_FORMAT, **state}, temporary)  # written and flushed to disk
            if last.exists():  # only now: a failed write (e.g. disk full) keeps both checkpoints
                os.replace(last, run_dir / PREVIOUS)
    except OutputError as exc:
        kept = ", ".join(p.name for p in (last, run_dir / PREVIOUS) if p.is_file()) or "none"
        raise OutputError(f"{exc}; iteration {state.get('iteration')} was not saved (earlier checkpoints kept: {kept})",
                          exc.path, exc.errno, exc.strerror) from None
    return last


def remove_partial_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of checkpoint saves that were killed (SIGKILL, power loss)."""
    return remove_stale_temp_files(run_dir, LAST)


def load_latest(run_dir: str | os.PathLike) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable checkpoint of a run folder (``last.pt``, else ``previous.pt``), or None."""
    return latest_training_checkpoint(
        run_dir, on_damaged=lambda message: logging.getLogger("gleansr.train").warning("%s", message))

