"""``gleansr demo``: super-resolve the bundled samples with the bundled model, offline.

For each sample (a 16x16 glyph of a font design the model never saw, and its 128x128 original)
it writes ``<name>_glean.png``, ``<name>_bicubic.png`` (MATLAB-style bicubic to the same size)
and ``<name>_compare.png`` (LR nearest-upscaled | bicubic | GLEAN | original), and prints
PSNR/SSIM (RGB, MMEditing's definitions) of bicubic and GLEAN against the originals.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

NAME = "demo"
HELP = "super-resolve the bundled sample glyphs with the bundled model and compare with bicubic"

_PANEL_GAP = 4
_LABEL_HEIGHT = 18


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", default="demo_out", metavar="DIR", help="output folder (default: demo_out)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="NAME", help="a bundled model (default: the installed one)")
    src.add_argument("--weights", metavar="PATH", help="any GLEAN checkpoint whose sizes fit the samples")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def sample_pairs(folder: Path) -> list[tuple[str, Path, Path]]:
    """``(name, lr path, hr path)`` for every ``lr/<name>.png`` with an ``hr/<name>.png``, sorted."""
    from ..errors import GleanError

    pairs = [(p.stem, p, folder / "hr" / p.name) for p in sorted((folder / "lr").glob("*.png"))]
    pairs = [pair for pair in pairs if pair[2].is_file()]
    if not pairs:
        raise GleanError(f"no sample pairs (lr/NAME.png with hr/NAME.png) in {folder}")
    return pairs


def _model(args: argparse.Namespace):
    from ..loading import load_glean
    from ..zoo import default_model_name, load_model

    if args.weights:
        return load_glean(args.weights), str(args.weights)
    name = args.model or default_model_name()
    return load_model(name), name


def _uint8(path: Path) -> np.ndarray:
    from ..pipeline.images import load_image

    return np.rint(load_image(path).rgb * 255).astype(np.uint8)


def comparison(lr: np.ndarray, upscaled: list[np.ndarray], labels: list[str]) -> np.ndarray:
    """Side by side, each under its label: the LR nearest-upscaled, then ``upscaled`` (uint8 RGB,
    e.g. bicubic | SR | original)."""
    from PIL import Image, ImageDraw, ImageFont

    size = upscaled[0].shape[0]
    nearest = np.repeat(np.repeat(lr, size // lr.shape[0], axis=0), size // lr.shape[1], axis=1)
    panels = [nearest, *upscaled]
    width = len(panels) * size + (len(panels) - 1) * _PANEL_GAP
    canvas = Image.new("RGB", (width, size + _LABEL_HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=12)
    for i, (panel, label) in enumerate(zip(panels, labels)):
        x = i * (size + _PANEL_GAP)
        canvas.paste(Image.fromarray(panel), (x, _LABEL_HEIGHT))
        draw.text((x + 2, 2), label, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..data.imresize import imresize
    from ..errors import GleanError
    from ..metrics import psnr, ssim
    from ..pipeline.images import save_image
    from ..pipeline.upscaler import Upscaler
    from ..zoo import SAMPLES

    model, source = _model(args)
    up = Upscaler(model, device=args.device)
    out = Path(args.output)
    pairs = sample_pairs(SAMPLES)
    kinds = ("glean", "bicubic", "compare")
    targets = [out / f"{name}_{kind}.png" for name, _, _ in pairs for kind in kinds]
    existing = [t for t in targets if t.exists()]
    if existing and not args.overwrite:
        raise GleanError(f"{existing[0]} exists ({len(existing)} of the demo's {len(targets)} outputs do); "
                         "pass --overwrite or choose another -o")
    lrs, hrs = [_uint8(lr) for _, lr, _ in pairs], [_uint8(hr) for _, _, hr in pairs]
    for (name, _, _), lr, hr in zip(pairs, lrs, hrs):
        if lr.shape[:2] != (up.in_size, up.in_size) or hr.shape[:2] != (up.out_size, up.out_size):
            raise GleanError(f"sample {name} is {lr.shape[0]} -> {hr.shape[0]} px; the model is "
                             f"{up.in_size} -> {up.out_size}")
    with torch.no_grad():
        srs = up.sr_uint8(np.stack(lrs))
    rows = []
    for (name, _, _), lr, hr, sr in zip(pairs, lrs, hrs, srs):
        bicubic = imresize(lr, output_shape=hr.shape[:2])
        scores = {"bicubic_psnr": psnr(bicubic, hr), "bicubic_ssim": ssim(bicubic, hr),
                  "glean_psnr": psnr(sr, hr), "glean_ssim": ssim(sr, hr)}
        labels = ["LR x8 (nearest)", f"bicubic {scores['bicubic_psnr']:.2f} dB", f"GLEAN {scores['glean_psnr']:.2f} dB",
                  "original"]
        for kind, image in zip(kinds, (sr, bicubic, comparison(lr, [bicubic, sr, hr], labels))):
            save_image(out / f"{name}_{kind}.png", image.astype(np.float32) / 255, overwrite=args.overwrite)
        rows.append((name, scores))

    keys = list(rows[0][1])
    width = max(len("sample"), max(len(name) for name, _ in rows))
    print(f"model {source} (x{up.scale}, {up.in_size} -> {up.out_size}) on {up.device}; {len(rows)} held-out glyphs")
    print(f"{'sample':<{width}}" + "".join(f"{k:>14}" for k in keys))
    for name, scores in rows:
        print(f"{name:<{width}}" + "".join(f"{scores[k]:>14.4f}" for k in keys))
    means = {k: float(np.mean([s[k] for _, s in rows])) for k in keys}
    print(f"{'mean':<{width}}" + "".join(f"{means[k]:>14.4f}" for k in keys))
    print(f"outputs in {out}/ (<sample>_glean.png, _bicubic.png, _compare.png)")
    return 0
