"""``gleansr upscale``: super-resolve files, folders and globs with a GLEAN model."""
from __future__ import annotations

import argparse
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
    from ..presets import default_model_name

    return default_model_name()


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from ..errors import GleanError
    from ..pipeline.files import check_outputs, collect_inputs, output_path, shard
    from ..pipeline.images import load_image, save_image
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
    tag = f"[rank {rank}/{world}] " if world > 1 else ""

    def target(item, image=None):
        out_dir = args.output or item.path.parent
        base = item.base if args.output else None
        return output_path(item.path, out_dir, suffix=suffix, ext=args.ext, base=base,
                           alpha=image is not None and image.alpha is not None,
                           bit_depth=image.bit_depth if image is not None else 8)

    check_outputs([i.path for i in items], [target(i) for i in items])
    mine = shard(items, rank, world)
    if args.faces:
        return _run_faces(args, upscaler, mine, target, tag, scale)
    tag = f"[rank {rank}/{world}] " if world > 1 else ""
    done = skipped = 0
    failed: list[str] = []
    told = set()
    start = time.perf_counter()
    bar = tqdm(total=len(mine), unit="img", disable=args.quiet or None, file=sys.stderr, desc=f"{tag}upscaling")
    batch: list = []

    def flush():
        nonlocal done
        if not batch:
            return
        try:
            results = upscaler.upscale_prepared([b[2] for b in batch])
        except Exception as exc:  # noqa: BLE001 - report and keep going with the next batch
            for item, _, _ in batch:
                failed.append(f"{item.path}: {exc}")
            bar.update(len(batch))
            batch.clear()
            return
        for (item, out, _), res in zip(batch, results):
            try:
                save_image(out, res.rgb, res.alpha, bit_depth=res.bit_depth, grayscale=res.grayscale,
                           overwrite=args.overwrite, icc_profile=res.icc_profile, exif=res.exif)
                done += 1
            except GleanError as exc:
                failed.append(str(exc))
        bar.update(len(batch))
        batch.clear()

    for item in mine:
        try:
            image = load_image(item.path)
            out = target(item, image)
            if out.exists() and not args.overwrite:
                skipped += 1
                bar.update(1)
                tqdm.write(f"{tag}skip {item.path}: {out} exists (use --overwrite)", file=sys.stderr)
                continue
            prepared = upscaler.prepare(image, name=str(item.path))
        except GleanError as exc:
            failed.append(str(exc))
            bar.update(1)
            continue
        for note in prepared.notes:
            kind = note.split(" ", 1)[0]
            if kind not in told:  # say each kind of adjustment once, not per image
                told.add(kind)
                tqdm.write(f"{tag}note: {item.path.name}: {note} (the model takes {upscaler.in_size}x{upscaler.in_size}; "
                           "further inputs are treated the same way)", file=sys.stderr)
        batch.append((item, out, prepared))
        if len(batch) >= args.batch_size:
            flush()
    flush()
    bar.close()
    elapsed = time.perf_counter() - start
    for msg in failed:
        print(f"{tag}failed: {msg}", file=sys.stderr)
    rate = done / elapsed if elapsed > 0 else 0.0
    print(f"{tag}{done} written, {skipped} skipped (exist), {len(failed)} failed, "
          f"{elapsed:.1f} s ({rate:.2f} images/s) on {upscaler.device} {args.precision}"
          + (f"; outputs in {Path(args.output)}" if args.output else ""), file=sys.stderr)
    return 1 if failed else 0


def _run_faces(args, upscaler, items, target, tag: str, scale: int) -> int:
    """Whole photos: faces through the model, the rest bicubic; one photo at a time."""
    from ..data.imresize import imresize
    from ..errors import GleanError
    from ..pipeline.faces import draw_faces, save_face_crops
    from ..pipeline.images import load_image, save_image

    if scale < 1:
        raise GleanError("--scale must be at least 1")
    enhancer = upscaler.face_enhancer(only=args.only, min_face=args.min_face, landmarks=args.face_landmarks,
                                      keep_crops=bool(args.save_crops))
    print(f"{tag}note: {enhancer.licence_note}", file=sys.stderr)
    done = skipped = 0
    failed: list[str] = []
    for item in items:
        try:
            image = load_image(item.path)
            out = target(item, image)
            if out.exists() and not args.overwrite:
                skipped += 1
                print(f"{tag}skip {item.path}: {out} exists (use --overwrite)", file=sys.stderr)
                continue
            result = enhancer.enhance(image.rgb, scale)
            alpha = None
            if image.alpha is not None:
                h, w = image.alpha.shape
                alpha = imresize(image.alpha, output_shape=(h * scale, w * scale)).clip(0, 1)
            save_image(out, result.image, alpha, bit_depth=image.bit_depth, grayscale=image.grayscale,
                       overwrite=args.overwrite, icc_profile=image.icc_profile, exif=image.exif)
            if args.draw_boxes:
                save_image(out.with_name(out.stem + "_faces.png"), draw_faces(image.rgb, result.faces),
                           overwrite=args.overwrite)
            if args.save_crops:
                save_face_crops(result, args.save_crops, item.path.stem, overwrite=args.overwrite)
            for msg in result.messages:
                print(f"{tag}{item.path.name}: {msg}", file=sys.stderr)
            done += 1
        except GleanError as exc:
            failed.append(str(exc))
    for msg in failed:
        print(f"{tag}failed: {msg}", file=sys.stderr)
    print(f"{tag}{done} written, {skipped} skipped (exist), {len(failed)} failed (x{scale}, faces by "
          f"{upscaler.in_size}->{upscaler.out_size} model)", file=sys.stderr)
    return 1 if failed else 0
