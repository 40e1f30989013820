"""GLEAN training: MMEditing's recipe in one readable loop, resumable, single- or multi-process.

One iteration (as MMEditing's ``SRGAN.train_step``, which GLEAN uses):

1. generator step, discriminator frozen: ``sr = G(lr)``;
   ``loss = pixel_weight * MSE(sr, hr) + perceptual(sr, hr) + gan_weight * BCE(D(sr), real)``;
2. discriminator step: ``BCE(D(hr), real)`` and ``BCE(D(sr.detach()), fake)``, back-propagated
   one after the other (the minibatch-stddev layer never mixes real and fake images).

The learning rate of both Adam optimizers follows :func:`~gleansr.train.config.cosine_restart_lr`.
The latent bank is frozen, and so are the ``fusion_skip`` convs: they only feed the bank's RGB
branch, which never reaches GLEAN's output; upstream trains them with a zero gradient (so they
never change), and leaving them trainable would make DDP wait for gradients that never come.

Every iteration the five losses (and a stop request) are averaged over processes with one
all-reduce: a NaN/inf on any rank stops every rank, with :class:`TrainingDiverged`, before
anything is saved. SIGINT/SIGTERM finish the current iteration, save, and stop (DataLoader
workers ignore both, so a batch being loaded does not kill the run first).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ..atomic import atomic_write_bytes
from ..loading import init_glean_from_bank, load_state_dict_strict
from ..data.convert import tensor_to_uint8
from ..data.datasets import HRFolderDataset, PairedFolderDataset
from ..data.degradations import Degradation, DegradationParams
from ..errors import GleanError
from ..metrics import psnr, ssim
from ..models import GLEANStyleGANv2
from .config import RESUMABLE_CHANGES, TrainConfig, cosine_restart_lr, resume_conflict, with_overrides
from .distributed import (DistInfo, ResumableBatchSampler, SeededItems, all_gather_objects, all_reduce_mean, barrier,
                          init_distributed, shutdown_distributed)
from .log import RunLog, save_sample_strip
from .losses import PerceptualLoss, gan_loss, pixel_loss
from .runtime import StopRequest, autocast, check_finite, grad_scaler, seed_everything
from ..zoo import VGG16_WEIGHTS
from .state import (LAST, build_discriminator, capture_rng, checkpoint_config, load_latest, restore_rng,
                    save_training_checkpoint)

DAMAGED = "last.pt.damaged"
LOSS_NAMES = ("loss_pix", "loss_perceptual", "loss_gan", "loss_d_real", "loss_d_fake")


@dataclass(frozen=True)
class RunPaths:
    """The files a run reads and the folder it writes (``bank``/``vgg`` may be "pretrained"/None)."""

    data: Path
    out: Path
    lr_data: Path | None = None
    val_data: Path | None = None
    val_lr_data: Path | None = None
    bank: str | Path | None = None
    vgg: str | Path | None = None


@dataclass(frozen=True)
class TrainResult:
    """How a run ended: the last saved iteration and checkpoint, and the latest validation scores."""

    iteration: int
    checkpoint: Path | None
    stopped_by: int | None = None  # the signal that ended the run early
    val: dict[str, float] | None = None


def _resolve_file(given: str | Path | None, filename: str, url: str, info: DistInfo) -> Path:
    """A weights file given by the user, or for ``"pretrained"``/None the cached (or downloaded) one."""
    if given not in (None, "pretrained"):
        path = Path(given).expanduser()  # type: ignore[arg-type]
        if not path.is_file():
            raise GleanError(f"weights file {path} does not exist")
        return path
    from ..hub import resolve_weights, sha256_prefix_from_name

    if info.is_main:
        resolve_weights(filename, url, sha256_prefix_from_name(filename))
    barrier(info)  # rank 0 downloads, the others then find it in the cache
    return resolve_weights(filename, url, sha256_prefix_from_name(filename), download_ok=False)


def _load_bank(bank: Path, generator: GLEANStyleGANv2, discriminator: torch.nn.Module) -> None:
    """Any bank file the loader reads (MMGeneration, rosinality, NVIDIA, gleansr exports): generator -> bank, D -> D."""
    init_glean_from_bank(generator, bank, discriminator=discriminator)


def _datasets(config: TrainConfig, paths: RunPaths) -> tuple[Any, Any]:
    m = config.model
    if paths.lr_data is not None:
        train_set = PairedFolderDataset(paths.data, paths.lr_data, m.scale, hr_size=m.out_size, flip=config.flip)
    else:
        degradation = Degradation(DegradationParams(hr_size=m.out_size, lr_size=m.in_size)) if config.degrade else None
        train_set = HRFolderDataset(paths.data, m.scale, hr_size=m.out_size, flip=config.flip, degradation=degradation)
    val_set = None
    if paths.val_data is not None:
        if paths.val_lr_data is not None:
            val_set = PairedFolderDataset(paths.val_data, paths.val_lr_data, m.scale, hr_size=m.out_size, flip=False)
        else:  # clean MATLAB bicubic LR, as the released models are evaluated
            val_set = HRFolderDataset(paths.val_data, m.scale, hr_size=m.out_size, flip=False)
    return train_set, val_set


@torch.no_grad()
def validate(generator: GLEANStyleGANv2, val_set: Any, config: TrainConfig, device: torch.device,
             sample_dir: Path | None = None) -> dict[str, float]:
    """Mean PSNR/SSIM (RGB, uint8, as MMEditing) over ``val_set``; the first ``val_samples``
    images are saved as LR-bicubic | SR | HR strips under ``sample_dir``."""
    was_training = generator.training
    generator.eval()
    loader = DataLoader(val_set, batch_size=config.batch_size, num_workers=min(config.num_workers, 2))
    scores: list[tuple[float, float]] = []
    with torch.random.fork_rng(devices=[]):  # loading draws from the CPU RNG: keep training's state as it was
        for batch in loader:
            with autocast(config.precision, device):
                sr = generator(batch["lr"].to(device)).float()
            images = zip(tensor_to_uint8(batch["lr"]), tensor_to_uint8(sr), tensor_to_uint8(batch["hr"]), batch["name"])
            for lr, out, hr, name in images:
                scores.append((psnr(out, hr), ssim(out, hr)))
                if sample_dir is not None and len(scores) <= config.val_samples:
                    save_sample_strip(sample_dir / (name.replace("/", "__") + ".png"), lr, out, hr)
    generator.train(was_training)
    values = np.asarray(scores, dtype=np.float64)
    return {"val_psnr": float(values[:, 0].mean()), "val_ssim": float(values[:, 1].mean())}


def _resolve_config(config: TrainConfig | None, overrides: dict[str, str], saved: TrainConfig | None,
                    source: str) -> TrainConfig:
    """The run's config: the requested one, which on resume must match the checkpoint's."""
    if config is None and saved is None:
        raise GleanError("no config given and no checkpoint to resume from; pass a preset or a config file")
    requested = with_overrides(config if config is not None else saved, overrides)  # type: ignore[arg-type]
    if saved is not None:
        conflict = resume_conflict(saved, requested)
        if conflict:
            raise GleanError(f"cannot resume {source}: config field {conflict} differs; only "
                             f"{', '.join(sorted(RESUMABLE_CHANGES))} may change on resume (or use a new --out)")
    return requested


@dataclass
class _Nets:
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


def _build(config: TrainConfig, paths: RunPaths, info: DistInfo, fresh: bool) -> _Nets:
    """Networks from the config (the bank and D from ``paths.bank`` on a fresh run), optimizers, scalers."""
    dev = info.device
    seed_everything(config.seed)  # identical initial weights on every rank
    generator = GLEANStyleGANv2(**config.model.to_dict())
    generator.fusion_skip.requires_grad_(False)  # see the module docstring
    discriminator = build_discriminator(config)
    if fresh and paths.bank is not None:
        if paths.bank == "pretrained":
            _load_bank(_resolve_file(None, *_preset_bank(config), info), generator, discriminator)
        else:
            _load_bank(Path(paths.bank), generator, discriminator)
    elif fresh and info.is_main and config.model.latent_bank:  # (the no-bank ablation has none to give)
        print("gleansr: warning: no --bank given: the latent bank and the discriminator start random", file=sys.stderr)
    generator.to(dev).train()
    discriminator.to(dev).train()
    perceptual = None
    if config.perceptual_weight > 0:
        vgg = _resolve_file(paths.vgg, VGG16_WEIGHTS.filename, VGG16_WEIGHTS.url, info)
        perceptual = PerceptualLoss(vgg, layer=config.perceptual_layer, weight=config.perceptual_weight,
                                    vgg_input_range=config.perceptual_input_range).to(dev)  # type: ignore[arg-type]
    opt_g = torch.optim.Adam([p for p in generator.parameters() if p.requires_grad], lr=config.lr_g, betas=config.betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_d, betas=config.betas)
    ddp_kwargs: dict[str, Any] = {"broadcast_buffers": False}  # the buffers (noise, FIR kernels) are constants
    if dev.type == "cuda":
        ddp_kwargs["device_ids"] = [dev.index]
        torch.backends.cudnn.benchmark = True
    g_train = DistributedDataParallel(generator, **ddp_kwargs) if info.distributed else generator
    d_train = DistributedDataParallel(discriminator, **ddp_kwargs) if info.distributed else discriminator
    return _Nets(generator, discriminator, g_train, d_train, perceptual, opt_g, opt_d,
                 grad_scaler(config.precision, dev), grad_scaler(config.precision, dev))


def _restore(nets: _Nets, path: Path, state: dict[str, Any], info: DistInfo) -> int:
    """Load a training checkpoint into ``nets`` and this rank's RNGs; returns its iteration."""
    load_state_dict_strict(nets.generator, state["generator"], f"{path} (generator)")
    load_state_dict_strict(nets.discriminator, state["discriminator"], f"{path} (discriminator)")
    nets.opt_g.load_state_dict(state["optimizer_g"])
    nets.opt_d.load_state_dict(state["optimizer_d"])
    nets.scaler_g.load_state_dict(state["scaler_g"])
    nets.scaler_d.load_state_dict(state["scaler_d"])
    rngs = state["rng"]
    restore_rng(rngs[info.rank] if len(rngs) == info.world_size else rngs[0])
    if state["data"]["world_size"] != info.world_size and info.is_main:
        print(f"gleansr: warning: resuming with {info.world_size} processes instead of {state['data']['world_size']}: "
              "the data order differs from the uninterrupted run's", file=sys.stderr)
    return int(state["iteration"])


