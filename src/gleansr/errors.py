"""User-facing errors: the CLI prints these as one line and exits non-zero."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class GleanError(Exception):
    """A problem with the user's input (file, checkpoint, argument), not a bug.

    The message must stand on its own in one line and name the offending thing.
    """


class CheckpointError(GleanError):
    """A checkpoint cannot be read, or its keys/shapes do not fit the model."""


class ImageError(GleanError):
    """An image cannot be read, decoded or written."""


class WeightsError(GleanError):
    """A weights file is missing, corrupt or cannot be downloaded: a problem of this machine, not of a request.

    ``public`` is the same fact for someone who does not run this machine (a web client): it names
    the file but no folder, and says who must fix it. A server answers it with 503.
    """

    def __init__(self, message: str, public: str):
        super().__init__(message)
        self.public = public


class OutputError(OSError):
    """The operating system refused to write (or read) a file: disk full, read-only, a folder in the way.

    Raised by every writer of :mod:`gleansr.atomic`, which leaves no partial file behind. An
    ``OSError`` still (``errno``, ``filename``; ``strerror`` the reason in words), so code that
    handles OS errors keeps working; ``str()`` is the one-line sentence naming the file, ``path``
    the file, and :attr:`no_space` tells a full disk (stop: nothing else will fit either) from a
    problem with one output. The CLI prints the sentence and exits with code 1.
    """

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None, errno: int | None = None,
                 reason: str | None = None) -> None:
        super().__init__(errno, reason or message, None if path is None else os.fspath(path))
        self.message = message
        self.path = None if path is None else Path(path)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple:
        return type(self), (self.message, self.path, self.errno, self.strerror)

    @property
    def no_space(self) -> bool:
        """The disk (or the user's quota) is full: every further write would fail the same way."""
        return self.errno in _NO_SPACE

    @classmethod
    def from_os_error(cls, exc: OSError, path: str | os.PathLike[str] | None = None,
                      action: str | None = "write") -> "OutputError":
        """This error for ``exc``, with :func:`describe_os_error`'s sentence."""
        target = path if path is not None else exc.filename
        return cls(describe_os_error(exc, path, action), target, exc.errno, os_error_reason(exc, target))


_NO_SPACE = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})

# What each OS error means for the file a user named, in words (the rest: the OS's own text).
_OS_REASONS = {
    errno.ENOSPC: "no space left on the disk",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied (the folder or file is read-only for this user)",
    errno.EPERM: "operation not permitted",
    errno.EISDIR: "it is a folder, not a file",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "it already exists",
    errno.ENAMETOOLONG: "the name is too long for the file system",
    errno.EFBIG: "the file is too large for the file system (or this process's file size limit)",
    errno.EIO: "input/output error (a failing disk or a removed drive)",
    errno.EMFILE: "too many open files in this process",
    errno.ENFILE: "too many open files on the system",
    errno.ELOOP: "too many levels of symbolic links",
    errno.EXDEV: "it is on another file system",
}
if hasattr(errno, "EDQUOT"):
    _OS_REASONS[errno.EDQUOT] = "the disk quota is exhausted"


def _blocking_file(path: Path) -> Path | None:
    """The first existing ancestor of ``path`` that is not a folder (why a folder cannot be made)."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return path if path.exists() and not path.is_dir() else None


def os_error_reason(exc: OSError, path: str | os.PathLike[str] | None = None) -> str:
    """What happened to ``path`` (default: the file the OS names), in words: "no space left on the disk"."""
    target = Path(os.fsdecode(path)) if path is not None else None
    blocker = _blocking_file(target) if target is not None and exc.errno in (errno.ENOTDIR, errno.EEXIST) else None
    if blocker is not None:
        return "it is a file, not a folder" if blocker == target else f"{blocker} is a file, not a folder"
    return _OS_REASONS.get(exc.errno) or exc.strerror or str(exc) or type(exc).__name__


def describe_os_error(exc: OSError, path: str | os.PathLike[str] | None = None, action: str | None = None) -> str:
    """One line for ``exc``: ``cannot <action> <file>: <what happened>`` (``<file>: <what happened>``
    without ``action``).

    ``path`` is the file the user asked for (default: the one the OS names); ``action`` is what
    was being done to it ("write", "read"). Every door uses this sentence.
    """
    if isinstance(exc, OutputError):
        return str(exc)
    target = path if path is not None else exc.filename
    reason = os_error_reason(exc, target)
    if action:
        return f"cannot {action}{'' if target is None else f' {os.fsdecode(target)}'}: {reason}"
    return reason if target is None else f"{os.fsdecode(target)}: {reason}"


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def file_kind(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is when it is not a regular file ("a folder", "a named pipe (FIFO)", ...);
    None for a regular file (or a link to one) and "missing" when nothing is there."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.islink(path) else "missing"
    except OSError as exc:
        return f"unreadable ({describe_os_error(exc, path, 'read')})"
    return next((name for test, name in _KINDS if test(mode)), None if stat.S_ISREG(mode) else "not a regular file")


def require_file(path: str | os.PathLike[str], what: str, takes: str = "") -> Path:
    """``path`` if it is a regular file; else GleanError saying what it is instead
    (``what``: "bank file", "input", ...; ``takes``: what the option accepts, for the message)."""
    kind = file_kind(path)
    if kind is None:
        return Path(path)
    hint = f"; {takes}" if takes else ""
    if kind == "missing":
        raise GleanError(f"{what} {path} does not exist{hint}")
    raise GleanError(f"{what} {path} is {kind}, not a file{hint}")


class OutOfMemory(GleanError):
    """An allocation failed while decoding, resizing or running one input: the machine is short of
    memory now (other work, a limit), which a retry or a smaller input may avoid."""
