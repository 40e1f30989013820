"""``gleansr train``: train GLEAN from a preset's recipe or a config file; resumable; DDP via torchrun.

Examples::

    gleansr train glean_cat_8x --data cats/train --out runs/cat8x            # the preset's pretrained bank
    gleansr train my_config.toml --data hr/ --lr-data lr_x8/ --out runs/x --bank bank.pth --set batch_size=4
    torchrun --nproc-per-node 2 -m gleansr.cli train glean_ffhq_16x --data ffhq --out runs/ffhq

Running the same command again continues the run from ``RUN_DIR/last.pt``. The flags shared
with ``gleansr bank train`` are defined here (:func:`add_common_arguments`).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

NAME = "train"
HELP = "Train a GLEAN model (presets' recipes or a config file); rerun the same command to resume."

# Flags every training command has, each a shorthand for --set KEY=VALUE (they win over --set).
COMMON_SHORTHANDS = (
    ("--max-iters", "max_iters", "iterations to train in total"),
    ("--batch-size", "batch_size", "images per process and (micro-)step"),
    ("--num-workers", "num_workers", "DataLoader worker processes per process (default: fits the machine)"),
    ("--save-every", "save_every", "checkpoint interval (iterations)"),
    ("--log-every", "log_every", "metrics.jsonl interval (iterations)"),
    ("--seed", "seed", "seed of the initial weights and the data order"),
    ("--precision", "precision", "fp32, or bf16/fp16 autocast (fp16 with a GradScaler)"),
)


def add_allow_nonfinite(parser: argparse.ArgumentParser) -> None:
    """``--allow-nonfinite``: the one escape from the loader's refusal of NaN/inf weights."""
    parser.add_argument("--allow-nonfinite", action="store_true",
                        help="load weights holding NaN or infinite values anyway (forensics; they are refused "
                             "otherwise)")


def add_common_arguments(parser: argparse.ArgumentParser, config_help: str) -> None:
    """The arguments ``gleansr train`` and ``gleansr bank train`` share."""
    parser.add_argument("config", metavar="CONFIG", nargs="?", help=config_help)
    parser.add_argument("--data", metavar="DIR", type=Path, required=True, help="training images")
    parser.add_argument("--out", metavar="RUN_DIR", type=Path, required=True,
                        help="run folder: checkpoints, metrics.jsonl, samples/, config.json; resumed if it "
                             "holds a checkpoint")
    parser.add_argument("--set", metavar="KEY=VALUE", nargs="+", action="extend", default=[], dest="overrides",
                        help="override config values, typed by field (e.g. batch_size=4 betas=0.9,0.99 flip=false)")
    for option, field, text in COMMON_SHORTHANDS:
        parser.add_argument(option, dest=field, metavar="N" if field != "precision" else "NAME", help=text,
                            type=str if field == "precision" else int)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: cuda:LOCAL_RANK when CUDA is available, else CPU")
    parser.add_argument("--resume", action="store_true",
                        help="require a checkpoint in RUN_DIR (one is always used when present)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def common_overrides(args: argparse.Namespace, config_class: Any, extra: dict[str, Any] | None = None) -> dict[str, str]:
    """``--set`` pairs (keys checked against ``config_class``) with the shorthand flags on top."""
    from ..train.overrides import parse_overrides

    overrides = parse_overrides(config_class, args.overrides)
    values = {field: getattr(args, field) for _, field, _ in COMMON_SHORTHANDS}
    values.update(extra or {})
    overrides.update({key: str(value) for key, value in values.items() if value is not None})
    return overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..zoo import trainable_names  # torch-free: --help stays fast

    add_common_arguments(parser, f"a preset name ({', '.join(trainable_names())}) or a .json/.toml config; "
                                 "optional when RUN_DIR holds a checkpoint")
    parser.add_argument("--lr-data", metavar="LR_DIR", type=Path,
                        help="pre-made LR images (same relative names); default: made on the fly (MATLAB "
                             "bicubic, or the in128 degradations when the config has degrade=true)")
    parser.add_argument("--val-data", metavar="HR_DIR", type=Path, help="held-out HR images for PSNR/SSIM")
    parser.add_argument("--val-lr-data", metavar="LR_DIR", type=Path, help="their LR images (default: bicubic)")
    parser.add_argument("--val-every", type=int, metavar="N", help="validation interval (iterations)")
    parser.add_argument("--bank", metavar="FILE|random|pretrained",
                        help="StyleGAN2 file (generator_ema -> bank, discriminator -> D; any format `gleansr "
                             "convert` reads) or a GLEAN file (its bank; D random), 'random' for random bank and D, "
                             "or 'pretrained' (a preset's default: its official bank, downloaded and verified); "
                             "default with --init: the bank inside the --init file; shorthand for --set bank=...")
    parser.add_argument("--init", metavar="NAME|FILE",
                        help="fine-tune: start the generator, its bank included, from a zoo model or any GLEAN "
                             "file (release, export, safetensors, run folder; same architecture), with the "
                             "fine-tune learning rate and warm-up unless --set gives them; shorthand for --set init=...")
    add_allow_nonfinite(parser)  # for --init
    parser.add_argument("--vgg", metavar="PATH",
                        help="torchvision VGG16 weights (vgg16-397923af.pth) for the perceptual loss; "
                             "default: the cached copy, downloaded if missing")


def run(args: argparse.Namespace) -> int:
    from ..train.config import TrainConfig, load_config
    from ..train.glean import RunPaths, train
    from ..train.log import log_to_stderr

    log_to_stderr()
    extra = {"val_every": args.val_every, "bank": args.bank, "init": args.init}
    overrides = common_overrides(args, TrainConfig, extra)
    config = load_config(args.config) if args.config else None
    paths = RunPaths(data=args.data, out=args.out, lr_data=args.lr_data, val_data=args.val_data,
                     val_lr_data=args.val_lr_data, vgg=args.vgg)
    result = train(config, paths, overrides=overrides, resume=args.resume, device=args.device,
                   progress=not args.quiet, allow_nonfinite=args.allow_nonfinite)
    return 128 + int(result.stopped_by) if result.stopped_by else 0
