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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from .augment import diff_augment
from .bank_samples import sample_images, save_grid
from ..imaging.convert import uint8_to_tensor
from ..data.datasets import list_images
from ..arch import MAX_SIZE, DiscriminatorConfig, StyleGAN2Config, check_int
from ..loading import export_bank_run
from ..pipeline.images import center_square, read_rgb_uint8
from ..loading.training import BANK_RUN_KIND
from ..errors import GleanError
from ..models.discriminator import StyleGAN2Discriminator
from ..models.stylegan2 import StyleGAN2Generator
from ..precision import PRECISIONS
from .distributed import DistInfo, all_reduce_mean, default_num_workers
from .losses import logistic_d_loss, logistic_g_loss, path_length_penalty, r1_penalty
from .overrides import Values, flatten, resolve_run_config, with_overrides
from .runtime import RunResult, StateTable, autocast, grad_scaler, run_training, wrap_ddp

KIND = BANK_RUN_KIND  # recorded in checkpoints; the loader tells bank runs from GLEAN runs by it
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
    num_workers: int = dataclasses.field(default_factory=default_num_workers)

    def __post_init__(self) -> None:
        check_int("size", self.size, 8, MAX_SIZE, power_of_two=True)
        _ = self.discriminator  # building it validates both networks' architecture
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        group = min(self.batch_size, self.mbstd_group_size)
        if self.batch_size < 1 or self.batch_size % group:
            raise ValueError(f"batch_size {self.batch_size} must be <= {self.mbstd_group_size} or a multiple of it "
                             "(minibatch standard deviation groups)")
        for name in ("max_iters", "r1_every", "pl_every", "pl_batch_shrink", "log_every", "save_every",
                     "sample_every", "num_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("num_workers", "seed", "lr", "lr_mlp", "r1_gamma", "pl_weight", "pl_decay", "ema_kimg"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (0 <= self.mixing_prob <= 1 and 0 <= self.ema_beta < 1 and all(0 <= b < 1 for b in self.betas)):
            raise ValueError(f"mixing_prob must be in [0, 1], ema_beta and betas in [0, 1); got {self.mixing_prob}, "
                             f"{self.ema_beta}, {self.betas}")
        object.__setattr__(self, "channel_multiplier", self.generator.channel_multiplier)  # 2, not 2.0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["blur_kernel"], d["betas"] = list(self.blur_kernel), list(self.betas)
        return d

    @property
    def generator(self) -> StyleGAN2Config:
        """The bank's architecture (``size`` is its ``out_size``)."""
        return StyleGAN2Config.from_run_config(dataclasses.asdict(self))

    @property
    def discriminator(self) -> DiscriminatorConfig:
        return DiscriminatorConfig.matching(self.generator, self.mbstd_group_size)


def resolve_config(file_config: Mapping[str, Any], overrides: Mapping[str, str], saved: Mapping[str, Any] | None,
                   source: str = "") -> BankConfig:
    """The run's config: defaults (or the checkpoint's), then a config file's keys, then ``--set``
    overrides (:func:`~gleansr.train.overrides.resolve_run_config`; on resume only
    :data:`RESUMABLE_CHANGES` may differ from the checkpoint)."""
    if saved is None and "size" not in file_config and "size" not in overrides:
        raise GleanError("a new bank run needs its image size: --set size=256 (a power of two)")
    previous = with_overrides(BankConfig(size=8), saved, source, Values.TYPED) if saved is not None else None
    base = previous or BankConfig(size=8)  # a new run's size is replaced just below
    requested = with_overrides(base, flatten(file_config, BankConfig, "bank config"), "bank config", Values.TYPED)
    return resolve_run_config(requested, overrides, previous, source, resumable=RESUMABLE_CHANGES)


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
        pixels = read_rgb_uint8(self.root / self.files[index])
        if pixels.shape[:2] != (self.size, self.size):
            square = Image.fromarray(np.ascontiguousarray(center_square(pixels)))
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

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, k: int,
                noise: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.generator
        latents = g.mixed_latents(*g.mapping(torch.cat([z1, z2])).chunk(2), k)
        return g.synthesis(latents, noise or [None] * g.num_injected_noises), latents


def _latents(config: BankConfig, n: int, num_latents: int, device: torch.device) -> tuple:
    """(z1, z2, k): k drawn from [1, L) with probability ``mixing_prob``, else L."""
    z = torch.randn(2, n, config.style_channels, device=device)
    mix = config.mixing_prob > 0 and float(torch.rand(())) < config.mixing_prob
    k = int(torch.randint(1, num_latents, ())) if mix else num_latents
    return z[0], z[1], k


def _at_least_float32(logits: torch.Tensor) -> torch.Tensor:
    """Half-precision logits in float32 for the loss; float64 ones (tests) stay float64."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


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




class BankRecipe:
    """StyleGAN2 bank training for :func:`~gleansr.train.runtime.run_training`."""

    kind, loss_names = KIND, LOSS_NAMES

    def __init__(self, config: BankConfig, data: Path) -> None:
        self.config, self.data = config, data
        self.images_per_step = config.batch_size

    def prepare(self, info: DistInfo, fresh: bool) -> Dataset:
        return BankImages(self.data, self.config.size, flip=self.config.flip)

    def build(self, info: DistInfo, fresh: bool) -> None:
        config, dev = self.config, info.device
        self.info = info
        self.generator = StyleGAN2Generator.from_config(config.generator)
        self.discriminator = StyleGAN2Discriminator.from_config(config.discriminator)
        self.generator_ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        for net in (self.generator, self.discriminator, self.generator_ema):
            net.to(dev)
        self.opt_g = _lazy_adam(self.generator.parameters(), config, config.pl_every if config.pl_weight > 0 else None)
        self.opt_d = _lazy_adam(self.discriminator.parameters(), config,
                                config.r1_every if config.r1_gamma > 0 else None)
        self.scaler_g, self.scaler_d = grad_scaler(config.precision, dev), grad_scaler(config.precision, dev)
        self.mean_path_length = torch.zeros((), device=dev)
        self.last_reg = torch.zeros(2, device=dev)  # latest R1 and path-length penalties, for the log
        torch.manual_seed(config.seed + 1 + info.rank)  # different latents on every rank
        self.mixing = MixingGenerator(self.generator)
        self.g_train, self.d_train = wrap_ddp(self.mixing, info), wrap_ddp(self.discriminator, info)
        self.augment = diff_augment if config.augment else (lambda x: x)
        self.beta = ema_beta(config, info.world_size)

    STATE = StateTable(networks=(("generator", "generator"), ("generator_ema", "generator_ema"),
                                 ("discriminator", "discriminator")),
                       others=(("opt_g", "optimizer_g"), ("opt_d", "optimizer_d"), ("scaler_g", "scaler_g"),
                               ("scaler_d", "scaler_d")))

    def load_state(self, state: Mapping[str, Any], source: str) -> None:
        self.STATE.load(self, state, source)
        self.mean_path_length = state["mean_path_length"].to(self.info.device)

    def state(self) -> dict[str, Any]:
        return {**self.STATE.state(self), "mean_path_length": self.mean_path_length.detach().cpu()}

    def step(self, batch: torch.Tensor, iteration: int) -> torch.Tensor:
        real = batch.to(self.info.device, non_blocking=True)
        loss_d = self._discriminator_step(real, iteration)
        loss_g = self._generator_step(real.shape[0], iteration)
        update_ema(self.generator_ema, self.generator, self.beta)
        return torch.cat([torch.stack([loss_d.detach().float(), loss_g.detach().float()]), self.last_reg])

    def _discriminator_step(self, real: torch.Tensor, it: int) -> torch.Tensor:
        """D step (G frozen, no gradient to it), then lazy R1."""
        config, dev = self.config, self.info.device
        with torch.no_grad(), autocast(config.precision, dev):
            fake, _ = self.mixing(*_latents(config, real.shape[0], self.generator.num_latents, dev))
        loss_d = self.d_backward(real, fake)
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        if config.r1_gamma > 0 and it % config.r1_every == 0:
            self.last_reg[0] = self.r1_backward(real)
            self.opt_d.step()
        return loss_d

    def _generator_step(self, n: int, it: int) -> torch.Tensor:
        """G step, then lazy path length."""
        config, dev, num_latents = self.config, self.info.device, self.generator.num_latents
        loss_g = self.g_backward(*_latents(config, n, num_latents, dev))
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        if config.pl_weight > 0 and it % config.pl_every == 0:
            self.last_reg[1] = self.pl_backward(*_latents(config, max(1, n // config.pl_batch_shrink), num_latents, dev))
            self.opt_g.step()
        return loss_g

    # Each *_backward leaves its term's gradient, averaged over processes, in the network's .grad
    # and returns the term (detached). Random inputs are arguments, so a test can give every
    # process its share of one batch and compare with one process on the whole batch.

    def d_backward(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """The discriminator's logistic loss on ``real`` and generated ``fake`` images."""
        self.discriminator.requires_grad_(True)
        with autocast(self.config.precision, self.info.device):
            loss_d = logistic_d_loss(_at_least_float32(self.d_train(self.augment(real))),
                                     _at_least_float32(self.d_train(self.augment(fake))))
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler_d.scale(loss_d).backward()
        return loss_d.detach()

    def r1_backward(self, real: torch.Tensor) -> torch.Tensor:
        """Lazy R1 (float32 or wider: double back-propagation is fragile in half precision)."""
        config = self.config
        self.discriminator.requires_grad_(True)
        real_in = real.detach().requires_grad_(True)
        real_logits = self.d_train(self.augment(real_in))
        r1 = r1_penalty(real_logits, real_in)
        self.opt_d.zero_grad(set_to_none=True)
        (config.r1_gamma / 2 * r1 * config.r1_every + 0 * real_logits[0, 0]).backward()
        return r1.detach()

    def g_backward(self, z1: torch.Tensor, z2: torch.Tensor, k: int,
                   noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The non-saturating generator loss (D frozen and called unwrapped: no DDP sync for it)."""
        self.discriminator.requires_grad_(False)
        with autocast(self.config.precision, self.info.device):
            fake, _ = self.g_train(z1, z2, k, noise)
            loss_g = logistic_g_loss(_at_least_float32(self.discriminator(self.augment(fake))))
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler_g.scale(loss_g).backward()
        return loss_g.detach()

    def pl_backward(self, z1: torch.Tensor, z2: torch.Tensor, k: int, noise: list[torch.Tensor] | None = None,
                    projection: torch.Tensor | None = None) -> torch.Tensor:
        """Lazy path length; updates the running mean path length (the same on every process)."""
        config = self.config
        self.discriminator.requires_grad_(False)
        images, latents = self.g_train(z1, z2, k, noise)
        pl, self.mean_path_length, _ = path_length_penalty(images, latents, self.mean_path_length, config.pl_decay,
                                                           projection, lambda m: all_reduce_mean(m, self.info))
        self.opt_g.zero_grad(set_to_none=True)
        (config.pl_weight * config.pl_every * pl + 0 * images[0, 0, 0, 0]).backward()
        return pl.detach()

    def log_values(self, iteration: int) -> dict[str, float]:
        return {"path_length_mean": float(self.mean_path_length)}

    def periodic_due(self, iteration: int, final: bool) -> bool:
        return iteration % self.config.sample_every == 0 or final

    def periodic(self, iteration: int, out: Path) -> dict[str, float]:
        grid = sample_images(self.generator_ema, self.config.num_samples, seed=self.config.seed)
        save_grid(grid, out / "samples" / f"iter_{iteration:08d}.png", overwrite=True)
        return {}

    def export(self, out: Path, iteration: int) -> None:
        export_bank_run(out, iteration, self.generator, self.generator_ema, self.discriminator,
                        self.config.generator, self.config.discriminator)


def train_bank(data: str | Path, out: str | Path, overrides: Mapping[str, str], *,
               config_file: Mapping[str, Any] | None = None, device: str = "auto", resume: bool = False,
               progress: bool = True) -> RunResult:
    """Train (or continue, if ``out`` holds a checkpoint) a bank on the images under ``data``.

    ``config_file``: BankConfig fields from a JSON/TOML file; ``overrides``: ``--set`` pairs
    (``size`` is required for a new run). Run under ``torchrun`` for several GPUs.
    """
    def make(saved: Mapping[str, Any] | None, source: str) -> BankRecipe:
        return BankRecipe(resolve_config(config_file or {}, overrides, saved, source), Path(data))

    return run_training(KIND, make, out, device=device, resume=resume, progress=progress)
