"""GLEAN training: MMEditing's recipe, run by :mod:`gleansr.train.runtime`.

One iteration (as MMEditing's ``SRGAN.train_step``, which GLEAN uses):

1. generator step, discriminator frozen: ``sr = G(lr)``;
   ``loss = pixel_weight * MSE(sr, hr) + perceptual(sr, hr) + gan_weight * BCE(D(sr), real)``;
2. discriminator step: ``BCE(D(hr), real)`` and ``BCE(D(sr.detach()), fake)``, back-propagated
   one after the other (the minibatch-stddev layer never mixes real and fake images).

The learning rate of both Adam optimizers follows :func:`~gleansr.train.config.scheduled_lr`
(cosine restarts after an optional linear warm-up).
The latent bank is frozen, and so are the ``fusion_skip`` convs: they only feed the bank's RGB
branch, which never reaches GLEAN's output; upstream trains them with a zero gradient (so they
never change), and leaving them trainable would make DDP wait for gradients that never come.

Gradient accumulation (``accumulate = N``): each iteration reads ``N * batch_size`` images per
process, back-propagates N micro-batches of ``batch_size`` with each loss divided by N, and steps
once, so the pixel, perceptual and GAN-label losses give the gradient of one batch of
``N * batch_size`` (equal up to float rounding). Not equal: the discriminator's
minibatch-standard-deviation groups (``mbstd_group_size`` images) are formed within each
micro-batch, as they are within each process under DDP.
"""
from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, Mapping

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from ..evaluate import ImageResult, evaluate_dataset, module_sr_fn
from ..models import GLEANStyleGANv2, StyleGAN2Discriminator
from . import glean_start
from .config import RESUMABLE_CHANGES, START_ONLY, TrainConfig, config_from_dict, scheduled_lr, with_init
from .distributed import DistInfo
from .glean_start import RunPaths
from .log import logger, save_sample_strip
from .losses import PerceptualLoss, gan_loss, pixel_loss
from .overrides import resolve_run_config
from .runtime import RunResult, StateTable, autocast, grad_scaler, run_training, wrap_ddp

KIND = "glean"
LOSS_NAMES = ("loss_pix", "loss_perceptual", "loss_gan", "loss_d_real", "loss_d_fake")
__all__ = ["RunPaths", "train", "validate", "LOSS_NAMES"]


def validate(generator: GLEANStyleGANv2, val_set: Any, config: TrainConfig, device: torch.device,
             sample_dir: Path | None = None) -> dict[str, float]:
    """Mean PSNR/SSIM (RGB, uint8, as MMEditing) over ``val_set``, by the evaluation loop that
    ``gleansr eval`` runs; the first ``val_samples`` images are saved as LR-bicubic | SR | HR strips
    under ``sample_dir``. Items are read in this process (no workers to hang on a bad file)."""
    def save_strip(result: ImageResult) -> None:
        if sample_dir is not None and result.index < config.val_samples:
            save_sample_strip(sample_dir / (result.name.replace("/", "__") + ".png"), result.lr, result.sr, result.hr)

    sr_fn = module_sr_fn(generator, device, autocast=lambda: autocast(config.precision, device))
    report = evaluate_dataset(sr_fn, val_set, batch_size=config.batch_size, each=save_strip)
    return {"val_psnr": report.mean["sr_psnr"], "val_ssim": report.mean["sr_ssim"]}


@dataclasses.dataclass
class Nets:
    """The networks, their optimizers and scalers, and the modules that run them (DDP or plain)."""

    generator: GLEANStyleGANv2
    discriminator: torch.nn.Module
    g_train: torch.nn.Module
    d_train: torch.nn.Module
    perceptual: PerceptualLoss | None
    opt_g: torch.optim.Adam
    opt_d: torch.optim.Adam
    scaler_g: Any
    scaler_d: Any


def _sync_last(module: torch.nn.Module, last: bool) -> Any:
    """DDP's gradient all-reduce only on the last micro-batch."""
    if last or not isinstance(module, DistributedDataParallel):
        return contextlib.nullcontext()
    return module.no_sync()


