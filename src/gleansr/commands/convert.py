"""``gleansr convert``: import a StyleGAN2 bank (MMGeneration, rosinality, NVIDIA) as safetensors.

The output ``DST.safetensors`` holds the bare generator (its config in the metadata); a
discriminator, when the source has one, goes to ``DST.discriminator.safetensors`` beside it.
Both are read by every command that takes a bank (``train --bank``, ``bank sample``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

NAME = "convert"
HELP = "Convert a StyleGAN2 bank (MMGeneration .pth, rosinality .pt, NVIDIA .pkl) to safetensors."
_FORMATS = ("mmgen", "rosinality", "nvidia")  # gleansr.loading.FORMATS, without importing torch here


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SRC", type=Path, help="the StyleGAN2 file to import")
    parser.add_argument("-o", "--output", metavar="DST", type=Path, required=True,
                        help="output .safetensors (the discriminator goes to DST.discriminator.safetensors)")
    parser.add_argument("--from", dest="fmt", choices=("auto", *_FORMATS), default="auto",
                        help="source layout (default: detected)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def run(args: argparse.Namespace) -> int:
    from ..loading import export_bank, load_bank

    weights = load_bank(args.source, args.fmt)
    written = export_bank(weights, args.output, overwrite=args.overwrite)
    print(f"convert: {args.source} ({weights.source_format}) -> {', '.join(map(str, written))}")
    print(f"  generator: {weights.generator_config.describe()}")
    if weights.discriminator is None:
        print("  discriminator: none in the source")
    for note in weights.notes:
        print(f"  note: {note}")
    return 0
