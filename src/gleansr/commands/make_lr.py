"""``gleansr make-lr``: write MATLAB-bicubic LR images for HR image files and folders.

The LR files are what MMEditing's GLEAN data scripts write (``BIx8_down`` / ``BIx16_down``), made
by :mod:`gleansr.data.lowres`: a folder's images keep their relative paths (extension ``.png``),
a file keeps its name. A file that cannot be read or whose size is not a multiple of the scale
(without ``--crop``) is reported by name and skipped; the exit code is then 1.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import GleanError

NAME = "make-lr"
HELP = "Make LR images from HR images with MATLAB-style bicubic downscaling (as GLEAN was trained)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("hr", metavar="HR", nargs="+", help="HR image files and folders (folders searched recursively)")
    parser.add_argument("-o", "--output", metavar="LR_DIR", type=Path, required=True, help="folder for the LR PNGs")
    parser.add_argument("--scale", type=int, required=True, help="downscaling factor, e.g. 8 or 16")
    parser.add_argument("--crop", action="store_true",
                        help="centre-crop images whose sides are not multiples of the scale (default: skip them)")
    parser.add_argument("--overwrite", action="store_true", help="replace LR files that already exist")


def run(args: argparse.Namespace) -> int:
    from ..data.lowres import plan_lr, write_lr

    if args.scale < 2:
        raise GleanError(f"--scale must be 2 or more, got {args.scale}")
    jobs = plan_lr(args.hr, args.output)
    written = skipped = failed = 0
    for job in jobs:
        if job.target.exists() and not args.overwrite:
            skipped += 1
            continue
        try:
            write_lr(job, args.scale, crop=args.crop, overwrite=args.overwrite)
            written += 1
        except GleanError as exc:  # unreadable, wrong size, unwritable, or appeared meanwhile
            print(f"gleansr: make-lr: {exc}", file=sys.stderr)
            failed += 1
    print(f"make-lr: wrote {written}, skipped {skipped} existing, failed {failed} (x{args.scale}, into {args.output})")
    if skipped:
        print("make-lr: existing LR files were kept; pass --overwrite to replace them", file=sys.stderr)
    return 1 if failed else 0
