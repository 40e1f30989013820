"""Disk faults for tests: outputs that fill the disk (ENOSPC) or a process killed mid-write.

Every output gleansr writes is opened by ``gleansr.atomic._open_for_writing``; the replacement
from :func:`faulty_opener` wraps the handles it returns so that, once ``budget`` bytes have been
written in total (over every output whose temporary name contains ``match``), the write stores
what still fits and then fails with ENOSPC, as a full disk does, or (``kill=True``) the process
SIGKILLs itself.

Run as a script it installs the fault from the environment and runs the CLI::

    GLEANSR_FAULT_BYTES=4096 [GLEANSR_FAULT_MATCH=last.pt] [GLEANSR_FAULT_KILL=1] \\
        python tests/disk_faults.py upscale ...
"""
from __future__ import annotations

import errno
import os
import signal
import sys
from pathlib import Path
from typing import Any


class _Filling:
    """A file handle on a disk that has ``state['left']`` bytes free."""

    def __init__(self, handle: Any, state: dict[str, Any]) -> None:
        self.handle, self.state = handle, state

    def write(self, data: Any) -> int:
        data = bytes(data)
        left = self.state["left"]
        if len(data) <= left:
            self.state["left"] -= len(data)
            return self.handle.write(data)
        self.handle.write(data[:left])
        self.handle.flush()
        self.state["left"] = 0
        self.state["hits"] += 1
        if self.state["kill"]:
            os.kill(os.getpid(), signal.SIGKILL)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)

    def __enter__(self) -> "_Filling":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.handle.close()


def faulty_opener(budget: int, match: str = "", kill: bool = False) -> tuple[Any, dict[str, Any]]:
    """A replacement for ``gleansr.atomic._open_for_writing`` under which outputs whose temporary
    name contains ``match`` share ``budget`` free bytes, and the fault's state (``hits``: writes failed)."""
    from gleansr import atomic

    state = {"left": budget, "hits": 0, "kill": kill}
    real = atomic._open_for_writing

    def opened(temp: Path) -> Any:
        handle = real(temp)
        return _Filling(handle, state) if match in temp.name else handle

    return opened, state


if __name__ == "__main__":
    from gleansr import atomic
    from gleansr.cli import main

    atomic._open_for_writing, _ = faulty_opener(int(os.environ["GLEANSR_FAULT_BYTES"]),
                                                os.environ.get("GLEANSR_FAULT_MATCH", ""),
                                                bool(os.environ.get("GLEANSR_FAULT_KILL")))

    sys.exit(main(sys.argv[1:]))
