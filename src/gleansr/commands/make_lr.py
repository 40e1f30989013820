"""``gleansr make-lr``: write MATLAB-bicubic LR images for a folder of HR images.

The LR files are what MMEditing's GLEAN data scripts write (``BIx8_down`` / ``BIx16_down``):
:func:`gleansr.imaging.imresize.imresize` by ``1 / scale``, rounded to uint8, saved as PNG under the
same relative path (extension ``.png``). A file that cannot be read or whose size is not a
multiple of the scale is reported by name and skipped; the exit code is then 1.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import GleanError, ImageError

NAME = "make-lr"
HELP = "Make LR images from HR images with MATLAB-style bicubic downscaling (as GLEAN was trained)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("hr_dir", metavar="HR_DIR", type=Path, help="folder of HR images (searched recursively)")
    parser.add_argument("-o", "--output", metavar="LR_DIR", type=Path, required=True, help="folder for the LR PNGs")
    parser.add_argument("--scale", type=int, required=True, help="downscaling factor, e.g. 8 or 16")
    parser.add_argument("--overwrite", action="store_true", help="replace LR files that already exist")


def _make_one(source: Path, target: Path, scale: int, overwrite: bool) -> None:
    from ..imaging.imresize import imresize
    from ..pipeline.images import read_rgb_uint8, save_image

    hr = read_rgb_uint8(source)
    h, w = hr.shape[:2]
    if h % scale or w % scale:
        raise ImageError(f"{source}: size {h}x{w} is not divisible by the scale {scale}")
    lr = imresize(hr, 1.0 / scale)
    try:
        save_image(target, lr, overwrite=overwrite)
    except OSError as exc:
        raise ImageError(f"cannot write {target}: {exc}") from exc


def _sources(hr_dir: Path, lr_dir: Path) -> list[Path]:
    """HR images, leaving out anything inside the output folder; one output name per source."""
    from ..data.datasets import list_images

    if not hr_dir.is_dir():
        raise GleanError(f"HR folder not found: {hr_dir}")
    hr_abs, lr_abs = hr_dir.resolve(), lr_dir.resolve()
    if hr_abs == lr_abs:
        raise GleanError(f"the output folder must differ from the HR folder: {hr_dir}")
    sources = [rel for rel in list_images(hr_dir) if not (hr_abs / rel).is_relative_to(lr_abs)]
    if not sources:
        raise GleanError(f"no images found in {hr_dir}")
    seen: dict[Path, Path] = {}
    for rel in sources:
        png = rel.with_suffix(".png")
        if png in seen:
            raise GleanError(f"{seen[png]} and {rel} would both be written to {lr_dir / png}; rename one")
        seen[png] = rel
    return sources


def run(args: argparse.Namespace) -> int:
    if args.scale < 2:
        raise GleanError(f"--scale must be 2 or more, got {args.scale}")
    sources = _sources(args.hr_dir, args.output)
    written = skipped = failed = 0
    for rel in sources:
        target = args.output / rel.with_suffix(".png")
        if target.exists() and not args.overwrite:
            skipped += 1
            continue
        try:
            _make_one(args.hr_dir / rel, target, args.scale, args.overwrite)
            written += 1
        except GleanError as exc:  # unreadable, wrong size, unwritable, or appeared meanwhile
            print(f"gleansr: make-lr: {exc}", file=sys.stderr)
            failed += 1
    print(f"make-lr: wrote {written}, skipped {skipped} existing, failed {failed} (x{args.scale}, into {args.output})")
    if skipped:
        print("make-lr: existing LR files were kept; pass --overwrite to replace them", file=sys.stderr)
    return 1 if failed else 0