def _train_step(nets: _Nets, config: TrainConfig, lr_img: torch.Tensor, hr: torch.Tensor) -> list[torch.Tensor]:
    """One generator step then one discriminator step; returns the five detached losses.

    With ``gan_weight == 0`` the discriminator cannot influence the generator, so it is neither
    called nor trained (its three losses read 0); that saves about a third of a pixel-loss step.
    """
    dev = lr_img.device
    adversarial = config.gan_weight != 0
    # generator step; D is frozen and called unwrapped (its DDP wrapper must not expect gradients)
    nets.discriminator.requires_grad_(False)
    with autocast(config.precision, dev):
        sr = nets.g_train(lr_img)
        loss_pix = pixel_loss(sr, hr, config.pixel_weight)
        zero = loss_pix.new_zeros(())
        loss_perceptual = nets.perceptual(sr, hr) if nets.perceptual is not None else zero
        loss_gan = (gan_loss(nets.discriminator(sr), True, for_discriminator=False, generator_weight=config.gan_weight)
                    if adversarial else zero)
    nets.opt_g.zero_grad(set_to_none=True)
    nets.scaler_g.scale(loss_pix + loss_perceptual + loss_gan).backward()
    nets.scaler_g.step(nets.opt_g)
    nets.scaler_g.update()
    if not adversarial:
        return [loss.detach().float() for loss in (loss_pix, loss_perceptual, zero, zero, zero)]

    # discriminator step: real, then fake (separate passes, as upstream); one gradient all-reduce
    nets.discriminator.requires_grad_(True)
    nets.opt_d.zero_grad(set_to_none=True)
    d_train = nets.d_train
    with d_train.no_sync() if isinstance(d_train, DistributedDataParallel) else contextlib.nullcontext():
        with autocast(config.precision, dev):
            loss_d_real = gan_loss(d_train(hr), True, for_discriminator=True)
        nets.scaler_d.scale(loss_d_real).backward()
    with autocast(config.precision, dev):
        loss_d_fake = gan_loss(d_train(sr.detach()), False, for_discriminator=True)
    nets.scaler_d.scale(loss_d_fake).backward()
    nets.scaler_d.step(nets.opt_d)
    nets.scaler_d.update()
    return [loss.detach().float() for loss in (loss_pix, loss_perceptual, loss_gan, loss_d_real, loss_d_fake)]


