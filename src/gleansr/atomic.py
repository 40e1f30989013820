"""Atomic, no-clobber file writes.

Every output (image, checkpoint, download) is written to a temporary file in the destination's
folder, flushed to disk, then moved into place in one step, so a crash or Ctrl-C never leaves a
half-written file under the final name. Unless ``overwrite`` is set, an existing file is never
replaced, even one that appeared while we were writing.

When the operating system refuses (disk full, read-only folder, a file where a folder should be,
a folder where the file should be) the writers raise :class:`~gleansr.errors.OutputError` naming
the file and the reason, after removing their temporary file: nothing partial is left, and
``OutputError.no_space`` tells a batch to stop. Only a process killed mid-write leaves its
temporary file (``.<name>.<8 hex>.tmp``); :func:`remove_stale_temp_files` clears those.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from .errors import GleanError, OutputError

# Errors of the write itself, whatever file the OS names (a write through a handle names none).
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EFBIG, errno.EIO, getattr(errno, "EDQUOT", errno.ENOSPC)})


def _refuse_existing(path: Path) -> None:
    raise GleanError(f"{path} already exists; refusing to overwrite it")


def _temp_name(name: str) -> str:
    return f".{name}.{secrets.token_hex(4)}.tmp"


def temp_file_pattern(name: str) -> re.Pattern[str]:
    """The names of the temporary files a write of ``name`` uses (and a killed one leaves)."""
    return re.compile(rf"\.{re.escape(name)}\.[0-9a-f]{{8}}\.tmp")


def remove_stale_temp_files(folder: str | os.PathLike[str], name: str) -> list[Path]:
    """Delete the temporary files left in ``folder`` by killed writes of ``name``; returns them.

    Only the pattern of this module's own temporary files for ``name`` is touched. Call it when
    no other process can be writing ``name`` there (e.g. when a training run resumes).
    """
    pattern, removed = temp_file_pattern(name), []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(folder):
            if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _new_temp_file(folder: Path, name: str) -> Path:
    """Create an empty hidden file next to the target; mode 0o666 lets the umask decide access."""
    while True:
        temp = folder / _temp_name(name)
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


def _check_target(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise OutputError.from_os_error(IsADirectoryError(errno.EISDIR, "Is a directory"), path)
    if not overwrite and (path.exists() or path.is_symlink()):
        _refuse_existing(path)


def _ours(exc: OSError, temp: Path, path: Path) -> bool:
    """Whether ``exc`` (raised inside the block) is about writing the output, not about another file."""
    named = {os.fsdecode(name) for name in (exc.filename, exc.filename2) if name is not None}
    return exc.errno in _DISK_ERRNOS or bool(named & {str(temp), str(path)})


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it becomes ``path``, on error it is removed.

    The parent folder is created if needed. Raises GleanError if ``path`` exists (checked before
    writing and again at the move) and ``overwrite`` is False; OutputError when the OS refuses
    (also for errors of the block's own writes: disk full, read-only).
    """
    path = Path(path)
    try:
        _check_target(path, overwrite)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = _new_temp_file(path.parent, path.name)
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError.from_os_error(exc, path) from None
    try:
        yield temp
        _fsync_file(temp)
        _move_into_place(temp, path, overwrite)
        _fsync_folder(path.parent)
    except OSError as exc:
        if isinstance(exc, OutputError) or not _ours(exc, temp, path):
            raise
        raise OutputError.from_os_error(exc, path) from exc
    finally:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)


def make_folder(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` (and its parents) for outputs; OutputError saying why it cannot be."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError.from_os_error(exc, folder, "create the folder") from None
    return folder


def _open_for_writing(temp: Path) -> BinaryIO:
    """The one place an output's bytes are opened for writing."""
    return open(temp, "wb")


class _Recorder:
    """A file-like object that remembers the first OS error of its writes.

    ``torch.save`` turns a failed write into a RuntimeError ("unexpected pos ..."); the recorded
    error says what really happened (e.g. no space left on the disk).
    """

    def __init__(self, handle: BinaryIO) -> None:
        self.handle, self.error = handle, None

    def write(self, data: Any) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self.handle.flush()


def write_into(temp: Path, write: Callable[[Any], None]) -> None:
    """Open ``temp``, let ``write(handle)`` fill it, flush it to disk; a failed write raises the OS error."""
    with _open_for_writing(temp) as handle:
        recorder = _Recorder(handle)
        try:
            write(recorder)
            handle.flush()
        except Exception as exc:
            if recorder.error is not None and recorder.error is not exc:
                raise recorder.error from None
            raise
        os.fsync(handle.fileno())


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path, overwrite) as temp:
        write_into(temp, lambda handle: handle.write(data))
    return Path(path)


def torch_save_into(obj: Any, temp: Path, **options: Any) -> None:
    """``torch.save(obj)`` into ``temp`` (within :func:`atomic_path`), a full disk reported as such."""
    import torch  # here, so that image writing (which uses atomic_path) does not load torch

    write_into(temp, lambda handle: torch.save(obj, handle, **options))


def atomic_torch_save(obj: Any, path: str | os.PathLike[str], overwrite: bool = False, **options: Any) -> Path:
    """``torch.save`` that never leaves a truncated checkpoint behind; returns the path."""
    with atomic_path(path, overwrite) as temp:
        torch_save_into(obj, temp, **options)
    return Path(path)
