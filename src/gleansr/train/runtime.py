"""One training runtime for every recipe (GLEAN, the StyleGAN2 bank).

The runtime owns what a run is; a :class:`Recipe` owns what is trained. The runtime:

1. joins the ``torchrun`` process group (or runs as one process) and picks the device;
2. finds the run folder's checkpoint (``last.pt``, else ``previous.pt``; a damaged ``last.pt`` is
   set aside; partial ``.last.pt.*.tmp`` files of saves that were killed are removed) and lets the
   recipe resolve its config against it (only some fields may change);
   says when it resumes, and stops at once when the run is already complete;
3. lets the recipe check its inputs and fetch its files (:meth:`Recipe.prepare`) before any
   network exists, seeds every rank alike, lets it build (and on resume, load) its networks;
4. reads batches through :mod:`gleansr.train.batches` (resumable order, workers that ignore stop
   signals and whose errors end the run with one line, never hang it);
5. runs the steps: each iteration's losses and a stop flag are averaged over processes in one
   all-reduce, so a NaN/inf on any rank stops every rank (:class:`TrainingDiverged`) before
   anything is saved, and SIGINT/SIGTERM on any rank finish the iteration, save and stop;
6. logs (``metrics.jsonl``, progress bar, TensorBoard) and saves ``last.pt``/``previous.pt``
   atomically (a full disk is one line and leaves both as they were), with the RNG states of every rank, restored after the data iterator is opened
   (which draws from the RNG) so that a resumed run continues bit for bit on CPU.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from ..atomic import atomic_write_bytes, make_folder
from ..errors import GleanError
from .batches import make_loader, next_batch, open_batches
from .distributed import (DistInfo, ResumableBatchSampler, SeededItems, all_gather_objects, all_reduce_mean, barrier,
                          init_distributed, shutdown_distributed)
from ..loading import load_state_dict_strict
from .log import RunLog
from .state import (LAST, capture_rng, load_latest, remove_partial_checkpoints, restore_rng,
                    save_training_checkpoint)

logger = logging.getLogger("gleansr.train")
DAMAGED = "last.pt.damaged"


class TrainingDiverged(GleanError):
    """A loss became NaN or infinite; nothing was saved after the last good checkpoint."""


class Recipe(Protocol):
    """What one kind of training supplies to the runtime.

    ``config`` is a frozen dataclass with at least ``max_iters``, ``seed``, ``num_workers``,
    ``log_every``, ``save_every`` and ``to_dict()``.
    """

    kind: str  # stored in checkpoints; a run folder of another kind is refused
    loss_names: tuple[str, ...]
    config: Any
    images_per_step: int  # per process and iteration (batch size x accumulation)

    def prepare(self, info: DistInfo, fresh: bool) -> Dataset:
        """Check inputs, fetch files; return the training set. Builds no network."""

    def build(self, info: DistInfo, fresh: bool) -> None:
        """Networks, optimizers, scalers (initial weights on a fresh run)."""

    def load_state(self, state: Mapping[str, Any], source: str) -> None:
        """Restore what :meth:`state` saved."""

    def state(self) -> dict[str, Any]:
        """Networks, optimizers, ... for the checkpoint."""

    def step(self, batch: Any, iteration: int) -> torch.Tensor:
        """Train iteration ``iteration`` (0-based); the detached float32 losses, in ``loss_names`` order."""

    def log_values(self, iteration: int) -> dict[str, float]:
        """Extra values for a logged record (learning rates, running means)."""

    def periodic_due(self, iteration: int, final: bool) -> bool:
        """Whether :meth:`periodic` runs after ``iteration`` (the same answer on every rank)."""

    def periodic(self, iteration: int, out: Path) -> dict[str, float]:
        """Validation / samples on the main process; values for the log."""

    def export(self, out: Path, iteration: int) -> None:
        """Files written next to each checkpoint, on the main process."""


@dataclass(frozen=True)
class RunResult:
    """How a run ended: the last saved iteration and checkpoint, and the latest periodic values."""

    iteration: int
    checkpoint: Path | None
    stopped_by: int | None = None  # the signal that ended the run early
    is_main: bool = True  # rank 0, the process that reports
    scores: dict[str, float] | None = None


def check_finite(names: tuple[str, ...], values: list[float], iteration: int, last_checkpoint: Path,
                 last_saved: int | None) -> None:
    """Raise TrainingDiverged naming the first loss in ``values`` that is NaN or infinite."""
    for name, value in zip(names, values):
        if not np.isfinite(value):
            kept = f"{last_checkpoint} (iteration {last_saved})" if last_saved else "none"
            raise TrainingDiverged(f"iteration {iteration}: {name} is {value}; stopped without saving "
                                   f"(last good checkpoint: {kept})")


class StopRequest:
    """SIGINT/SIGTERM set a flag checked once per iteration; a second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        logger.info("%s: saving after this iteration (Ctrl-C again to abort without saving)",
                    signal.Signals(signum).name)

    def __enter__(self) -> "StopRequest":
        with contextlib.suppress(ValueError):  # not the main thread: signals stay as they are
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def autocast(precision: str, device: torch.device) -> Any:
    """Autocast for ``bf16``/``fp16``; a no-op context for ``fp32``."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def grad_scaler(precision: str, device: torch.device) -> Any:
    """A GradScaler, active only for fp16 (bf16 has float32's range)."""
    enabled = precision == "fp16"
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device.type, enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)  # torch < 2.3


