"""What a GLEAN run starts from: its data sets, its weight files, its initial weights, and the
notes it gives at start when it departs from the preset's upstream recipe.

Starting weights, as upstream: a preset's bank is its pretrained StyleGAN2 (``generator_ema`` ->
the bank, ``discriminator`` -> D, strict), fetched and verified like released weights; a random
bank or discriminator only when asked by name (``bank="random"``, ``discriminator="random"``);
a config of your own names its bank file (or ``random``). ``init`` (a zoo name or any GLEAN
file) starts the whole generator, its bank included (MMagic's ``load_from``); a bank named
beside it then replaces that bank. A GLEAN file given as the bank lends its bank; D starts random.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.datasets import HRFolderDataset, PairedFolderDataset
from ..data.degradations import Degradation, DegradationParams
from ..errors import GleanError, require_file
from ..models import GLEANStyleGANv2
from ..loading import init_glean_from_bank, inspect, load_glean, load_state_dict_strict
from ..loading.bank import BANK_FILE
from ..zoo import VGG16_WEIGHTS, ZOO, WeightsSource, get_entry, weights_file
from .config import RANDOM, BankChoice, TrainConfig
from .distributed import DistInfo, barrier

logger = logging.getLogger("gleansr.train")
# What --bank reads besides 'random', 'pretrained' and 'init' (any format `gleansr convert` reads).
BANK_FILES = ("a StyleGAN2 file (MMGeneration .pth, rosinality .pt, NVIDIA .pkl, a converted .safetensors), "
              f"a bank run folder (holding {BANK_FILE})")


@dataclass(frozen=True)
class RunPaths:
    """The folders a run reads and the one it writes (``vgg``: a file, or None for the cached one)."""

    data: Path
    out: Path
    lr_data: Path | None = None
    val_data: Path | None = None
    val_lr_data: Path | None = None
    vgg: str | Path | None = None


def datasets(config: TrainConfig, paths: RunPaths) -> tuple[Any, Any]:
    """(training set, validation set or None); LR pre-made, or made on the fly (bicubic / degraded)."""
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


def _fetch(source: WeightsSource, info: DistInfo) -> Path:
    """Rank 0 downloads (and verifies) ``source``; the others then find it in the cache."""
    if info.is_main:
        weights_file(source, download=True)
    barrier(info)
    return weights_file(source, download=False)


def vgg_file(given: str | Path | None, info: DistInfo) -> Path:
    """The VGG16 weights for the perceptual loss: the user's file, or the cached/downloaded one;
    when neither can be had, the error names both ways out (place the file, or no perceptual loss)."""
    without = "or train without the perceptual loss: --set perceptual_weight=0"
    if given is None:
        try:
            return _fetch(VGG16_WEIGHTS, info)
        except GleanError as exc:
            raise GleanError(f"the perceptual loss needs VGG16: {exc}; {without}") from None
    return require_file(Path(given).expanduser(), "--vgg weights file",
                        f"--vgg takes torchvision's {VGG16_WEIGHTS.filename}, {without}")


def bank_file(config: TrainConfig, info: DistInfo) -> Path | None:
    """The StyleGAN2 file a fresh run starts its bank and D from; None for random weights."""
    source = config.bank_source
    unset = source.choice is BankChoice.UNSET
    if source.choice in (BankChoice.RANDOM, BankChoice.INIT) or (
            unset and (config.init or not config.model.latent_bank)):
        return None  # asked for; or the generator comes from --init; or the no-bank ablation
    if unset:
        raise GleanError("a config of your own must say which bank it uses: --bank FILE (a StyleGAN2 file: "
                         "generator_ema -> bank, discriminator -> D) or --bank random")
    if source.choice is BankChoice.PRETRAINED:
        recipe = get_entry(config.preset).recipe
        if recipe is None or recipe.bank is None:
            raise GleanError(f"{config.preset} has no pretrained bank; pass --bank FILE or --bank random")
        try:
            return _fetch(recipe.bank, info)
        except GleanError as exc:
            raise GleanError(f"the pretrained StyleGAN2 of {config.preset} (the file its latent bank and "
                             f"discriminator start from) is missing: {exc}; instead, --bank takes {BANK_FILES} or "
                             "'random' (random bank and discriminator: not GLEAN's recipe)") from None
    path = source.path
    assert path is not None
    if path.is_dir() and (path / BANK_FILE).is_file():  # a bank run folder: its exported bank
        return path
    return require_file(path, "--bank", f"--bank takes {BANK_FILES}, 'random' or 'pretrained'")


def init_file(config: TrainConfig, info: DistInfo) -> Path | None:
    """The GLEAN file the generator starts from: a zoo model's weights (fetched and verified like
    any released weights) or the path given; None without ``init``."""
    if not config.init:
        return None
    if config.init in ZOO:
        return _fetch(ZOO[config.init].weights, info)
    path = Path(config.init).expanduser()
    if not path.exists():
        raise GleanError(f"--init {config.init}: no such file or folder, and not a zoo model ({', '.join(ZOO)})")
    return path


def _load_bank(generator: GLEANStyleGANv2, bank: Path) -> tuple[dict[str, torch.Tensor] | None, bool]:
    """The bank from a StyleGAN2 file, or a GLEAN file's own bank; returns (the file's discriminator
    state or None, whether it was a GLEAN file, which holds no discriminator by design)."""
    found = inspect(bank) if bank.is_file() else None  # a folder: a bank run's
    if found is None or not found.is_glean:
        return init_glean_from_bank(generator, bank), False
    prefix = "generator."
    state = {key[len(prefix):]: value for key, value in found.weights.items() if key.startswith(prefix)}
    load_state_dict_strict(generator.generator, state, f"{bank} (the bank of this GLEAN file)")
    return None, True


def initialise(generator: GLEANStyleGANv2, discriminator: torch.nn.Module, config: TrainConfig,
               bank: Path | None, init: Path | None, allow_nonfinite: bool = False) -> None:
    """Fresh run: the generator from ``init``, then the bank (and D) from ``bank``; a random bank
    asked for by name stays random (the init file's bank is not used then). NaN/inf weights are
    refused unless ``allow_nonfinite``."""
    random_bank = {k: v.clone() for k, v in generator.generator.state_dict().items()} if (
        init is not None and config.bank_source.choice is BankChoice.RANDOM) else None
    if init is not None:
        start = load_glean(init, allow_nonfinite)
        if start.config != config.model:
            raise GleanError(f"--init {config.init}: its generator is {start.config.in_size} -> "
                             f"{start.config.out_size} {start.config.to_dict()}, this run's model is "
                             f"{config.model.to_dict()}")
        load_state_dict_strict(generator, start.state_dict(), f"{config.init} (--init)")
    if random_bank is not None:
        generator.generator.load_state_dict(random_bank)
    if bank is None:
        return
    d_state, from_glean = _load_bank(generator, bank)
    if config.discriminator == RANDOM or from_glean:
        return
    if d_state is None:
        raise GleanError(f"{bank} holds no discriminator; add --set discriminator=random to start D "
                         "from random weights")
    load_state_dict_strict(discriminator, d_state, f"{bank} (discriminator)")


def start_notes(config: TrainConfig, bank: Path | None, fresh: bool) -> list[str]:
    """Where the weights start from (fresh runs), in words."""
    if not fresh:
        return []
    if bank is not None:
        pretrained = config.bank_source.choice is BankChoice.PRETRAINED
        what = f"pretrained StyleGAN2 of {config.preset}" if pretrained else "the file"
        d = ("random (asked by discriminator=random)" if config.discriminator == RANDOM
             else "from the same file (random if it is a GLEAN file, which holds none)")
        notes = [f"bank: {what} {bank}; discriminator: {d}"]
    elif config.bank_source.choice is BankChoice.RANDOM:
        notes = ["bank: random (asked by --bank random): the latent bank and the discriminator start random; "
                 "this is not GLEAN's recipe"]
    elif not config.model.latent_bank:
        notes = ["no latent bank (model.latent_bank=false); the discriminator starts random"]
    else:
        notes = [f"bank: the one inside {config.init} (--init); discriminator: random (a GLEAN file holds none)"]
    if config.init:
        notes.append(f"generator: from {config.init} (--init)")
    return notes


def batch_note(config: TrainConfig, world_size: int) -> str | None:
    """The one line that says how this run's total batch differs from the preset's upstream one."""
    if not config.preset:
        return None
    upstream = get_entry(config.preset).recipe
    if upstream is None:
        return None
    total = config.batch_size * config.accumulate * world_size
    if total == upstream.total_batch:
        return None
    mine = f"{world_size} process{'es' if world_size > 1 else ''} x {config.batch_size}" + (
        f" x {config.accumulate} accumulated" if config.accumulate > 1 else "")
    text = (f"{config.preset} was trained upstream with a total batch of {upstream.total_batch} "
            f"({upstream.processes} processes x {upstream.batch_size}); this run's is {total} ({mine}); the "
            "learning rate is not rescaled")
    if upstream.total_batch % world_size:
        return text
    per_process = upstream.total_batch // world_size
    if per_process % config.batch_size == 0:
        hint = f"--set accumulate={per_process // config.batch_size}"
    elif per_process % upstream.batch_size == 0:
        hint = f"--set batch_size={upstream.batch_size} accumulate={per_process // upstream.batch_size}"
    else:
        hint = f"--set batch_size={per_process} accumulate=1"
    return f"{text}; to match it: {hint}"
