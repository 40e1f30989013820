"""Reading training checkpoints (``last.pt`` / ``previous.pt`` of a run folder) through the one reader.

gleansr's trainers (GLEAN and the bank) write a dict with ``format`` = :data:`CHECKPOINT_FORMAT`
(see :mod:`gleansr.train.state` for its contents); a bank run adds ``kind`` = :data:`BANK_RUN_KIND`.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import CheckpointError
from .read import read_file

CHECKPOINT_FORMAT = "gleansr-train-1"
BANK_RUN_KIND = "stylegan2-bank"
LAST = "last.pt"
PREVIOUS = "previous.pt"


def is_training_checkpoint(obj: Any) -> bool:
    return isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT


def read_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A training checkpoint's dict (CPU tensors); CheckpointError if it is not one or is damaged."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"training checkpoint not found: {path}")
    try:
        obj = read_file(path).obj
    except CheckpointError as exc:
        reason = str(exc).replace(f"{path} is ", "", 1).replace(str(path), "the file")
        raise CheckpointError(f"{path} is not a readable training checkpoint ({reason[:160]})") from None
    if not is_training_checkpoint(obj):
        raise CheckpointError(f"{path} is not a gleansr training checkpoint (no format {CHECKPOINT_FORMAT!r}); "
                              "release files are loaded with load_checkpoint / load_glean")
    return dict(obj)


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def latest_training_checkpoint(run_dir: str | os.PathLike, on_damaged: Callable[[str], None] = _warn,
                               ) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable checkpoint of a run folder (``last.pt``, else ``previous.pt``), or None if it has none.

    Each unreadable candidate is reported through ``on_damaged``; if none can be read, CheckpointError.
    """
    run_dir = Path(run_dir)
    candidates = [p for p in (run_dir / LAST, run_dir / PREVIOUS) if p.is_file()]
    problems = []
    for path in candidates:
        try:
            return path, read_training_checkpoint(path)
        except CheckpointError as exc:
            problems.append(str(exc))
            on_damaged(f"{exc}; trying the previous checkpoint")
    if problems:
        raise CheckpointError(f"no readable checkpoint in {run_dir}: {problems[-1]}")
    return None
