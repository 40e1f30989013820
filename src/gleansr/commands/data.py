"""``gleansr data``: build training data sets that need no download.

``gleansr data glyphs --fonts DIR [DIR ...] -o OUT`` renders one image per (font, character) from
font files, holding whole designs out for testing (see :mod:`gleansr.glyphs.render`).
"""
from __future__ import annotations

import argparse
import sys

NAME = "data"
HELP = "build offline data sets (glyph images rendered from font files)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..glyphs.render import DEFAULT_CHARS

    sub = p.add_subparsers(dest="data_kind", metavar="KIND")
    sub.required = True
    g = sub.add_parser("glyphs", help="render glyph images from font files, split by font design",
                       description="Render one image per (font, character) into OUT/train and OUT/test "
                                   "(whole font designs held out) with OUT/manifest.json.")
    g.add_argument("--fonts", nargs="+", required=True, metavar="PATH",
                   help="font files or folders searched recursively (.ttf .otf .ttc .otc)")
    g.add_argument("-o", "--output", required=True, metavar="OUT", help="new or empty folder for the data set")
    g.add_argument("--size", type=int, default=128, help="image side in pixels (default: 128)")
    g.add_argument("--chars", default=DEFAULT_CHARS, help="characters to render (default: A-Z a-z 0-9 &?!@#%%$)")
    g.add_argument("--test-fraction", type=float, default=0.1,
                   help="expected fraction of design clusters held out for testing (default: 0.1)")
    g.add_argument("--seed", type=int, default=0, help="changes which designs are held out (default: 0)")
    g.add_argument("--fit", type=float, default=0.8, help="longer side of the glyph's ink / image side (default: 0.8)")
    g.add_argument("--min-chars", type=int, help="skip faces with fewer characters (default: half of --chars)")
    g.add_argument("--overwrite", action="store_true", help="replace a glyph data set already in OUT")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..glyphs.render import build_glyph_dataset

    bar = tqdm(unit="font", disable=args.quiet or None, file=sys.stderr, desc="rendering")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        manifest = build_glyph_dataset(
            args.fonts, args.output, size=args.size, chars=args.chars, test_fraction=args.test_fraction,
            seed=args.seed, fit=args.fit, min_chars=args.min_chars, command=_as_command(args),
            overwrite=args.overwrite, progress=progress)
    finally:
        bar.close()
    for split, counts in manifest["counts"].items():
        print(f"{split}: {counts['images']} images from {counts['fonts']} fonts ({counts['families']} families "
              f"in {counts['groups']} design groups, {counts['clusters']} clusters)")
    print(f"skipped {len(manifest['skipped'])} faces (reasons in {args.output}/manifest.json)")
    return 0


def _as_command(args: argparse.Namespace) -> list[str]:
    """The options as one canonical command line for the manifest (the same for every way of calling)."""
    line = ["gleansr", "data", "glyphs", "--fonts", *map(str, args.fonts), "-o", str(args.output),
            "--size", str(args.size), "--chars", args.chars, "--test-fraction", str(args.test_fraction),
            "--seed", str(args.seed), "--fit", str(args.fit)]
    if args.min_chars is not None:
        line += ["--min-chars", str(args.min_chars)]
    return line
