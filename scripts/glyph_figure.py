#!/usr/bin/env python3
"""The README's side-by-side figure: bundled held-out samples through bicubic and each model.

    python scripts/glyph_figure.py --model "no bank=runs/glyphs/ablation.safetensors" \
        --model "GLEAN=src/gleansr/assets/glean_glyphs_8x.safetensors" -o docs/images/glyphs_demo.png

One row per sample (``--samples`` of them, from the package's ``samples/``): the LR shown
nearest-upscaled, bicubic, each model, the original; each panel labelled with its PSNR.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from gleansr.loading import load_glean
from gleansr.commands.demo import comparison, sample_pairs
from gleansr.imaging.imresize import imresize
from gleansr.metrics import psnr
from gleansr.pipeline.images import read_rgb_uint8, save_image
from gleansr.pipeline.upscaler import Upscaler
from gleansr.zoo import SAMPLES


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, metavar="NAME=PATH")
    p.add_argument("--samples", type=int, default=4, help="rows (the first N bundled samples)")
    p.add_argument("-o", "--output", type=Path, required=True)
    args = p.parse_args(argv)
    models = {}
    for item in args.model:
        name, _, path = item.partition("=")
        models[name] = Upscaler(load_glean(path), device="cpu")
    rows = []
    for _, lr_path, hr_path in sample_pairs(SAMPLES)[: args.samples]:
        lr, hr = read_rgb_uint8(lr_path), read_rgb_uint8(hr_path)
        outputs = {"bicubic": imresize(lr, output_shape=hr.shape[:2])}
        outputs |= {name: up.upscale(lr) for name, up in models.items()}
        labels = [f"LR x{hr.shape[0] // lr.shape[0]} (nearest)"]
        labels += [f"{name} {psnr(out, hr):.2f} dB" for name, out in outputs.items()] + ["original"]
        rows.append(comparison(lr, [*outputs.values(), hr], labels))
    figure = np.concatenate(rows, axis=0)
    save_image(args.output, figure, overwrite=True)
    print(f"wrote {args.output} ({figure.shape[1]}x{figure.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
