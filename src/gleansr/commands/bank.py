"""``gleansr bank``: train a StyleGAN2 latent bank on your images, or sample one.

``gleansr bank train --data FOLDER --size 256 --out RUN_DIR [...]`` trains (or resumes: a run
folder holding a checkpoint is continued, with the options given again only where they may
change); under ``torchrun`` on several GPUs. ``gleansr bank sample BANK -o grid.png`` draws a
seeded grid from any bank file (MMGeneration weights, ``RUN_DIR/bank.pth``, converted
safetensors, rosinality ``.pt``, NVIDIA ``.pkl``; a run folder means its ``bank.pth``).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from ..loading import FORMATS
from ..errors import GleanError

NAME = "bank"
HELP = "Train a StyleGAN2 latent bank on your own images, or sample one."

# (option, BankConfig field, type, help); every option defaults to None = "not given"
_TRAIN_OPTIONS: tuple[tuple[str, str, Any, str], ...] = (
    ("--size", "size", int, "image size (power of two); required for a new run"),
    ("--channel-max", "channel_max", int, "cap on feature widths (default 512 = config-f)"),
    ("--channel-multiplier", "channel_multiplier", float, "widths above 32 px (default 2 = config-f)"),
    ("--style-channels", "style_channels", int, "width of z and w (default 512)"),
    ("--num-mlps", "num_mlps", int, "mapping-network depth (default 8)"),
    ("--batch", "batch_size", int, "images per process and step (default 8; config-f used 32 in total)"),
    ("--iters", "max_iters", int, "iterations to train in total (default 800000)"),
    ("--lr", "lr", float, "Adam learning rate of both networks (default 0.002)"),
    ("--precision", "precision", str, "fp32 (default), bf16 or fp16 for the main steps"),
    ("--r1", "r1_gamma", float, "R1 gamma (default 10; 0 disables)"),
    ("--r1-every", "r1_every", int, "lazy R1 interval (default 16)"),
    ("--pl-weight", "pl_weight", float, "path-length weight (default 2; 0 disables)"),
    ("--pl-every", "pl_every", int, "lazy path-length interval (default 4)"),
    ("--ema-kimg", "ema_kimg", float, "EMA half-life in thousands of images (default 10)"),
    ("--ema-beta", "ema_beta", float, "EMA decay per step, overriding --ema-kimg"),
    ("--mixing-prob", "mixing_prob", float, "style-mixing probability (default 0.9)"),
    ("--save-every", "save_every", int, "checkpoint and bank export interval (default 5000)"),
    ("--sample-every", "sample_every", int, "sample-grid interval (default 1000)"),
    ("--log-every", "log_every", int, "metrics interval (default 100)"),
    ("--samples", "num_samples", int, "images per sample grid (default 16)"),
    ("--seed", "seed", int, "seed of weights, data order and sample grids (default 0)"),
    ("--workers", "num_workers", int, "data-loading processes (default 4)"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bank_command", metavar="{train,sample}")
    sub.required = True
    train = sub.add_parser("train", help="train (or resume) a bank", description=_train.__doc__)
    train.add_argument("--data", type=Path, required=True, help="folder of training images (searched recursively)")
    train.add_argument("--out", type=Path, required=True, help="run folder (resumed if it holds a checkpoint)")
    for option, field, kind, text in _TRAIN_OPTIONS:
        train.add_argument(option, dest=field, type=kind, default=None, help=text,
                           metavar=option[2:].upper().replace("-", "_"))
    train.add_argument("--augment", action="store_true", default=None,
                       help="DiffAugment (color, translation, cutout) for small datasets")
    train.add_argument("--no-flip", dest="flip", action="store_false", default=None,
                       help="do not flip training images left-right")
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(_bank_run=_train)

    sample = sub.add_parser("sample", help="draw a seeded grid from a bank", description=_sample.__doc__)
    sample.add_argument("bank", metavar="BANK", type=Path, help="bank file, or a bank training run folder")
    sample.add_argument("-o", "--output", type=Path, help="grid PNG to write")
    sample.add_argument("--separate", type=Path, metavar="DIR", help="also write each image to DIR")
    sample.add_argument("--n", type=int, default=16, help="number of images (default 16)")
    sample.add_argument("--seed", type=int, default=0, help="latent seed (default 0)")
    sample.add_argument("--truncation", type=float, default=1.0, help="truncation psi, e.g. 0.7 (default 1: none)")
    sample.add_argument("--nrow", type=int, help="images per grid row (default: square-ish)")
    sample.add_argument("--from", dest="fmt", choices=("auto", *FORMATS), default="auto", help="bank file layout")
    sample.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    sample.add_argument("--overwrite", action="store_true", help="replace existing images")
    sample.set_defaults(_bank_run=_sample)


def _train(args: argparse.Namespace) -> int:
    """Train a StyleGAN2 bank (defaults: config-f), or resume the run in --out."""
    from ..bank.train import train_bank

    overrides = {field: getattr(args, field) for _, field, _, _ in _TRAIN_OPTIONS if getattr(args, field) is not None}
    for field in ("augment", "flip"):
        if getattr(args, field) is not None:
            overrides[field] = getattr(args, field)
    if isinstance(overrides.get("channel_multiplier"), float) and overrides["channel_multiplier"].is_integer():
        overrides["channel_multiplier"] = int(overrides["channel_multiplier"])
    result = train_bank(args.data, args.out, overrides, device=args.device, progress=not args.no_progress)
    if result.bank is not None and result.is_main:
        print(f"bank train: iteration {result.iteration}; bank: {result.bank} "
              f"(and {result.bank.with_suffix('.safetensors')})")
    return 0 if result.stopped_by is None else 128 + int(result.stopped_by)


def _sample(args: argparse.Namespace) -> int:
    """Sample a bank: seeded z, truncation around a fixed mean latent, registered noise."""
    from ..bank import load_bank_generator
    from ..bank.sample import sample_images, save_grid

    if args.output is None and args.separate is None:
        raise GleanError("give -o GRID.png and/or --separate DIR")
    if args.n < 1 or not 0.0 <= args.truncation <= 1.0:
        raise GleanError("--n must be at least 1 and --truncation within [0, 1]")
    source = args.bank / "bank.pth" if args.bank.is_dir() else args.bank
    generator = load_bank_generator(source, args.fmt)
    use_cuda = torch.cuda.is_available() if args.device == "auto" else args.device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise GleanError("--device cuda was asked for but CUDA is not available")
    images = sample_images(generator.to("cuda" if use_cuda else "cpu"), args.n, args.seed, args.truncation)
    written = []
    if args.output is not None:
        written.append(save_grid(images, args.output, args.nrow, args.overwrite))
    if args.separate is not None:
        written += [save_grid(image[None], args.separate / f"seed{args.seed}_{i:04d}.png", 1, args.overwrite)
                    for i, image in enumerate(images)]
    print(f"bank sample: {args.n} images from {source} -> {written[0]}" + (f" (+{len(written) - 1})" if len(written) > 1 else ""))
    return 0


def run(args: argparse.Namespace) -> int:
    return args._bank_run(args)