def _train_step(nets: Nets, config: TrainConfig, lr_img: torch.Tensor, hr: torch.Tensor) -> list[torch.Tensor]:
    """One generator step then one discriminator step over ``accumulate`` micro-batches; returns
    the five detached losses (means over the micro-batches).

    With ``gan_weight == 0`` the discriminator cannot influence the generator, so it is neither
    called nor trained (its three losses read 0); that saves about a third of a pixel-loss step.
    """
    n = config.accumulate
    pairs = list(zip(lr_img.chunk(n), hr.chunk(n)))
    adversarial, dev = config.gan_weight != 0, lr_img.device
    scale = (lambda loss: loss / n) if n > 1 else (lambda loss: loss)
    totals = torch.zeros(5, device=dev)
    fakes = []
    # generator step; D is frozen and called unwrapped (its DDP wrapper must not expect gradients)
    nets.discriminator.requires_grad_(False)
    nets.opt_g.zero_grad(set_to_none=True)
    for i, (lr_part, hr_part) in enumerate(pairs):
        with _sync_last(nets.g_train, i == n - 1):
            with autocast(config.precision, dev):
                sr = nets.g_train(lr_part)
                loss_pix = pixel_loss(sr, hr_part, config.pixel_weight)
                zero = loss_pix.new_zeros(())
                loss_perceptual = nets.perceptual(sr, hr_part) if nets.perceptual is not None else zero
                loss_gan = (gan_loss(nets.discriminator(sr), True, for_discriminator=False,
                                     generator_weight=config.gan_weight) if adversarial else zero)
            nets.scaler_g.scale(scale(loss_pix + loss_perceptual + loss_gan)).backward()
        totals[:3] += torch.stack([loss_pix, loss_perceptual, loss_gan]).detach().float() / n
        fakes.append(sr.detach())
    nets.scaler_g.step(nets.opt_g)
    nets.scaler_g.update()
    if adversarial:
        totals[3:] = _discriminator_step(nets, config, [h for _, h in pairs], fakes, scale)
    return list(totals)


def _discriminator_step(nets: Nets, config: TrainConfig, reals: list[torch.Tensor], fakes: list[torch.Tensor],
                        scale: Any) -> torch.Tensor:
    """Real, then fake, per micro-batch (separate passes, as upstream); one gradient all-reduce."""
    n, d_train, dev = len(reals), nets.d_train, reals[0].device
    losses = torch.zeros(2, device=dev)
    nets.discriminator.requires_grad_(True)
    nets.opt_d.zero_grad(set_to_none=True)
    for i, (hr, sr) in enumerate(zip(reals, fakes)):
        with _sync_last(d_train, False):
            with autocast(config.precision, dev):
                loss_d_real = gan_loss(d_train(hr), True, for_discriminator=True)
            nets.scaler_d.scale(scale(loss_d_real)).backward()
        with _sync_last(d_train, i == n - 1):
            with autocast(config.precision, dev):
                loss_d_fake = gan_loss(d_train(sr), False, for_discriminator=True)
            nets.scaler_d.scale(scale(loss_d_fake)).backward()
        losses += torch.stack([loss_d_real, loss_d_fake]).detach().float() / n
    nets.scaler_d.step(nets.opt_d)
    nets.scaler_d.update()
    return losses


def build_nets(config: TrainConfig, info: DistInfo, bank: Path | None, vgg: Path | None, fresh: bool,
               init: Path | None = None, allow_nonfinite: bool = False) -> Nets:
    """Networks (initial weights on a fresh run), optimizers, scalers, DDP wrappers."""
    dev = info.device
    generator = GLEANStyleGANv2.from_config(config.model)
    generator.fusion_skip.requires_grad_(False)  # see the module docstring
    discriminator = StyleGAN2Discriminator.from_config(config.discriminator_config)
    if fresh:
        glean_start.initialise(generator, discriminator, config, bank, init, allow_nonfinite)
    generator.to(dev).train()
    discriminator.to(dev).train()
    perceptual = None
    if vgg is not None:
        perceptual = PerceptualLoss(vgg, layer=config.perceptual_layer, weight=config.perceptual_weight,
                                    vgg_input_range=config.perceptual_input_range).to(dev)  # type: ignore[arg-type]
    opt_g = torch.optim.Adam([p for p in generator.parameters() if p.requires_grad], lr=config.lr_g, betas=config.betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_d, betas=config.betas)
    return Nets(generator, discriminator, wrap_ddp(generator, info), wrap_ddp(discriminator, info), perceptual,
                opt_g, opt_d, grad_scaler(config.precision, dev), grad_scaler(config.precision, dev))


STATE = StateTable(networks=(("generator", "generator"), ("discriminator", "discriminator")),
                   others=(("opt_g", "optimizer_g"), ("opt_d", "optimizer_d"), ("scaler_g", "scaler_g"),
                           ("scaler_d", "scaler_d")))


