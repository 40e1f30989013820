"""Model runs for the server: a bounded queue, one worker per device, batching, an LRU of models.

Requests for the same model and precision that are waiting together go through the model in one
forward pass; when that pass fails, each job is run again alone, so one bad input fails only itself. Only one model run is in flight per device (a process-wide lock per device name),
models are loaded on first use and the least recently used one is dropped beyond ``max_models``.
A whole photo with faces (``photo_scale`` set) runs alone: its face crops are the model's batch.
A cancelled job (its client went away or timed out) is taken out of the queue and never runs.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

_DEVICE_LOCKS: dict[str, threading.Lock] = collections.defaultdict(threading.Lock)
_LOCKS_GUARD = threading.Lock()


def device_lock(device: str) -> threading.Lock:
    """The one lock around model runs on ``device``, shared by every engine in this process."""
    with _LOCKS_GUARD:
        return _DEVICE_LOCKS[device]


class QueueFull(Exception):
    """The queue holds ``max_queue`` jobs already; the client should retry later."""


@dataclass(eq=False)
class Job:
    """One image for one (model, precision); ``future`` gets the SR array or the exception.
    With ``photo_scale`` the image is a whole photo for ``upscale_photo`` and ``future`` gets its
    :class:`~gleansr.pipeline.faces.FaceResult`."""

    model: str
    precision: str
    image: np.ndarray  # float32 (H, W, C) in [0, 1], as Upscaler.upscale takes it
    photo_scale: int | None = None  # a whole photo with faces, upscaled by this factor
    future: Future = field(default_factory=Future)
    submitted: float = field(default_factory=time.perf_counter)
    started: float | None = None
    run_s: float = 0.0
    batch_size: int = 0
    cancelled: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return self.model, self.precision


class Engine:
    """Runs jobs on one device. ``loader(name, precision)`` returns an object with
    ``upscale_batch(images, batch_size)`` and, for whole photos, ``upscale_photo(photo, scale)``
    (an :class:`~gleansr.pipeline.upscaler.Upscaler`)."""

    def __init__(self, loader: Callable[[str, str], Any], device: str = "cpu", max_models: int = 2,
                 max_queue: int = 16, max_batch: int = 8, batch_wait_s: float = 0.002):
        self.loader, self.device = loader, device
        self.max_models, self.max_queue = max(1, max_models), max(1, max_queue)
        self.max_batch, self.batch_wait_s = max(1, max_batch), batch_wait_s
        self.stats = collections.Counter()
        self._models: collections.OrderedDict[tuple[str, str], Any] = collections.OrderedDict()
        self._queue: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._loading = threading.Lock()  # models load one at a time, outside the device lock
        self._closed = False
        self._worker = threading.Thread(target=self._work, name=f"gleansr-serve-{device}", daemon=True)
        self._worker.start()

    # -- the request side ---------------------------------------------------------------------
    def submit(self, model: str, precision: str, image: np.ndarray, photo_scale: int | None = None) -> Job:
        """Queue one image (a whole photo with faces when ``photo_scale`` is given); QueueFull when
        ``max_queue`` jobs are already waiting."""
        job = Job(model, precision, image, photo_scale)
        with self._cond:
            if self._closed:
                raise RuntimeError("the engine is closed")
            self._refuse_when_full()
            self._queue.append(job)
            self._cond.notify()
        return job

    def check_room(self) -> None:
        """QueueFull (counted as a rejection) when ``max_queue`` jobs wait already: a request asks
        before it decodes, so a job that cannot wait costs no decode."""
        with self._cond:
            self._refuse_when_full()

    def _refuse_when_full(self) -> None:
        if len(self._queue) >= self.max_queue:
            self.stats["rejected"] += 1
            raise QueueFull

    def cancel(self, job: Job) -> None:
        """Drop ``job``: out of the queue if it waits there; its result is discarded if it runs."""
        with self._cond:
            job.cancelled = True
            if job in self._queue:
                self._queue.remove(job)
                self.stats["dropped"] += 1
        job.future.cancel()

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def loaded(self) -> list[str]:
        with self._cond:
            return [f"{name} ({precision})" for name, precision in self._models]

    def upscaler(self, model: str, precision: str) -> Any:
        """The loaded model (loaded now if needed): requests prepare their inputs with it
        (``prepare``: crop and resize) in their own thread, outside the device lock."""
        return self._model((model, precision))

    def close(self, timeout: float = 30) -> None:
        """Stop the worker, waiting up to ``timeout`` seconds for a run in progress; waiting jobs are cancelled."""
        with self._cond:
            self._closed = True
            waiting = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for job in waiting:
            job.future.cancel()
        self._worker.join(timeout=timeout)

    # -- the worker side ----------------------------------------------------------------------
    def _next_batch(self) -> list[Job]:
        """Wait for a job, then take every waiting job of the same model (up to ``max_batch``);
        a whole photo goes alone."""
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return []
            deadline = time.monotonic() + self.batch_wait_s  # let requests sent together arrive together
            while len(self._queue) < self.max_batch and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if not self._queue:
                return []
            first = self._queue[0]
            batch = [first] if first.photo_scale else \
                [j for j in self._queue if j.key == first.key and not j.photo_scale][: self.max_batch]
            for job in batch:
                self._queue.remove(job)
            return batch

    def _work(self) -> None:
        while not self._closed:
            batch = self._next_batch()
            if batch:
                self._run(batch)

    def _model(self, key: tuple[str, str]) -> Any:
        with self._loading:
            with self._cond:
                if key in self._models:
                    self._models.move_to_end(key)
                    return self._models[key]
                while len(self._models) >= self.max_models:
                    dropped, _ = self._models.popitem(last=False)
                    log.info("unloaded %s (%s): more than %d models", *dropped, self.max_models)
            upscaler = self.loader(*key)
            log.info("loaded %s (%s): precision %s", *key, getattr(upscaler, "precision_reason", None) or key[1])
            with self._cond:
                self._models[key] = upscaler
            return upscaler

    def _forward(self, batch: list[Job]) -> list:
        """Results (or the exception) of one pass of ``batch`` through its model, under the device lock."""
        try:
            with device_lock(self.device):
                upscaler = self._model(batch[0].key)
                if batch[0].photo_scale:
                    return [upscaler.upscale_photo(batch[0].image, batch[0].photo_scale)]
                return list(upscaler.upscale_batch([j.image for j in batch], batch_size=len(batch)))
        except Exception as exc:  # noqa: BLE001 - handed to each waiting request, which reports it
            return [exc] * len(batch)

    def _run(self, batch: list[Job]) -> None:
        start = time.perf_counter()
        for job in batch:
            job.started, job.batch_size = start, len(batch)
        results = self._forward(batch)
        if len(batch) > 1 and isinstance(results[0], Exception):  # which job failed it? each alone
            self.stats["split"] += 1
            results = [self._forward([job])[0] for job in batch]
        run_s = time.perf_counter() - start
        self.stats["batches"] += 1
        for job, result in zip(batch, results):
            job.run_s = run_s
            if job.cancelled or not job.future.set_running_or_notify_cancel():
                continue
            self.stats["done"] += 1
            if isinstance(result, Exception):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)
