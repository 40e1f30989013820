"""``gleansr bank``: train a StyleGAN2 latent bank on your images, or sample one.

``gleansr bank train [CONFIG] --data FOLDER --out RUN_DIR --set size=256 [...]`` trains (or
resumes: a run folder holding a checkpoint is continued); under ``torchrun`` on several GPUs. It
takes the same common flags and typed ``--set key=value`` overrides as ``gleansr train``
(``size``, ``channel_max``, ``r1_gamma``, ``augment``, ... are BankConfig fields). ``gleansr bank
sample BANK -o grid.png`` draws a seeded grid from any bank file (MMGeneration weights,
``RUN_DIR/bank.pth``, converted safetensors, rosinality ``.pt``, NVIDIA ``.pkl``; a run folder
means its ``bank.pth``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import GleanError
from .train import add_common_arguments, common_overrides

NAME = "bank"
HELP = "Train a StyleGAN2 latent bank on your own images, or sample one."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bank_command", metavar="{train,sample}")
    sub.required = True
    train = sub.add_parser("train", help="train (or resume) a bank", description=_train.__doc__)
    add_common_arguments(train, "a .json/.toml file of bank config fields (optional; --set works alone)")
    train.set_defaults(_bank_run=_train)

    sample = sub.add_parser("sample", help="draw a seeded grid from a bank", description=_sample.__doc__)
    sample.add_argument("bank", metavar="BANK", type=Path, help="bank file, or a bank training run folder")
    sample.add_argument("-o", "--output", type=Path, help="grid PNG to write")
    sample.add_argument("--separate", type=Path, metavar="DIR", help="also write each image to DIR")
    sample.add_argument("--n", type=int, default=16, help="number of images (default 16)")
    sample.add_argument("--seed", type=int, default=0, help="latent seed (default 0)")
    sample.add_argument("--truncation", type=float, default=1.0, help="truncation psi, e.g. 0.7 (default 1: none)")
    sample.add_argument("--nrow", type=int, help="images per grid row (default: square-ish)")
    sample.add_argument("--from", dest="fmt", default="auto", metavar="FORMAT",
                        help="bank file layout: auto (default), mmgen, rosinality or nvidia")
    sample.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    sample.add_argument("--overwrite", action="store_true", help="replace existing images")
    sample.set_defaults(_bank_run=_sample)


def _train(args: argparse.Namespace) -> int:
    """Train a StyleGAN2 bank (defaults: config-f; --set size=N is required for a new run), or
    resume the run in --out."""
    from ..train.bank import BankConfig, train_bank
    from ..train.overrides import read_config_file
    from ..train.log import log_to_stderr

    log_to_stderr()
    overrides = common_overrides(args, BankConfig)
    config_file = read_config_file(Path(args.config)) if args.config else None
    result = train_bank(args.data, args.out, overrides, config_file=config_file, device=args.device,
                        resume=args.resume, progress=not args.quiet)
    bank = args.out / "bank.pth"
    if result.checkpoint is not None and result.is_main:
        print(f"bank train: iteration {result.iteration}; bank: {bank} (and {bank.with_suffix('.safetensors')})")
    return 0 if result.stopped_by is None else 128 + int(result.stopped_by)


def _sample(args: argparse.Namespace) -> int:
    """Sample a bank: seeded z, truncation around a fixed mean latent, registered noise."""
    from ..hardware import resolve_device
    from ..loading import load_bank_generator
    from ..train.bank_samples import sample_images, save_grid

    if args.output is None and args.separate is None:
        raise GleanError("give -o GRID.png and/or --separate DIR")
    if args.n < 1 or not 0.0 <= args.truncation <= 1.0:
        raise GleanError("--n must be at least 1 and --truncation within [0, 1]")
    source = args.bank / "bank.pth" if args.bank.is_dir() else args.bank
    generator = load_bank_generator(source, args.fmt)
    images = sample_images(generator.to(resolve_device(args.device)), args.n, args.seed, args.truncation)
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