def _checkpoint_state(nets: _Nets, config: TrainConfig, iteration: int, sampler: ResumableBatchSampler,
                      rngs: list[Any], world_size: int) -> dict[str, Any]:
    epoch, batch = sampler.position(iteration)
    return {
        "iteration": iteration, "config": config.to_dict(),
        "generator": nets.generator.state_dict(), "discriminator": nets.discriminator.state_dict(),
        "optimizer_g": nets.opt_g.state_dict(), "optimizer_d": nets.opt_d.state_dict(),
        "scheduler": {"policy": "CosineRestart", "periods": list(config.periods),
                      "restart_weights": list(config.restart_weights), "min_lr": config.lr_min,
                      "base_lrs": [config.lr_g, config.lr_d], "last_iter": iteration},
        "scaler_g": nets.scaler_g.state_dict(), "scaler_d": nets.scaler_d.state_dict(), "rng": rngs,
        "data": {"epoch": epoch, "batch": batch, "world_size": world_size, "batch_size": config.batch_size},
    }


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGINT/SIGTERM to the main process, which saves before stopping."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def train(config: TrainConfig | None, paths: RunPaths, *, overrides: dict[str, str] | None = None,
          resume: bool = False, device: str = "auto", progress: bool = True) -> TrainResult:
    """Train (or continue training) a GLEAN model into ``paths.out``.

    A run folder holding a checkpoint is always continued (``resume=True`` makes a missing
    checkpoint an error); ``config`` may then be None. ``overrides`` are ``--set`` style
    ``{"key": "value"}`` pairs applied on top of the config. Run under ``torchrun`` for DDP.
    """
    info = init_distributed(device)
    try:
        return _train(config, paths, overrides or {}, resume, info, progress)
    finally:
        shutdown_distributed()


