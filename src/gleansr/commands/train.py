"""``gleansr train``: train GLEAN from a preset's recipe or a config file; resumable; DDP via torchrun.

Examples::

    gleansr train glean_cat_8x --data cats/train --out runs/cat8x --bank stylegan2-cat.pth --vgg vgg16.pth
    gleansr train my_config.toml --data hr/ --lr-data lr_x8/ --out runs/x --set batch_size=4 lr_g=2e-4
    torchrun --nproc-per-node 2 -m gleansr.cli train glean_ffhq_16x --data ffhq --out runs/ffhq --bank pretrained

Running the same command again continues the run from ``RUN_DIR/last.pt``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..train.config import PRECISIONS, load_config, parse_overrides

NAME = "train"
HELP = "Train a GLEAN model (presets' recipes or a config file); rerun the same command to resume."

# Dedicated flags that are shorthands for --set (they win over --set).
_SHORTHANDS = ("max_iters", "save_every", "val_every", "log_every", "batch_size", "num_workers", "precision", "seed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG_OR_PRESET", nargs="?",
                        help="a preset name (glean_cat_8x, glean_cat_16x, glean_ffhq_16x, "
                             "glean_in128out1024_4x2_300k_ffhq_celebahq) or a .json/.toml config; "
                             "optional when RUN_DIR holds a checkpoint")
    parser.add_argument("--data", metavar="HR_DIR", type=Path, required=True, help="training HR images")
    parser.add_argument("--lr-data", metavar="LR_DIR", type=Path,
                        help="pre-made LR images (same relative names); default: made on the fly (MATLAB "
                             "bicubic, or the in128 degradations when the config has degrade=true)")
    parser.add_argument("--out", metavar="RUN_DIR", type=Path, required=True,
                        help="run folder: checkpoints, metrics.jsonl, samples/, config.json")
    parser.add_argument("--val-data", metavar="HR_DIR", type=Path, help="held-out HR images for PSNR/SSIM")
    parser.add_argument("--val-lr-data", metavar="LR_DIR", type=Path, help="their LR images (default: bicubic)")
    parser.add_argument("--bank", metavar="PATH",
                        help="MMGeneration StyleGAN2 file (generator_ema -> bank, discriminator -> D), or "
                             "'pretrained' for the preset's official bank (cached/downloaded)")
    parser.add_argument("--vgg", metavar="PATH",
                        help="torchvision VGG16 weights (vgg16-397923af.pth) for the perceptual loss; "
                             "default: the cached copy, downloaded if missing")
    parser.add_argument("--set", metavar="KEY=VALUE", nargs="+", action="extend", default=[], dest="overrides",
                        help="override config values, typed by field: batch_size=4 betas=0.9,0.99 "
                             "model.num_rrdbs=8 flip=false")
    parser.add_argument("--max-iters", type=int, metavar="N", help="shorthand for --set max_iters=N")
    parser.add_argument("--save-every", type=int, metavar="N", help="checkpoint interval (iterations)")
    parser.add_argument("--val-every", type=int, metavar="N", help="validation interval (iterations)")
    parser.add_argument("--log-every", type=int, metavar="N", help="metrics.jsonl interval (iterations)")
    parser.add_argument("--batch-size", type=int, metavar="N", help="batch size per process (GPU)")
    parser.add_argument("--num-workers", type=int, metavar="N", help="DataLoader worker processes per GPU")
    parser.add_argument("--seed", type=int, metavar="N", help="seed of weights init and data order")
    parser.add_argument("--precision", choices=PRECISIONS, help="fp32, or bf16/fp16 autocast (fp16 with GradScaler)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: cuda:LOCAL_RANK when CUDA is available, else CPU")
    parser.add_argument("--resume", action="store_true",
                        help="require a checkpoint in RUN_DIR (one is always used when present)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..train.loop import RunPaths, train

    overrides = parse_overrides(args.overrides)
    for key in _SHORTHANDS:
        if getattr(args, key) is not None:
            overrides[key] = str(getattr(args, key))
    config = load_config(args.config) if args.config else None
    paths = RunPaths(data=args.data, out=args.out, lr_data=args.lr_data, val_data=args.val_data,
                     val_lr_data=args.val_lr_data, bank=args.bank, vgg=args.vgg)
    result = train(config, paths, overrides=overrides, resume=args.resume, device=args.device,
                   progress=not args.quiet)
    return 128 + int(result.stopped_by) if result.stopped_by else 0
