"""Atomic, no-clobber file writes.

Every output (image, checkpoint, download) is written to a temporary file in the destination's
folder, flushed to disk, then moved into place in one step, so a crash or Ctrl-C never leaves a
half-written file under the final name. Unless ``overwrite`` is set, an existing file is never
replaced, even one that appeared while we were writing.
"""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Any, Iterator

from .errors import GleanError


def _refuse_existing(path: Path) -> None:
    raise GleanError(f"{path} already exists; refusing to overwrite it")


def _new_temp_file(folder: Path, name: str) -> Path:
    """Create an empty hidden file next to the target; mode 0o666 lets the umask decide access."""
    while True:
        temp = folder / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return temp
        except FileExistsError:
            continue


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; folders cannot be opened this way on Windows."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _move_into_place(temp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(temp, path)
        return
    # A hard link fails if the target exists, so no file can be clobbered between check and move.
    try:
        os.link(temp, path)
    except FileExistsError:
        _refuse_existing(path)
    except OSError:
        # Filesystems without hard links (FAT, some network shares): check, then replace.
        if path.exists():
            _refuse_existing(path)
        os.replace(temp, path)
        return
    temp.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it becomes ``path``, on error it is removed.

    The parent folder is created if needed. Raises GleanError if ``path`` exists (checked before
    writing and again at the move) and ``overwrite`` is False.
    """
    path = Path(path)
    if not overwrite and path.exists():
        _refuse_existing(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _new_temp_file(path.parent, path.name)
    try:
        yield temp
        _fsync_file(temp)
        _move_into_place(temp, path, overwrite)
        _fsync_folder(path.parent)
    finally:
        temp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path, overwrite) as temp:
        temp.write_bytes(data)
    return Path(path)


def atomic_torch_save(obj: Any, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """``torch.save`` that never leaves a truncated checkpoint behind; returns the path."""
    import torch  # here, so that the image writers work without PyTorch installed

    with atomic_path(path, overwrite) as temp:
        torch.save(obj, temp)
    return Path(path)