def wrap_ddp(module: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """``module`` for training: under DDP when several processes run, else as it is (on CUDA,
    cuDNN autotunes its kernels: the shapes never change during a run)."""
    if info.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if not info.distributed:
        return module
    kwargs: dict[str, Any] = {"broadcast_buffers": False}  # the buffers (noise, FIR kernels) are constants
    if info.device.type == "cuda":
        kwargs["device_ids"] = [info.device.index]
    return DistributedDataParallel(module, **kwargs)


@dataclass(frozen=True)
class StateTable:
    """Which attributes of a recipe's holder go into a checkpoint, and under which key: ``networks``
    are loaded strictly (every key, every shape); ``others`` (optimizers, scalers) by their own
    ``load_state_dict``."""

    networks: tuple[tuple[str, str], ...]  # (attribute, checkpoint key)
    others: tuple[tuple[str, str], ...]

    def state(self, holder: Any) -> dict[str, Any]:
        return {key: getattr(holder, attr).state_dict() for attr, key in self.networks + self.others}

    def load(self, holder: Any, state: Mapping[str, Any], source: str) -> None:
        for attr, key in self.networks:
            load_state_dict_strict(getattr(holder, attr), state[key], f"{source} ({key})")
        for attr, key in self.others:
            getattr(holder, attr).load_state_dict(state[key])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# A recipe from the checkpoint's config (None on a fresh run) and the checkpoint's path (for messages).
MakeRecipe = Callable[[Mapping[str, Any] | None, str], Recipe]


def run_training(kind: str, make_recipe: MakeRecipe, out: str | os.PathLike, *, device: str = "auto",
                 resume: bool = False, progress: bool = True) -> RunResult:
    """Train (or continue training) a run of ``kind`` in ``out``; run under ``torchrun`` for DDP.

    A run folder holding a checkpoint is always continued (``resume=True`` makes a missing one an
    error).
    """
    info = init_distributed(device)
    try:
        return _run(kind, make_recipe, Path(out), info, resume, progress)
    finally:
        shutdown_distributed()


def _latest(out: Path, resume: bool, info: DistInfo, kind: str) -> tuple[Path, dict[str, Any]] | None:
    found = load_latest(out)
    if info.is_main:
        stale = remove_partial_checkpoints(out)
        if stale:
            logger.warning("removed %d partial checkpoint(s) left by an interrupted save: %s", len(stale),
                           ", ".join(p.name for p in stale))
    if resume and found is None:
        raise GleanError(f"--resume: no checkpoint ({LAST} / previous.pt) in {out}")
    if found and found[1].get("kind", "glean") != kind:
        raise GleanError(f"{found[0]} is a {found[1].get('kind', 'glean')} checkpoint, not {kind}; use another --out")
    if found and found[0].name != LAST and (out / LAST).exists() and info.is_main:
        # Set the damaged file aside, or the next save would rotate it over the good one.
        os.replace(out / LAST, out / DAMAGED)
        logger.warning("moved the unreadable %s to %s", LAST, DAMAGED)
    return found


def _run(kind: str, make_recipe: MakeRecipe, out: Path, info: DistInfo, resume: bool, progress: bool) -> RunResult:
    found = _latest(out, resume, info, kind)
    recipe = make_recipe(found[1]["config"] if found else None, str(found[0]) if found else "")
    config, start = recipe.config, int(found[1]["iteration"]) if found else 0
    make_folder(out)  # before any download or build: a file or a read-only folder there is one line now
    if found and info.is_main:
        done = start >= config.max_iters
        logger.info("%s %s: iteration %d of %d%s", "run" if done else "resuming", found[0], start, config.max_iters,
                    " is already complete (raise --max-iters to train further)" if done else "")
    if start >= config.max_iters:
        return RunResult(start, found[0] if found else None, is_main=info.is_main)
    dataset = recipe.prepare(info, fresh=found is None)
    seed_everything(config.seed)  # identical initial weights on every rank
    recipe.build(info, fresh=found is None)
    saved_rng = None
    if found:
        recipe.load_state(found[1], str(found[0]))
        rngs, world = found[1]["rng"], found[1]["data"]["world_size"]
        saved_rng = rngs[info.rank] if len(rngs) == info.world_size else rngs[0]
        if world != info.world_size and info.is_main:
            logger.warning("resuming with %d processes instead of %d: the data order differs from the "
                           "uninterrupted run's", info.world_size, world)
    del found  # free the checkpoint's tensors
    sampler = ResumableBatchSampler(len(dataset), recipe.images_per_step, info, config.seed, start_iter=start)
    loader = make_loader(SeededItems(dataset, config.seed), sampler, config.num_workers, info.device.type == "cuda")
    if info.is_main:
        text = json.dumps(config.to_dict(), indent=2) + "\n"
        atomic_write_bytes(out / "config.json", text.encode("utf-8"), overwrite=True)
    with open_batches(loader) as batches:
        if saved_rng is not None:  # after iter(loader), which draws from the RNG, as at the original start
            restore_rng(saved_rng)
        return _loop(recipe, batches, sampler, start, out, info, progress)


def _save(recipe: Recipe, sampler: ResumableBatchSampler, out: Path, iteration: int, info: DistInfo) -> None:
    rngs = all_gather_objects(capture_rng(), info)
    if info.is_main:
        epoch, batch = sampler.position(iteration)
        save_training_checkpoint(out, {
            "kind": recipe.kind, "iteration": iteration, "config": recipe.config.to_dict(), **recipe.state(),
            "rng": rngs, "data": {"epoch": epoch, "batch": batch, "world_size": info.world_size,
                                  "batch_size": recipe.images_per_step},
        })
        recipe.export(out, iteration)
    barrier(info)


class _Interval:
    """Loss means over the iterations since the last logged record, and their timing."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names, self.sums, self.count = names, np.zeros(len(names)), 0
        self.start = self.run_start = time.perf_counter()

    def add(self, values: list[float]) -> None:
        self.sums += values[:len(self.names)]
        self.count += 1

    def record(self) -> dict[str, float]:
        now = time.perf_counter()
        values = {**dict(zip(self.names, (self.sums / self.count).tolist())),
                  "time": (now - self.start) / self.count, "elapsed": now - self.run_start}
        self.sums[:], self.count, self.start = 0, 0, now
        return values


def _loop(recipe: Recipe, batches: Iterator[Any], sampler: ResumableBatchSampler, start: int, out: Path,
          info: DistInfo, progress: bool) -> RunResult:
    config, dev = recipe.config, info.device
    log = RunLog(out, start, config.max_iters, enabled=info.is_main, progress=progress)
    last_saved, stopped_by, scores = start or None, None, None
    interval = _Interval(recipe.loss_names)
    try:
        with StopRequest() as stop:
            for it in range(start, config.max_iters):
                losses = recipe.step(next_batch(batches), it)
                flag = torch.tensor([float(stop.signum is not None)], device=dev)
                reduced = all_reduce_mean(torch.cat([losses, flag]), info).tolist()  # the one sync per iteration
                iteration, final = it + 1, it + 1 == config.max_iters
                check_finite(recipe.loss_names, reduced, iteration, out / LAST, last_saved)
                interval.add(reduced)
                if iteration % config.log_every == 0 or final:
                    log.add({**interval.record(), **recipe.log_values(it)})
                if recipe.periodic_due(iteration, final):
                    if info.is_main:
                        scores = recipe.periodic(iteration, out)
                        log.add(scores)
                    barrier(info)
                log.step(iteration)
                stop_now = reduced[-1] > 0
                if iteration % config.save_every == 0 or final or stop_now:
                    _save(recipe, sampler, out, iteration, info)
                    last_saved = iteration
                if stop_now:
                    stopped_by = stop.signum or signal.SIGTERM  # or another rank was signalled
                    log.message(f"gleansr: stopped at iteration {iteration}; the same command resumes the run")
                    break
    finally:
        log.close()
    return RunResult(last_saved or 0, out / LAST if last_saved else None, stopped_by, info.is_main, scores)
