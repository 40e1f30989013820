"""StyleGAN2 bank training (config-f by default): a latent bank for GLEAN from your own images.

One iteration (StyleGAN2's recipe, as rosinality's ``train.py`` and MMGeneration run it):

1. D step: ``softplus(D(fake)) + softplus(-D(real))`` with ``fake = G(z)`` (style mixing,
   random noise, no gradient to G); both through DiffAugment with ``augment``;
2. lazy R1 every ``r1_every`` iterations: ``r1_gamma / 2 * |grad_x D(x_real)|^2 * r1_every``;
3. G step: the non-saturating loss ``softplus(-D(G(z)))``;
4. lazy path-length regularisation every ``pl_every`` iterations on ``batch / pl_batch_shrink``
   samples: ``pl_weight * pl_every * (|J_w^T y| - a)^2`` (``pl_weight = 0`` disables it);
5. EMA: ``G_ema = beta * G_ema + (1 - beta) * G``, ``beta = 0.5 ** (global batch / (ema_kimg * 1000))``.

Lazy regularisation rescales Adam as the StyleGAN2 paper does (App. B): ``lr * c`` and
``betas ** c`` with ``c = every / (every + 1)``. With ``precision`` bf16/fp16 the main steps run
under autocast (fp16 with a GradScaler); the R1 and path-length passes, whose double
back-propagation is fragile in half precision, run in float32.

A run folder holds ``last.pt`` / ``previous.pt`` (:mod:`gleansr.train.state`: networks, EMA,
optimizers, scalers, RNG of every rank, iteration, path-length mean), and at every save the
bank itself: ``bank.pth`` in MMGeneration's layout (``generator.*``, ``generator_ema.*``,
``discriminator.*``; ``meta['gleansr_bank']`` holds both networks' constructor arguments) and
``bank.safetensors`` (+ ``bank.discriminator.safetensors``); ``samples/iter_*.png`` are grids
from a fixed z through the EMA generator; ``metrics.jsonl`` the losses.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from ..atomic import atomic_write_bytes
from ..loading import export_bank_run, load_state_dict_strict
from ..data.convert import uint8_to_tensor
from ..data.datasets import list_images, read_rgb
from ..errors import GleanError
from ..models.discriminator import StyleGAN2Discriminator
from ..models.stylegan2 import StyleGAN2Generator
from ..train.distributed import (DistInfo, ResumableBatchSampler, SeededItems, all_gather_objects, all_reduce_mean,
                                 barrier, init_distributed, shutdown_distributed)
from ..train.log import RunLog
from ..train.runtime import StopRequest, autocast, check_finite, grad_scaler, seed_everything
from ..train.losses import logistic_d_loss, logistic_g_loss, path_length_penalty, r1_penalty
from ..train.state import capture_rng, load_latest, restore_rng, save_training_checkpoint
from .augment import diff_augment
from .sample import sample_images, save_grid

RUN_KIND = "stylegan2-bank"
LOSS_NAMES = ("loss_gan_d", "loss_gan_g", "loss_r1", "loss_pl")
# May differ between a run and the command that resumes it; anything else would be another run.
RESUMABLE_CHANGES = frozenset({"max_iters", "precision", "num_workers", "log_every", "save_every", "sample_every"})


@dataclass(frozen=True)
class BankConfig:
    """Bank architecture (GLEAN's StyleGAN2; defaults = config-f) and training hyper-parameters."""

    size: int
    style_channels: int = 512
    num_mlps: int = 8
    channel_multiplier: float = 2
    channel_max: int = 512
    lr_mlp: float = 0.01
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)
    mbstd_group_size: int = 4
    batch_size: int = 8  # per process; config-f used 32 in total
    max_iters: int = 800_000
    lr: float = 0.002
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float = 10.0
    r1_every: int = 16
    pl_weight: float = 2.0
    pl_every: int = 4
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    mixing_prob: float = 0.9
    ema_kimg: float = 10.0
    ema_beta: float = 0.0  # > 0 overrides the value derived from ema_kimg
    augment: bool = False
    flip: bool = True
    precision: str = "fp32"
    seed: int = 0
    num_samples: int = 16
    log_every: int = 100
    save_every: int = 5000
    sample_every: int = 1000
    num_workers: int = 4

    def __post_init__(self) -> None:
        if self.size < 8 or self.size & (self.size - 1):
            raise GleanError(f"--size must be a power of two >= 8, got {self.size}")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise GleanError(f"--precision must be fp32, bf16 or fp16, got {self.precision!r}")
        group = min(self.batch_size, self.mbstd_group_size)
        if self.batch_size < 1 or self.batch_size % group:
            raise GleanError(f"--batch {self.batch_size} must be <= {self.mbstd_group_size} or a multiple of it "
                             "(minibatch standard deviation groups)")
        for name in ("max_iters", "r1_every", "pl_every", "pl_batch_shrink", "log_every", "save_every",
                     "sample_every", "num_samples"):
            if getattr(self, name) < 1:
                raise GleanError(f"{name} must be at least 1, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["blur_kernel"], d["betas"] = list(self.blur_kernel), list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BankConfig":
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise GleanError(f"unknown bank config keys: {', '.join(unknown)}")
        d = dict(d)
        for key in ("blur_kernel", "betas"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    def generator_kwargs(self) -> dict[str, Any]:
        return dict(out_size=self.size, style_channels=self.style_channels, num_mlps=self.num_mlps,
                    channel_multiplier=self.channel_multiplier, blur_kernel=list(self.blur_kernel),
                    lr_mlp=self.lr_mlp, channel_max=self.channel_max)

    def discriminator_kwargs(self) -> dict[str, Any]:
        return dict(in_size=self.size, channel_multiplier=self.channel_multiplier, blur_kernel=list(self.blur_kernel),
                    mbstd_cfg={"group_size": self.mbstd_group_size, "channel_groups": 1},
                    channel_max=self.channel_max)


def resolve_config(overrides: Mapping[str, Any], saved: Mapping[str, Any] | None, source: str = "") -> BankConfig:
    """The run's config: defaults (or the checkpoint's) with ``overrides``; on resume only
    :data:`RESUMABLE_CHANGES` may differ from the checkpoint."""
    if saved is None:
        if "size" not in overrides:
            raise GleanError("--size is required to start a new bank run")
        return BankConfig.from_dict(overrides)
    config = BankConfig.from_dict({**saved, **overrides})
    old = BankConfig.from_dict(saved).to_dict()
    for key, value in config.to_dict().items():
        if key not in RESUMABLE_CHANGES and value != old[key]:
            raise GleanError(f"cannot resume {source}: {key} was {old[key]!r}, now {value!r}; only "
                             f"{', '.join(sorted(RESUMABLE_CHANGES))} may change on resume (or use a new --out)")
    return config


class BankImages(Dataset):
    """A folder of images as (3, size, size) in [-1, 1]: centre-cropped to a square and resized
    (Lanczos) when not already ``size``; flipped left-right with p = 0.5 (torch's RNG)."""

    def __init__(self, root: str | Path, size: int, flip: bool = True) -> None:
        self.root, self.size, self.flip = Path(root), size, flip
        self.files = list_images(self.root)
        if not self.files:
            raise GleanError(f"no images found in {self.root}")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        pixels = read_rgb(self.root / self.files[index])
        h, w = pixels.shape[:2]
        if (h, w) != (self.size, self.size):
            side = min(h, w)
            top, left = (h - side) // 2, (w - side) // 2
            square = Image.fromarray(pixels[top:top + side, left:left + side])
            pixels = np.asarray(square.resize((self.size, self.size), Image.LANCZOS))
        image = uint8_to_tensor(pixels)
        return image.flip(-1) if self.flip and torch.rand(()) < 0.5 else image


class MixingGenerator(nn.Module):
    """G's training forward, returning the per-layer latents too (for the path-length penalty).

    z1, z2 (N, style) -> (images (N, 3, size, size), latents (N, L, style)): layers ``[0, k)`` take
    w1, the rest w2 (``k = L``: no mixing); the noise is random. One module, so DDP sees one forward.
    """

    def __init__(self, generator: StyleGAN2Generator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.generator
        w1, w2 = g.mapping(torch.cat([z1, z2])).chunk(2)
        latents = torch.cat([w1.unsqueeze(1).expand(-1, k, -1),
                             w2.unsqueeze(1).expand(-1, g.num_latents - k, -1)], dim=1)
        return g.synthesis(latents, [None] * g.num_injected_noises), latents


def _latents(config: BankConfig, n: int, num_latents: int, device: torch.device) -> tuple:
    """(z1, z2, k): k drawn from [1, L) with probability ``mixing_prob``, else L."""
    z = torch.randn(2, n, config.style_channels, device=device)
    mix = config.mixing_prob > 0 and float(torch.rand(())) < config.mixing_prob
    k = int(torch.randint(1, num_latents, ())) if mix else num_latents
    return z[0], z[1], k


def _lazy_adam(params: Any, config: BankConfig, every: int | None) -> torch.optim.Adam:
    """Adam for a network regularised every ``every`` steps (None: never): lr and betas scaled
    so that the regulariser's extra steps leave the effective schedule as without it."""
    c = every / (every + 1) if every else 1.0
    return torch.optim.Adam(params, lr=config.lr * c, betas=(config.betas[0] ** c, config.betas[1] ** c))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """Parameters: ``ema = beta * ema + (1 - beta) * model``; buffers are copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p, 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def ema_beta(config: BankConfig, world_size: int) -> float:
    """EMA decay per step: half-life of ``ema_kimg`` thousand images at the global batch size."""
    if config.ema_beta > 0:
        return config.ema_beta
    return 0.5 ** (config.batch_size * world_size / (config.ema_kimg * 1000.0))


def export_run_bank(out: Path, config: BankConfig, iteration: int, generator: nn.Module, generator_ema: nn.Module,
                    discriminator: nn.Module) -> Path:
    """Write ``bank.pth`` (MMGeneration layout) and ``bank.safetensors`` (+ discriminator)."""
    return export_bank_run(out, iteration, generator, generator_ema, discriminator, config.generator_kwargs(),
                           config.discriminator_kwargs())


@dataclass(frozen=True)
class BankResult:
    iteration: int
    bank: Path | None
    stopped_by: int | None = None  # the signal that ended the run early
    is_main: bool = True  # rank 0, the process that reports


def train_bank(data: str | Path, out: str | Path, overrides: Mapping[str, Any], device: str = "auto",
               progress: bool = True) -> BankResult:
    """Train (or continue, if ``out`` holds a checkpoint) a bank on the images under ``data``.

    ``overrides``: BankConfig fields given by the user (``size`` is required for a new run).
    Run under ``torchrun`` for several GPUs.
    """
    info = init_distributed(device)
    try:
        return _train(Path(data), Path(out), overrides, info, progress)
    finally:
        shutdown_distributed()


def _train(data: Path, out: Path, overrides: Mapping[str, Any], info: DistInfo, progress: bool) -> BankResult:
    found = load_latest(out)
    if found is not None and found[1].get("kind") != RUN_KIND:
        raise GleanError(f"{found[0]} is not a bank training checkpoint; use another --out")
    config = resolve_config(overrides, found[1]["config"] if found else None, str(found[0]) if found else "")
    dev = info.device

    seed_everything(config.seed)  # identical initial weights on every rank
    generator = StyleGAN2Generator(**config.generator_kwargs())
    discriminator = StyleGAN2Discriminator(**config.discriminator_kwargs())
    generator_ema = copy.deepcopy(generator).eval().requires_grad_(False)
    for net in (generator, discriminator, generator_ema):
        net.to(dev)
    opt_g = _lazy_adam(generator.parameters(), config, config.pl_every if config.pl_weight > 0 else None)
    opt_d = _lazy_adam(discriminator.parameters(), config, config.r1_every if config.r1_gamma > 0 else None)
    scaler_g, scaler_d = grad_scaler(config.precision, dev), grad_scaler(config.precision, dev)  # type: ignore[arg-type]
    mean_path_length = torch.zeros((), device=dev)
    start, saved_rng = 0, None
    torch.manual_seed(config.seed + 1 + info.rank)  # different latents on every rank
    if found is not None:
        path, state = found
        for net, key in ((generator, "generator"), (generator_ema, "generator_ema"), (discriminator, "discriminator")):
            load_state_dict_strict(net, state[key], f"{path} ({key})")
        for obj, key in ((opt_g, "optimizer_g"), (opt_d, "optimizer_d"), (scaler_g, "scaler_g"), (scaler_d, "scaler_d")):
            obj.load_state_dict(state[key])
        mean_path_length = state["mean_path_length"].to(dev)
        rngs = state["rng"]
        saved_rng = rngs[info.rank] if len(rngs) == info.world_size else rngs[0]
        start = int(state["iteration"])
        del state
    found = None

    ddp_kwargs: dict[str, Any] = {"broadcast_buffers": False}  # buffers (noise, FIR kernels) are constants
    if dev.type == "cuda":
        ddp_kwargs["device_ids"] = [dev.index]
        torch.backends.cudnn.benchmark = True
    mixing = MixingGenerator(generator)
    g_train = DistributedDataParallel(mixing, **ddp_kwargs) if info.distributed else mixing
    d_train = DistributedDataParallel(discriminator, **ddp_kwargs) if info.distributed else discriminator
    augment = diff_augment if config.augment else (lambda x: x)
    beta = ema_beta(config, info.world_size)

    dataset = BankImages(data, config.size, flip=config.flip)
    sampler = ResumableBatchSampler(len(dataset), config.batch_size, info, config.seed, start_iter=start)
    loader = DataLoader(SeededItems(dataset, config.seed), batch_sampler=sampler, num_workers=config.num_workers,
                        pin_memory=dev.type == "cuda", persistent_workers=config.num_workers > 0)
    if info.is_main:
        atomic_write_bytes(out / "config.json", (json.dumps(config.to_dict(), indent=2) + "\n").encode(), overwrite=True)

    def save(iteration: int) -> None:
        rngs = all_gather_objects(capture_rng(), info)
        if info.is_main:
            epoch, batch = sampler.position(iteration)
            save_training_checkpoint(out, {
                "kind": RUN_KIND, "iteration": iteration, "config": config.to_dict(),
                "generator": generator.state_dict(), "generator_ema": generator_ema.state_dict(),
                "discriminator": discriminator.state_dict(), "optimizer_g": opt_g.state_dict(),
                "optimizer_d": opt_d.state_dict(), "scaler_g": scaler_g.state_dict(),
                "scaler_d": scaler_d.state_dict(), "mean_path_length": mean_path_length.detach().cpu(), "rng": rngs,
                "data": {"epoch": epoch, "batch": batch, "world_size": info.world_size,
                         "batch_size": config.batch_size},
            })
            export_run_bank(out, config, iteration, generator, generator_ema, discriminator)
        barrier(info)

    log = RunLog(out, start, config.max_iters, enabled=info.is_main, progress=progress)
    last_saved, stopped_by = (start or None), None
    sums, counted = np.zeros(2), 0
    last_reg = torch.zeros(2, device=dev)  # latest R1 and path-length penalties, for the log
    interval_start = run_start = time.perf_counter()
    batches: Iterator[torch.Tensor] = iter(loader)
    if saved_rng is not None:  # after iter(loader), which draws from the RNG, as at the original start
        restore_rng(saved_rng)
    try:
        with StopRequest() as stop:
            for it in range(start, config.max_iters):
                real = next(batches).to(dev, non_blocking=True)
                n = real.shape[0]

                # D step: G frozen, no gradient to it
                discriminator.requires_grad_(True)
                with torch.no_grad(), autocast(config.precision, dev):  # type: ignore[arg-type]
                    fake, _ = mixing(*_latents(config, n, generator.num_latents, dev))
                with autocast(config.precision, dev):  # type: ignore[arg-type]
                    loss_d = logistic_d_loss(d_train(augment(real)).float(), d_train(augment(fake)).float())
                opt_d.zero_grad(set_to_none=True)
                scaler_d.scale(loss_d).backward()
                scaler_d.step(opt_d)
                scaler_d.update()

                if config.r1_gamma > 0 and it % config.r1_every == 0:  # lazy R1, float32
                    real_in = real.detach().requires_grad_(True)
                    real_logits = d_train(augment(real_in))
                    r1 = r1_penalty(real_logits, real_in)
                    opt_d.zero_grad(set_to_none=True)
                    (config.r1_gamma / 2 * r1 * config.r1_every + 0 * real_logits[0, 0]).backward()
                    opt_d.step()
                    last_reg[0] = r1.detach()

                # G step: D frozen and called unwrapped (no DDP gradient sync for it)
                discriminator.requires_grad_(False)
                with autocast(config.precision, dev):  # type: ignore[arg-type]
                    fake, _ = g_train(*_latents(config, n, generator.num_latents, dev))
                    loss_g = logistic_g_loss(discriminator(augment(fake)).float())
                opt_g.zero_grad(set_to_none=True)
                scaler_g.scale(loss_g).backward()
                scaler_g.step(opt_g)
                scaler_g.update()

                if config.pl_weight > 0 and it % config.pl_every == 0:  # lazy path length, float32
                    images, latents = g_train(*_latents(config, max(1, n // config.pl_batch_shrink),
                                                        generator.num_latents, dev))
                    pl, new_mean, _ = path_length_penalty(images, latents, mean_path_length, config.pl_decay)
                    opt_g.zero_grad(set_to_none=True)
                    (config.pl_weight * config.pl_every * pl + 0 * images[0, 0, 0, 0]).backward()
                    opt_g.step()
                    mean_path_length = all_reduce_mean(new_mean, info)
                    last_reg[1] = pl.detach()

                update_ema(generator_ema, generator, beta)

                flag = torch.tensor(float(stop.signum is not None), device=dev)
                reduced = all_reduce_mean(torch.cat([torch.stack([loss_d.detach().float(), loss_g.detach().float()]),
                                                     last_reg, flag.view(1)]), info).tolist()
                iteration = it + 1
                check_finite(LOSS_NAMES, reduced, iteration, out / "last.pt", last_saved)
                sums += reduced[:2]
                counted += 1
                if iteration % config.log_every == 0 or iteration == config.max_iters:
                    now = time.perf_counter()
                    log.add({**dict(zip(LOSS_NAMES[:2], (sums / counted).tolist())),
                             **dict(zip(LOSS_NAMES[2:], reduced[2:4])), "path_length_mean": float(mean_path_length),
                             "time": (now - interval_start) / counted, "elapsed": now - run_start})
                    sums[:], counted, interval_start = 0, 0, now
                if info.is_main and (iteration % config.sample_every == 0 or iteration == config.max_iters):
                    grid = sample_images(generator_ema, config.num_samples, seed=config.seed)
                    save_grid(grid, out / "samples" / f"iter_{iteration:08d}.png", overwrite=True)
                log.step(iteration)

                requested_stop = reduced[-1] > 0
                if iteration % config.save_every == 0 or iteration == config.max_iters or requested_stop:
                    save(iteration)
                    last_saved = iteration
                if requested_stop:
                    stopped_by = stop.signum or signal.SIGTERM  # another rank was signalled
                    log.message(f"gleansr: stopped at iteration {iteration}; resume with the same command")
                    break
    finally:
        log.close()
    return BankResult(iteration=last_saved or 0, bank=out / "bank.pth" if last_saved else None, stopped_by=stopped_by,
                      is_main=info.is_main)