def _train(config: TrainConfig | None, paths: RunPaths, overrides: dict[str, str], resume: bool, info: DistInfo,
           progress: bool) -> TrainResult:
    out, dev = Path(paths.out), info.device
    found = load_latest(out)
    if resume and found is None:
        raise GleanError(f"--resume: no checkpoint (last.pt / previous.pt) in {out}")
    if found and found[0].name != LAST and (out / LAST).exists() and info.is_main:
        # Set the damaged file aside, or the next save would rotate it over the good one.
        os.replace(out / LAST, out / DAMAGED)
        print(f"gleansr: warning: moved the unreadable {LAST} to {DAMAGED}", file=sys.stderr)
    saved = checkpoint_config(found[1], str(found[0])) if found else None
    config = _resolve_config(config, overrides, saved, str(found[0]) if found else "")
    train_set, val_set = _datasets(config, paths)
    nets = _build(config, paths, info, fresh=found is None)
    start = _restore(nets, *found, info) if found else 0
    del found  # free the checkpoint's tensors
    sampler = ResumableBatchSampler(len(train_set), config.batch_size, info, config.seed, start_iter=start)
    loader = DataLoader(SeededItems(train_set, config.seed), batch_sampler=sampler, num_workers=config.num_workers,
                        pin_memory=dev.type == "cuda", persistent_workers=config.num_workers > 0,
                        worker_init_fn=_ignore_stop_signals)
    if info.is_main:
        text = json.dumps(config.to_dict(), indent=2) + "\n"
        atomic_write_bytes(out / "config.json", text.encode("utf-8"), overwrite=True)

    log = RunLog(out, start, config.max_iters, enabled=info.is_main, progress=progress)
    last_saved: int | None = start or None
    val_scores, stopped_by = None, None
    sums, counted = np.zeros(len(LOSS_NAMES)), 0
    interval_start = run_start = time.perf_counter()
    batches: Iterator[dict] = iter(loader)
    try:
        with StopRequest() as stop:
            for it in range(start, config.max_iters):
                lr_g, lr_d = cosine_restart_lr(it, config.lr_g, config), cosine_restart_lr(it, config.lr_d, config)
                for opt, lr in ((nets.opt_g, lr_g), (nets.opt_d, lr_d)):
                    for group in opt.param_groups:
                        group["lr"] = lr
                batch = next(batches)
                losses = _train_step(nets, config, batch["lr"].to(dev, non_blocking=True),
                                     batch["hr"].to(dev, non_blocking=True))
                flag = torch.tensor(float(stop.signum is not None), device=dev)
                reduced = all_reduce_mean(torch.stack([*losses, flag]), info).tolist()  # the one sync per iteration
                iteration = it + 1
                check_finite(LOSS_NAMES, reduced, iteration, out / LAST, last_saved)
                sums += reduced[:len(LOSS_NAMES)]
                counted += 1
                final = iteration == config.max_iters
                if iteration % config.log_every == 0 or final:
                    now = time.perf_counter()
                    log.add({**dict(zip(LOSS_NAMES, (sums / counted).tolist())), "lr_g": lr_g, "lr_d": lr_d,
                             "time": (now - interval_start) / counted, "elapsed": now - run_start})
                    sums[:], counted, interval_start = 0, 0, now
                if val_set is not None and (iteration % config.val_every == 0 or final):
                    if info.is_main:
                        samples = out / "samples" / f"iter_{iteration:08d}"
                        val_scores = validate(nets.generator, val_set, config, dev, samples)
                        log.add(val_scores)
                    barrier(info)
                log.step(iteration)

                stop_now = reduced[-1] > 0
                if iteration % config.save_every == 0 or final or stop_now:
                    rngs = all_gather_objects(capture_rng(), info)
                    if info.is_main:
                        save_training_checkpoint(out, _checkpoint_state(nets, config, iteration, sampler, rngs,
                                                                        info.world_size))
                    barrier(info)
                    last_saved = iteration
                if stop_now:
                    stopped_by = stop.signum or signal.SIGTERM  # or another rank was signalled
                    log.message(f"gleansr: stopped at iteration {iteration}; the same command resumes the run")
                    break
    finally:
        log.close()
    return TrainResult(iteration=last_saved or 0, checkpoint=out / LAST if last_saved else None,
                       stopped_by=stopped_by, val=val_scores)


def _preset_bank(config: TrainConfig) -> tuple[str, str]:
    """(file name, URL) of the zoo recipe's StyleGAN2 bank, for ``--bank pretrained``."""
    from ..zoo import get_entry

    recipe = get_entry(config.preset).recipe if config.preset else None
    if recipe is None or recipe.bank is None:
        raise GleanError("--bank pretrained needs a zoo model whose recipe has a downloadable bank; "
                         "give the StyleGAN2 bank file's path")
    return recipe.bank.filename, recipe.bank.url