class GleanRecipe:
    """GLEAN for :func:`~gleansr.train.runtime.run_training`."""

    kind, loss_names = KIND, LOSS_NAMES

    def __init__(self, config: TrainConfig, paths: RunPaths, notes: list[str], allow_nonfinite: bool = False) -> None:
        self.config, self.paths, self.notes, self.allow_nonfinite = config, paths, notes, allow_nonfinite
        self.images_per_step = config.batch_size * config.accumulate
        self.val_set: Dataset | None = None
        self.files: tuple[Path | None, Path | None, Path | None] = (None, None, None)
        self.nets: Nets | None = None

    def prepare(self, info: DistInfo, fresh: bool) -> Dataset:
        config = self.config
        train_set, self.val_set = glean_start.datasets(config, self.paths)
        batch = glean_start.batch_note(config, info.world_size)
        if info.is_main:
            for note in self.notes + ([batch] if batch else []):
                logger.warning(note)
        bank = glean_start.bank_file(config, info) if fresh else None
        vgg = glean_start.vgg_file(self.paths.vgg, info) if config.perceptual_weight > 0 else None
        self.files = (bank, vgg, glean_start.init_file(config, info) if fresh else None)
        if info.is_main:
            for note in glean_start.start_notes(config, bank, fresh):
                logger.info(note)
        return train_set

    def build(self, info: DistInfo, fresh: bool) -> None:
        self.info = info
        bank, vgg, init = self.files
        self.nets = build_nets(self.config, info, bank, vgg, fresh, init, self.allow_nonfinite)

    def load_state(self, state: Mapping[str, Any], source: str) -> None:
        STATE.load(self.nets, state, source)

    def state(self) -> dict[str, Any]:
        c = self.config
        scheduler = {"policy": "CosineRestart", "periods": list(c.periods), "restart_weights": list(c.restart_weights),
                     "min_lr": c.lr_min, "base_lrs": [c.lr_g, c.lr_d]}
        return {**STATE.state(self.nets), "scheduler": scheduler}

    def step(self, batch: Any, iteration: int) -> torch.Tensor:
        nets, dev = self.nets, self.info.device
        for opt, base in ((nets.opt_g, self.config.lr_g), (nets.opt_d, self.config.lr_d)):
            for group in opt.param_groups:
                group["lr"] = scheduled_lr(iteration, base, self.config)
        losses = _train_step(nets, self.config, batch["lr"].to(dev, non_blocking=True),
                             batch["hr"].to(dev, non_blocking=True))
        return torch.stack(losses)

    def log_values(self, iteration: int) -> dict[str, float]:
        return {"lr_g": scheduled_lr(iteration, self.config.lr_g, self.config),
                "lr_d": scheduled_lr(iteration, self.config.lr_d, self.config)}

    def periodic_due(self, iteration: int, final: bool) -> bool:
        return self.val_set is not None and (iteration % self.config.val_every == 0 or final)

    def periodic(self, iteration: int, out: Path) -> dict[str, float]:
        return validate(self.nets.generator, self.val_set, self.config, self.info.device,
                        out / "samples" / f"iter_{iteration:08d}")

    def export(self, out: Path, iteration: int) -> None:
        """Nothing beside the checkpoint: ``gleansr export`` writes release files from it."""


def resolve_config(config: TrainConfig | None, paths: RunPaths, overrides: Mapping[str, str],
                   saved: Mapping[str, Any] | None, source: str) -> tuple[TrainConfig, list[str]]:
    """The run's config (:func:`~gleansr.train.overrides.resolve_run_config`; the starting weights
    of a resumed run are the checkpoint's) and the warnings it needs."""
    notes: list[str] = []

    def adjust(requested: TrainConfig) -> TrainConfig:
        requested, init_notes = with_init(requested, overrides)
        notes.extend(init_notes)
        if paths.lr_data is None or not requested.degrade:
            return requested
        notes.append(f"--lr-data turns off the on-the-fly degradations that define "
                     f"{requested.preset or 'this config'} (recorded as degrade=false in config.json)")
        return dataclasses.replace(requested, degrade=False)

    previous = config_from_dict(saved, source) if saved is not None else None
    resolved = resolve_run_config(config, overrides, previous, source, resumable=RESUMABLE_CHANGES,
                                  start_only=START_ONLY, adjust=adjust)
    return resolved, notes


def train(config: TrainConfig | None, paths: RunPaths, *, overrides: Mapping[str, str] | None = None,
          resume: bool = False, device: str = "auto", progress: bool = True,
          allow_nonfinite: bool = False) -> RunResult:
    """Train (or continue training) a GLEAN model into ``paths.out``.

    A run folder holding a checkpoint is always continued (``resume=True`` makes a missing
    checkpoint an error); ``config`` may then be None. ``overrides`` are ``--set`` style
    ``{"key": "value"}`` pairs applied on top of the config. Run under ``torchrun`` for DDP.
    """
    def make(saved: Mapping[str, Any] | None, source: str) -> GleanRecipe:
        resolved, notes = resolve_config(config, paths, overrides or {}, saved, source)
        return GleanRecipe(resolved, paths, notes, allow_nonfinite)

    return run_training(KIND, make, paths.out, device=device, resume=resume, progress=progress)
