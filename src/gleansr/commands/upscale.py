"""``gleansr upscale``: super-resolve files, folders and globs with a GLEAN model."""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time

NAME = "upscale"
HELP = "super-resolve images (files, folders, globs) with a GLEAN model"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    p.add_argument("-o", "--output", metavar="OUTDIR", help="output folder (default: next to each input)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="PRESET", help="a model from `gleansr models`")
    src.add_argument("--weights", metavar="PATH", help="any GLEAN checkpoint (MMEditing, gleansr, safetensors)")
    p.add_argument("-r", "--recursive", action="store_true", help="include images in sub-folders")
    p.add_argument("--suffix", default=None, help="added to output names (default: _x<scale>)")
    p.add_argument("--ext", default=None, help="output format, e.g. png (default: the input's)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--no-resize", action="store_true", help="fail on inputs that are not exactly the model's input size")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--download", action="store_true", help="allow downloading the preset's release weights")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    f = p.add_argument_group("whole photos with a face model (needs: pip install 'gleansr[faces]')")
    f.add_argument("--faces", action="store_true", help="find faces, align them to the FFHQ crop, super-resolve "
                   "them and paste them back into the bicubic-upscaled photo")
    f.add_argument("--scale", type=int, default=None, help="photo scale with --faces (default: the model's)")
    f.add_argument("--only", default="all", choices=["all", "largest", "center"], help="which faces to restore")
    f.add_argument("--min-face", type=float, default=None, help="skip faces smaller than this (photo pixels)")
    f.add_argument("--face-landmarks", default="68", choices=["68", "5"],
                   help="dlib landmark model; 68 (default) forbids commercial use, 5 does not carry that note")
    f.add_argument("--draw-boxes", action="store_true", help="also write <name>_faces.png with the faces found")
    f.add_argument("--save-crops", metavar="DIR", help="save each aligned crop and its SR result here")


def _default_model(args) -> str:
    if args.weights:
        return args.weights
    if args.model:
        return args.model
    from ..zoo import default_model_name

    return default_model_name()


class _Tally:
    """What one process did: written, skipped (output exists), failed; printed once at the end."""

    def __init__(self, tag: str, overwrite: bool):
        self.tag, self.overwrite = tag, overwrite
        self.done = self.skipped = 0
        self.failed: list[str] = []

    def exists(self, source, out, say) -> bool:
        """True (and counted, and said) when ``out`` exists and may not be replaced."""
        if out.exists() and not self.overwrite:
            self.skipped += 1
            say(f"{self.tag}skip {source}: {out} exists (use --overwrite)")
            return True
        return False

    def summary(self, details: str) -> int:
        for msg in self.failed:
            print(f"{self.tag}failed: {msg}", file=sys.stderr)
        print(f"{self.tag}{self.done} written, {self.skipped} skipped (exist), {len(self.failed)} failed, {details}",
              file=sys.stderr)
        return 1 if self.failed else 0


def _save_like(out, rgb, alpha, source, overwrite: bool) -> None:
    """Write ``rgb`` (+ alpha) with the source image's bit depth, greyness, ICC profile and EXIF."""
    from ..pipeline.images import save_image

    save_image(out, rgb, alpha, bit_depth=source.bit_depth, grayscale=source.grayscale,
               overwrite=overwrite, icc_profile=source.icc_profile, exif=source.exif)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from ..errors import GleanError
    from ..pipeline.files import check_outputs, collect_inputs, output_path, shard
    from ..pipeline.images import load_image
    from ..pipeline.upscaler import Upscaler

    if args.batch_size < 1:
        raise GleanError("--batch-size must be at least 1")
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = args.device
    if world > 1 and device in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"
    items = collect_inputs(args.inputs, recursive=args.recursive)
    upscaler = Upscaler(_default_model(args), device=device, precision=args.precision,
                        resize=not args.no_resize, download=args.download)
    scale = args.scale if args.faces and args.scale else upscaler.scale
    suffix = args.suffix if args.suffix is not None else f"_x{scale}"
    tally = _Tally(f"[rank {rank}/{world}] " if world > 1 else "", args.overwrite)

    def target(item, image=None):
        out_dir = args.output or item.path.parent
        base = item.base if args.output else None
        return output_path(item.path, out_dir, suffix=suffix, ext=args.ext, base=base,
                           alpha=image is not None and image.alpha is not None,
                           bit_depth=image.bit_depth if image is not None else 8)

    check_outputs([i.path for i in items], [target(i) for i in items])
    mine = shard(items, rank, world)
    if args.faces:
        return _run_faces(args, upscaler, mine, target, tally, scale)
    told = set()
    start = time.perf_counter()
    bar = tqdm(total=len(mine), unit="img", disable=args.quiet or None, file=sys.stderr,
               desc=f"{tally.tag}upscaling")
    say = functools.partial(tqdm.write, file=sys.stderr)  # above the progress bar
    batch: list = []

    def flush():
        if not batch:
            return
        try:
            results = upscaler.upscale_prepared([b[2] for b in batch])
        except Exception as exc:  # noqa: BLE001 - report and keep going with the next batch
            tally.failed += [f"{item.path}: {exc}" for item, _, _ in batch]
            results = []
        for (item, out, _), res in zip(batch, results):
            try:
                _save_like(out, res.rgb, res.alpha, res, args.overwrite)
                tally.done += 1
            except GleanError as exc:
                tally.failed.append(str(exc))
        bar.update(len(batch))
        batch.clear()

    for item in mine:
        try:
            image = load_image(item.path)
            out = target(item, image)
            if tally.exists(item.path, out, say):
                bar.update(1)
                continue
            prepared = upscaler.prepare(image, name=str(item.path))
        except GleanError as exc:
            tally.failed.append(str(exc))
            bar.update(1)
            continue
        for note in prepared.notes:
            kind = note.split(" ", 1)[0]
            if kind not in told:  # say each kind of adjustment once, not per image
                told.add(kind)
                say(f"{tally.tag}note: {item.path.name}: {note} (the model takes {upscaler.in_size}x{upscaler.in_size}; "
                    "further inputs are treated the same way)")
        batch.append((item, out, prepared))
        if len(batch) >= args.batch_size:
            flush()
    flush()
    bar.close()
    elapsed = time.perf_counter() - start
    rate = tally.done / elapsed if elapsed > 0 else 0.0
    return tally.summary(f"{elapsed:.1f} s ({rate:.2f} images/s) on {upscaler.device} {args.precision}"
                         + (f"; outputs in {Path(args.output)}" if args.output else ""))


def _run_faces(args, upscaler, items, target, tally: _Tally, scale: int) -> int:
    """Whole photos: faces through the model, the rest bicubic; one photo at a time."""
    from ..data.imresize import imresize
    from ..errors import GleanError
    from ..pipeline.faces import draw_faces, save_face_crops
    from ..pipeline.images import load_image, save_image

    if scale < 1:
        raise GleanError("--scale must be at least 1")
    enhancer = upscaler.face_enhancer(only=args.only, min_face=args.min_face, landmarks=args.face_landmarks,
                                      keep_crops=bool(args.save_crops))
    say = functools.partial(print, file=sys.stderr)
    say(f"{tally.tag}note: {enhancer.licence_note}")
    for item in items:
        try:
            image = load_image(item.path)
            out = target(item, image)
            if tally.exists(item.path, out, say):
                continue
            result = enhancer.enhance(image.rgb, scale)
            alpha = None
            if image.alpha is not None:
                h, w = image.alpha.shape
                alpha = imresize(image.alpha, output_shape=(h * scale, w * scale)).clip(0, 1)
            _save_like(out, result.image, alpha, image, args.overwrite)
            if args.draw_boxes:
                save_image(out.with_name(out.stem + "_faces.png"), draw_faces(image.rgb, result.faces),
                           overwrite=args.overwrite)
            if args.save_crops:
                save_face_crops(result, args.save_crops, item.path.stem, overwrite=args.overwrite)
            for msg in result.messages:
                say(f"{tally.tag}{item.path.name}: {msg}")
            tally.done += 1
        except GleanError as exc:
            tally.failed.append(str(exc))
    return tally.summary(f"x{scale}, faces by {upscaler.in_size}->{upscaler.out_size} model")
