"""Bank training under DDP: two gloo processes give the gradients of one process on the whole batch.

R1 and path-length regularisation differentiate through ``autograd.grad(create_graph=True)``
inside DDP (pytorch issue 47562): this checks, in float64, that every term's gradient (the D
loss, R1, the G loss, path length) and the running mean path length on 2 processes, each with
half of a batch, equal one process's on the whole batch.
"""
from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gleansr.train.bank import BankConfig, BankRecipe
from gleansr.train.distributed import DistInfo

CONFIG = dict(size=16, channel_max=8, style_channels=8, num_mlps=2, batch_size=2, mbstd_group_size=2,
              r1_every=2, pl_every=2, pl_batch_shrink=1, augment=False, num_workers=0)
WORLD, PER_RANK, TIMEOUT_S = 2, 2, 240


def _inputs(recipe: BankRecipe) -> dict:
    """One batch of every random input (real images, latents, noise, projection) for WORLD x PER_RANK samples."""
    g, n, size = recipe.generator, WORLD * PER_RANK, recipe.config.size
    gen = torch.Generator().manual_seed(7)
    noise_shapes = [tuple(b.shape[2:]) for b in g.injected_noises()]
    return {"real": torch.rand(n, 3, size, size, generator=gen, dtype=torch.float64) * 2 - 1,
            "fake": torch.rand(n, 3, size, size, generator=gen, dtype=torch.float64) * 2 - 1,
            "z1": torch.randn(n, recipe.config.style_channels, generator=gen, dtype=torch.float64),
            "z2": torch.randn(n, recipe.config.style_channels, generator=gen, dtype=torch.float64),
            "noise": [torch.randn(n, 1, *s, generator=gen, dtype=torch.float64) for s in noise_shapes],
            "projection": torch.randn(n, 3, size, size, generator=gen, dtype=torch.float64) / size}


def _share(value, rank: int, world: int):
    """Rank ``rank``'s part of a global batch. Minibatch-stddev groups pair sample i with
    i + N/2, so the global batch interleaves the ranks: rank r holds samples r, r + world, ..."""
    if isinstance(value, list):
        return [_share(v, rank, world) for v in value]
    return value[rank::world]


def _gradients(info: DistInfo) -> dict[str, torch.Tensor]:
    """Every term's gradients and values for this process's share of the batch (all of it alone)."""
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    recipe = BankRecipe(BankConfig(**CONFIG), Path("."))
    recipe.build(info, fresh=True)
    recipe.mean_path_length = torch.tensor(0.5)  # a running mean that is not 0 (a resumed run)
    x = {k: _share(v, info.rank, info.world_size) for k, v in _inputs(recipe).items()}
    out: dict[str, torch.Tensor] = {}

    def record(term: str, net: torch.nn.Module, value: torch.Tensor) -> None:
        out[term] = value
        for name, p in net.named_parameters():
            out[f"{term}.{name}"] = p.grad.detach().clone()

    record("d_loss", recipe.discriminator, recipe.d_backward(x["real"], x["fake"]))
    record("r1", recipe.discriminator, recipe.r1_backward(x["real"]))
    k = recipe.generator.num_latents // 2  # style mixing at the middle layer
    record("g_loss", recipe.generator, recipe.g_backward(x["z1"], x["z2"], k, x["noise"]))
    record("pl", recipe.generator, recipe.pl_backward(x["z1"], x["z2"], k, x["noise"], x["projection"]))
    out["mean_path_length"] = recipe.mean_path_length.clone()
    return out


def _worker(rank: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        torch.save(_gradients(DistInfo(rank, rank, WORLD, torch.device("cpu"))), Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_processes(folder: Path) -> None:
    context = mp.start_processes(_worker, args=(_free_port(), str(folder)), nprocs=WORLD, join=False,
                                 start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail(f"the DDP processes did not finish in {TIMEOUT_S} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()


def test_ddp_regularised_gradients_equal_one_process_on_the_whole_batch(tmp_path):
    _run_two_processes(tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    before = torch.get_default_dtype()
    try:
        single = _gradients(DistInfo(0, 0, 1, torch.device("cpu")))
    finally:
        torch.set_default_dtype(before)

    terms = ("d_loss", "r1", "g_loss", "pl")
    for term in terms:  # the values: each rank's on its half, averaged, is the whole batch's
        assert float(sum(r[term] for r in ranks) / WORLD) == pytest.approx(float(single[term]), rel=1e-10), term
    assert len([key for key in single if key.startswith("pl.")]) > 10
    for key, expected in single.items():
        if key in terms:
            continue
        for rank, got in enumerate(ranks):  # DDP leaves the same averaged gradient on every rank
            scale = float(expected.abs().max()) or 1.0
            torch.testing.assert_close(got[key], expected, rtol=1e-9, atol=1e-9 * scale,
                                       msg=lambda m, key=key, rank=rank: f"rank {rank}, {key}: {m}")
