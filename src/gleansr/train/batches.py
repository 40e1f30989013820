"""The training DataLoader: resumable batches, workers that leave signals and errors to the run.

Two things go wrong with a plain DataLoader and worker processes:

- Ctrl-C / SIGTERM reach the workers too, which die before the main process can save; so the
  workers ignore both (the main process finishes its iteration, saves and stops).
- An item that fails (an image of the wrong size, an unreadable file) comes back to the main
  process as a multi-line traceback, and while it unwinds, the still-running workers can keep it
  waiting forever in multiprocessing's exit join. So a :class:`GleanError` raised by an item is
  returned as a :class:`WorkerFailure` (its one-line message names the file), turned back into
  the error by :func:`next_batch`, and :func:`open_batches` shuts the workers down on any exit.
"""
from __future__ import annotations

import contextlib
import signal
from dataclasses import dataclass
from typing import Any, Iterator

from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.dataloader import default_collate

from ..errors import GleanError


@dataclass(frozen=True)
class WorkerFailure:
    """A data item that could not be made, and why (one line)."""

    message: str


class _Guarded(Dataset):
    """``dataset[key]``, or a :class:`WorkerFailure` instead of a GleanError."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: Any) -> Any:
        try:
            return self.dataset[key]
        except GleanError as exc:
            return WorkerFailure(str(exc))


def _collate(items: list[Any]) -> Any:
    """The batch, or the first failure among its items."""
    for item in items:
        if isinstance(item, WorkerFailure):
            return item
    return default_collate(items)


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGINT/SIGTERM to the main process, which saves before stopping."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_loader(dataset: Dataset, sampler: Sampler, num_workers: int, pin_memory: bool) -> DataLoader:
    """A DataLoader over ``dataset`` in ``sampler``'s batches; workers ignore stop signals."""
    return DataLoader(_Guarded(dataset), batch_sampler=sampler, num_workers=num_workers, collate_fn=_collate,
                      pin_memory=pin_memory, persistent_workers=num_workers > 0,
                      worker_init_fn=_ignore_stop_signals if num_workers > 0 else None)


@contextlib.contextmanager
def open_batches(loader: DataLoader) -> Iterator[Iterator[Any]]:
    """``iter(loader)``, whose worker processes are stopped and joined however the block ends."""
    batches = iter(loader)
    try:
        yield batches
    finally:
        # The iterator's own shutdown (what its __del__ would do, but now, before the error unwinds).
        shutdown = getattr(batches, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


def next_batch(batches: Iterator[Any]) -> Any:
    """The next batch; GleanError (one line) if one of its items failed."""
    batch = next(batches)
    if isinstance(batch, WorkerFailure):
        raise GleanError(batch.message)
    return batch
