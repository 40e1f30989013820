"""``gleansr demo``: super-resolve the bundled samples with the bundled model, offline.

For each sample (a 16x16 glyph of a font design the model never saw, and its 128x128 original)
it writes ``<name>_glean.png``, ``<name>_bicubic.png`` (MATLAB-style bicubic to the same size)
and ``<name>_compare.png`` (LR nearest-upscaled | bicubic | GLEAN | original), and prints
PSNR/SSIM (RGB, MMEditing's definitions) of bicubic and GLEAN against the originals.

Reruns: the demo records what it wrote in ``<output>/.gleansr-demo.json`` (names and SHA-256) and
a later run replaces exactly those files while they are unchanged. Any other existing file of the
same name (the user's, or a demo output edited since) is left alone: the run stops with a message
unless ``--overwrite`` is given.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
from pathlib import Path

import numpy as np

from .train import add_allow_nonfinite

NAME = "demo"
HELP = "super-resolve the bundled sample glyphs with the bundled model and compare with bicubic"

_PANEL_GAP = 4
_LABEL_HEIGHT = 18
RECORD = ".gleansr-demo.json"
KINDS = ("glean", "bicubic", "compare")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", default="demo_out", metavar="DIR", help="output folder (default: demo_out); a rerun replaces the demo's own earlier outputs there")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="NAME", help="a bundled model (default: the installed one)")
    src.add_argument("--weights", metavar="PATH", help="any GLEAN checkpoint whose sizes fit the samples")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    add_allow_nonfinite(p)
    p.add_argument("--overwrite", action="store_true", help="also replace files of the same names that the demo did not write")


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
    from ..zoo import default_model, load_model

    if args.weights:
        return load_glean(args.weights, args.allow_nonfinite), str(args.weights)
    name = args.model or default_model().name
    return load_model(name, allow_nonfinite=args.allow_nonfinite), name


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


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _replaceable(out: Path, targets: list[Path], overwrite: bool) -> set[Path]:
    """Existing targets this run may replace: the demo's own unchanged outputs (all with
    ``overwrite``); any other existing target is an error naming ``--overwrite``."""
    from ..errors import GleanError

    try:
        written = json.loads((out / RECORD).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        written = {}
    existing = [t for t in targets if t.exists()]
    foreign = [t for t in existing if not t.is_file() or written.get(t.name) != _sha256(t.read_bytes())]
    if foreign and not overwrite:
        raise GleanError(f"{foreign[0]} exists and is not an unchanged output of an earlier demo run "
                         f"({len(foreign)} such file(s)); pass --overwrite or choose another -o")
    return set(existing)


def _writer(out: Path, replaceable: set[Path], hashes: dict[str, str]):
    """The ``each`` callback of :func:`gleansr.evaluate.evaluate` writing a sample's three images."""
    from ..atomic import atomic_write_bytes
    from ..pipeline.images import encode_image

    def write(result) -> None:
        labels = ["LR x8 (nearest)", f"bicubic {result.scores['bicubic_psnr']:.2f} dB",
                  f"GLEAN {result.scores['sr_psnr']:.2f} dB", "original"]
        panels = comparison(result.lr, [result.bicubic, result.sr, result.hr], labels)
        for kind, image in zip(KINDS, (result.sr, result.bicubic, panels)):
            target = out / f"{result.name}_{kind}.png"
            data = encode_image(image, ".png")
            atomic_write_bytes(target, data, overwrite=target in replaceable)
            hashes[target.name] = _sha256(data)

    return write


def _print_table(report, source: str, up) -> None:
    columns = {"bicubic_psnr": "bicubic_psnr", "bicubic_ssim": "bicubic_ssim",
               "glean_psnr": "sr_psnr", "glean_ssim": "sr_ssim"}
    width = max(len("sample"), max(len(name) for name in report.names))
    print(f"model {source} (x{up.scale}, {up.in_size} -> {up.out_size}) on {up.device}; "
          f"{len(report.names)} held-out glyphs")
    print(f"{'sample':<{width}}" + "".join(f"{k:>14}" for k in columns))
    for name, scores in zip(report.names, report.scores):
        print(f"{name:<{width}}" + "".join(f"{scores[k]:>14.4f}" for k in columns.values()))
    print(f"{'mean':<{width}}" + "".join(f"{report.mean[k]:>14.4f}" for k in columns.values()))


def _record(out: Path, hashes: dict[str, str]) -> None:
    """Write the names and hashes of the files this run wrote (which a rerun may replace)."""
    from ..atomic import atomic_write_bytes

    if hashes:
        record = json.dumps({"files": hashes}, indent=1, sort_keys=True) + "\n"
        atomic_write_bytes(out / RECORD, record.encode("utf-8"), overwrite=True)


def run(args: argparse.Namespace) -> int:
    from ..errors import GleanError
    from ..evaluate import evaluate
    from ..pipeline.images import read_rgb_uint8
    from ..pipeline.upscaler import Upscaler
    from ..zoo import SAMPLES

    model, source = _model(args)
    up = Upscaler(model, device=args.device, precision="fp32")  # figures as evaluated: exact float32
    out = Path(args.output)
    pairs = sample_pairs(SAMPLES)
    replaceable = _replaceable(out, [out / f"{name}_{kind}.png" for name, _, _ in pairs for kind in KINDS],
                               args.overwrite)
    lrs, hrs = [read_rgb_uint8(lr) for _, lr, _ in pairs], [read_rgb_uint8(hr) for _, _, hr in pairs]
    for (name, _, _), lr, hr in zip(pairs, lrs, hrs):
        if lr.shape[:2] != (up.in_size, up.in_size) or hr.shape[:2] != (up.out_size, up.out_size):
            raise GleanError(f"sample {name} is {lr.shape[0]} -> {hr.shape[0]} px; the model is "
                             f"{up.in_size} -> {up.out_size}")
    hashes: dict[str, str] = {}
    try:
        report = evaluate(up.sr_uint8, hrs, lr_images=lrs, scale=up.scale,
                          names=[name for name, _, _ in pairs], each=_writer(out, replaceable, hashes))
    except BaseException:  # what was written is recorded even if a later write fails; that failure is reported
        with contextlib.suppress(GleanError, OSError):  # e.g. the disk is full: the first error says so
            _record(out, hashes)
        raise
    _record(out, hashes)
    _print_table(report, source, up)
    print(f"outputs in {out}/ (<sample>_glean.png, _bicubic.png, _compare.png; a rerun replaces them)")
    return 0
