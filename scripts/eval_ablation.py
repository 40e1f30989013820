#!/usr/bin/env python3
"""Does the latent bank help? Bicubic vs GLEAN models on held-out glyphs, paired by image.

    python scripts/eval_ablation.py --hr DATA/test --model glean=glean.safetensors \
        --model ablation=ablation.safetensors --markdown results.md --json results.json

Every HR image under ``--hr`` (a glyph data set's ``test`` folder: font folders of PNGs) is
downscaled the way training does it (MATLAB-style bicubic, rounded to uint8); each model
super-resolves that same LR, and PSNR / SSIM (RGB, MMEditing's definitions, gleansr.metrics)
are taken against the HR, with stroke F1 / IoU (gleansr.metrics: are the strokes where the HR
has them? PSNR rewards blur). The first model is compared with each other method image by
image: the mean PSNR and stroke-F1 differences, each with a 95% bootstrap interval that
resamples whole fonts (images of one font are not independent), and the share of images where
the first model has the better PSNR.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from gleansr.atomic import atomic_write_bytes
from gleansr.loading import load_glean
from gleansr.data.datasets import list_images
from gleansr.evaluate import ImageResult, evaluate
from gleansr.metrics import stroke_f1, stroke_iou
from gleansr.pipeline.images import read_rgb_uint8
from gleansr.pipeline.upscaler import Upscaler

BOOTSTRAP_ROUNDS = 2000
STROKE_METRICS = {"stroke_f1": stroke_f1, "stroke_iou": stroke_iou}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hr", type=Path, required=True, help="folder of HR test images (sub-folder = font)")
    p.add_argument("--model", action="append", required=True, metavar="NAME=PATH",
                   help="a GLEAN checkpoint to evaluate; the first is compared with the others")
    p.add_argument("--limit", type=int, help="evaluate an evenly spaced subset of this many images")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--markdown", type=Path, help="write the results table here")
    p.add_argument("--json", type=Path, help="write the figures (means, paired differences, per-image scores) here")
    return p.parse_args(argv)


def font_bootstrap(diffs: np.ndarray, fonts: list[str], seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean of ``diffs`` when whole fonts are resampled with replacement."""
    names = sorted(set(fonts))
    index = {n: i for i, n in enumerate(names)}
    font_of = np.array([index[f] for f in fonts])
    sums, counts = np.bincount(font_of, diffs, len(names)), np.bincount(font_of, minlength=len(names))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(names), size=(BOOTSTRAP_ROUNDS, len(names)))
    means = sums[picks].sum(1) / counts[picks].sum(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def _hr_images(hr_root: Path, files: list[Path], size: int):
    for f in files:
        hr = read_rgb_uint8(hr_root / f)
        if hr.shape[:2] != (size, size):
            raise SystemExit(f"{hr_root / f}: images must be {size}x{size}")
        yield hr


def compare_models(hr_root: Path, models: dict[str, Path], limit: int | None, device: str, batch_size: int) -> dict:
    files = list_images(hr_root)
    if limit is not None and limit < len(files):
        files = [files[i * len(files) // limit] for i in range(limit)]
    # exact float32: evaluation figures must not depend on the CPU precision "auto" would pick
    upscalers = {name: Upscaler(load_glean(path), device=device, precision="fp32") for name, path in models.items()}
    sizes = {(u.in_size, u.out_size) for u in upscalers.values()}
    if len(sizes) != 1:
        raise SystemExit(f"the models differ in size: {sorted(sizes)}")
    (in_size, out_size), = sizes
    scores: dict[str, dict[str, list[float]]] = {}
    for name, up in upscalers.items():  # one pass per model over the same MATLAB-bicubic LR
        strokes: dict[str, list[float]] = {f"{method}_{m}": [] for method in ("sr", "bicubic") for m in STROKE_METRICS}

        def score_strokes(image: ImageResult) -> None:
            for method in ("sr", "bicubic"):
                for metric, fn in STROKE_METRICS.items():
                    strokes[f"{method}_{metric}"].append(fn(getattr(image, method), image.hr))

        report = evaluate(up.sr_uint8, _hr_images(hr_root, files, out_size), scale=up.scale,
                          batch_size=batch_size, each=score_strokes)
        for method, label in (("bicubic", "bicubic"), ("sr", name)):
            scores[label] = {m: [row[f"{method}_{m}"] for row in report.scores] for m in ("psnr", "ssim")}
            scores[label].update({m: strokes[f"{method}_{m}"] for m in STROKE_METRICS})
        print(f"{name}: {len(files)} images", file=sys.stderr)
    scores = {"bicubic": scores.pop("bicubic"), **scores}
    fonts = [f.parts[0] for f in files]
    first = next(iter(models))
    result = {"images": len(files), "fonts": len(set(fonts)), "scale": out_size // in_size,
              "methods": {m: {k: float(np.mean(v)) for k, v in s.items()} for m, s in scores.items()},
              "paired": {}}
    for other in scores:
        if other == first:
            continue
        diffs = {m: np.subtract(scores[first][m], scores[other][m]) for m in scores[first]}
        result["paired"][other] = {
            "psnr_diff": float(diffs["psnr"].mean()), "ci95": list(font_bootstrap(diffs["psnr"], fonts)),
            "ssim_diff": float(diffs["ssim"].mean()), "better_share": float(np.mean(diffs["psnr"] > 0)),
            "stroke_f1_diff": float(diffs["stroke_f1"].mean()),
            "stroke_f1_ci95": list(font_bootstrap(diffs["stroke_f1"], fonts)),
            "stroke_iou_diff": float(diffs["stroke_iou"].mean())}
    result["compared"] = first
    # per image, in the order of ``fonts``: what pools several seeds' runs image by image
    result["per_image"] = {"fonts": fonts, "scores": scores}
    return result


def markdown(result: dict) -> str:
    first = result["compared"]
    lines = [f"Held-out glyphs: {result['images']} images of {result['fonts']} fonts, x{result['scale']} "
             "(MATLAB-bicubic LR, RGB PSNR/SSIM; stroke outline F1 within 1 px and ink IoU at grey 128).", "",
             "| method | PSNR (dB) | SSIM | stroke F1 | stroke IoU |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {m} | {v['psnr']:.2f} | {v['ssim']:.4f} | {v['stroke_f1']:.4f} | {v['stroke_iou']:.4f} |"
              for m, v in result["methods"].items()]
    lines += ["", f"| {first} minus | PSNR (dB) | 95% CI (fonts resampled) | SSIM | {first} better on (PSNR) "
              "| stroke F1 | 95% CI | stroke IoU |", "| --- | ---: | --- | ---: | ---: | ---: | --- | ---: |"]
    for other, p in result["paired"].items():
        lines.append(f"| {other} | {p['psnr_diff']:+.2f} | [{p['ci95'][0]:+.2f}, {p['ci95'][1]:+.2f}] | "
                     f"{p['ssim_diff']:+.4f} | {100 * p['better_share']:.1f}% of images | {p['stroke_f1_diff']:+.4f} | "
                     f"[{p['stroke_f1_ci95'][0]:+.4f}, {p['stroke_f1_ci95'][1]:+.4f}] | {p['stroke_iou_diff']:+.4f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    models = {}
    for item in args.model:
        name, sep, path = item.partition("=")
        if not sep or not name or name == "bicubic" or name in models:
            raise SystemExit(f"--model expects a new NAME=PATH (not 'bicubic'), got {item!r}")
        models[name] = Path(path)
    result = compare_models(args.hr, models, args.limit, args.device, args.batch_size)
    text = markdown(result)
    print(text)
    if args.markdown:
        atomic_write_bytes(args.markdown, text.encode("utf-8"), overwrite=True)
    if args.json:
        atomic_write_bytes(args.json, (json.dumps(result, indent=1) + "\n").encode("utf-8"), overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
