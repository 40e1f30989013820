"""Processes, devices and data order: DDP from the ``torchrun`` environment, resumable sampling.

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; without them the run is one
process. The backend is NCCL on GPUs and gloo on CPU. Only rank 0 logs and writes files
(:attr:`DistInfo.is_main`).

Data order is a pure function of (seed, epoch, iteration): :class:`ResumableBatchSampler` cuts
each epoch's :class:`~torch.utils.data.DistributedSampler` permutation into batches and can start
at any iteration, and :class:`SeededItems` seeds every item's augmentation from (seed, epoch,
index). A resumed run therefore sees exactly the batches the uninterrupted run would have seen,
whatever the number of DataLoader workers.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler, Sampler

from ..errors import GleanError
from ..hardware import resolve_device, torchrun_place


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, on ``device``."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def default_num_workers() -> int:
    """DataLoader workers that fit the machine: none on 2 cores or fewer, else up to 4, one core left."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cpus <= 2 else min(4, cpus - 1)


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the ``torchrun`` process group if ``WORLD_SIZE > 1``; pick this process's device.

    ``device``: "auto" (``cuda:LOCAL_RANK`` if CUDA is available, else CPU), "cpu" or "cuda".
    """
    rank, local_rank, world = torchrun_place()
    dev = resolve_device(device, local_rank=local_rank)
    use_cuda = dev.type == "cuda"
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        check_elastic_store()
        # Long timeout: rank 0 validates and saves while the others wait at the next collective.
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(minutes=60))
    return DistInfo(rank, local_rank, world, dev)


SHARED_STORE_FIX = "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1"


def check_elastic_store() -> None:
    """Refuse a ``torchrun --max-restarts`` run that could not restart.

    With the c10d rendezvous, torchrun by default lends its own store to the workers and keeps it
    across restarts; the restarted workers then read the previous group's addresses and never
    connect (pytorch issue 135712; seen with gloo and torch 2.13). With
    ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` every group gets a fresh store.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and os.environ.get("TORCHELASTIC_MAX_RESTARTS",
                                                                                   "0") != "0":
        raise GleanError(f"torchrun --max-restarts needs {SHARED_STORE_FIX} in its environment: with the shared "
                         "rendezvous store the restarted workers cannot connect (pytorch issue 135712)")


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``values`` over processes (a NaN on any rank reaches every rank)."""
    if info.distributed:
        values = values.clone()
        dist.all_reduce(values)
        values /= info.world_size
    return values


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj`` as a list on every rank (rank order); ``[obj]`` in one process."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed that depends only on the run seed, the epoch and the dataset index."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0]) >> 1


class SeededItems(Dataset):
    """Wraps a dataset whose items draw from torch's global RNG (flip, degradations).

    Keys are ``(epoch, index)``; the item is made with the CPU RNG seeded by
    :func:`item_seed` and the caller's RNG state is restored afterwards.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(item_seed(self.seed, epoch, index))
            return self.dataset[index]


class ResumableBatchSampler(Sampler[list[tuple[int, int]]]):
    """Endless batches of ``(epoch, index)`` keys for this rank, starting at ``start_iter``.

    Epoch e uses ``DistributedSampler(seed=seed, shuffle=True, drop_last=False)`` with
    ``set_epoch(e)``: the permutation of ``randperm(n, seed + e)``, padded to a multiple of
    the world size, rank r taking every world_size-th index from r. The rank's share is cut
    into ``batch_size`` batches (an incomplete last batch is dropped, so every batch is full),
    so iteration i is batch ``i % per_epoch`` of epoch ``i // per_epoch``.
    """

    def __init__(self, dataset_len: int, batch_size: int, info: DistInfo, seed: int, start_iter: int = 0) -> None:
        self.sampler = DistributedSampler(range(dataset_len), num_replicas=info.world_size, rank=info.rank,
                                          shuffle=True, seed=seed, drop_last=False)
        self.batch_size = batch_size
        self.per_epoch = self.sampler.num_samples // batch_size
        if self.per_epoch == 0:
            raise GleanError(f"the training set has {dataset_len} images, fewer than one batch per process "
                             f"({batch_size} x {info.world_size} processes)")
        self.start_iter = start_iter

    def position(self, iteration: int) -> tuple[int, int]:
        """(epoch, batch within the epoch) that iteration ``iteration`` (0-based) reads."""
        return divmod(iteration, self.per_epoch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, first = self.position(self.start_iter)
        while True:
            self.sampler.set_epoch(epoch)
            order = list(self.sampler)
            for b in range(first, self.per_epoch):
                yield [(epoch, i) for i in order[b * self.batch_size:(b + 1) * self.batch_size]]
            epoch, first = epoch + 1, 0
