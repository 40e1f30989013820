"""``gleansr upscale``: super-resolve files, folders and globs with a GLEAN model."""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time

from ..errors import GleanError
from ..precision import CHOICES

NAME = "upscale"
HELP = "super-resolve images (files, folders, globs) with a GLEAN model"

EPILOG = """GLEAN models restore small images of one kind: each model has a domain (cats, faces, glyphs)
and a fixed input size (`gleansr models` lists them). An input of exactly that size is used as it
is; a smaller one is centre-cropped to a square and enlarged to it (MATLAB bicubic); a larger one
is refused unless --resize (shrinking it throws most of it away). Photos with faces: --faces
--model glean_ffhq_16x. Rerunning over a folder skips the outputs of earlier runs."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    p.add_argument("-o", "--output", metavar="OUTDIR", help="output folder (default: next to each input)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="NAME", help="a model from `gleansr models` (default: the bundled "
                     "glean_glyphs_8x, for text glyphs)")
    src.add_argument("--weights", metavar="PATH", help="any GLEAN weights file (MMEditing, gleansr, safetensors; "
                     ".onnx with --backend onnx)")
    p.add_argument("-r", "--recursive", action="store_true", help="include images in sub-folders")
    p.add_argument("--suffix", default=None, help="added to output names (default: _x<scale>)")
    p.add_argument("--ext", default=None, help="output format, e.g. png (default: the input's)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--resize", action="store_true", help="also shrink inputs larger than the model's input "
                      "(refused by default: GLEAN restores small images of one kind)")
    size.add_argument("--no-resize", action="store_true", help="fail on inputs that are not exactly the model's "
                      "input size (default: smaller inputs are centre-cropped and enlarged)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--precision", default="auto", choices=CHOICES,
                   help="auto (default): bf16 where the CPU/GPU has native bf16 units and the model's bf16 output "
                        "is known to stay within 50 dB of fp32, else fp32 (said once); fp32 is exact")
    p.add_argument("--backend", default="torch", choices=["torch", "onnx"], help="run the model with PyTorch "
                   "(default) or ONNX Runtime (--weights model.onnx; needs pip install 'gleansr[onnx]')")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--download", action="store_true", help="allow downloading the model's release weights")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    f = p.add_argument_group("whole photos with a face model (needs: pip install 'gleansr[faces]')")
    f.add_argument("--faces", action="store_true", help="find faces, align them to the FFHQ crop, super-resolve "
                   "them and paste them back into the bicubic-upscaled photo; needs a face model "
                   "(--model glean_ffhq_16x)")
    f.add_argument("--face-model-ok", action="store_true", help="with --faces --weights: the file is a face model "
                   "(trained on aligned FFHQ-style face crops)")
    f.add_argument("--scale", type=int, default=None, help="photo scale with --faces (default: the model's)")
    f.add_argument("--only", default="all", choices=["all", "largest", "center"], help="which faces to restore")
    f.add_argument("--min-face", type=float, default=None, help="skip faces smaller than this (photo pixels)")
    f.add_argument("--face-landmarks", default="68", choices=["68", "5"],
                   help="dlib landmark model; 68 (default) forbids commercial use, 5 does not carry that note")
    f.add_argument("--draw-boxes", action="store_true", help="also write <name>_faces.png with the faces found")
    f.add_argument("--save-crops", metavar="DIR", help="save each aligned crop and its SR result here")


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


def _choose_model(args, say) -> tuple[str, object]:
    """(what to load, its zoo facts or None); the zoo name is checked ("did you mean") before any
    model is built, and the default model is named with its domain."""
    from .. import zoo

    if args.weights:
        return args.weights, None
    if args.faces and not args.model:
        raise GleanError(f"--faces needs a face model: add --model glean_ffhq_16x (face models: "
                         f"{', '.join(zoo.face_model_names())}), or --weights FILE --face-model-ok")
    name = args.model or zoo.default_model_name()
    entry = zoo.get_entry(name)
    if not args.model:
        say(f"note: no --model given, using the default {name} ({entry.domain}: {entry.input_kind}; "
            f"{entry.in_size}x{entry.in_size} -> {entry.out_size}x{entry.out_size}); `gleansr models` lists the others")
    return name, entry


def _check_face_model(args, entry) -> None:
    """--faces takes face models only: zoo face models, or a file the user vouches for."""
    from .. import zoo

    faces = ", ".join(zoo.face_model_names())
    if args.face_model_ok and not (args.faces and args.weights):
        raise GleanError("--face-model-ok only applies to --faces with --weights")
    if not args.faces:
        return
    if entry is None and not args.face_model_ok:
        raise GleanError(f"--faces with --weights {args.weights}: gleansr cannot tell whether it is a face model; "
                         "if it was trained on aligned FFHQ-style face crops, add --face-model-ok")
    if entry is not None and not entry.face_model:
        raise GleanError(f"--faces takes face models only, and {entry.name} is a {entry.domain} model "
                         f"({entry.input_kind}); use --model with one of: {faces}")


def _refuse_large(items, in_size: int, model: str) -> None:
    """One line for inputs larger than the model's input (see EPILOG), before any work."""
    from PIL import Image

    from ..pipeline.upscaler import too_large, too_large_for

    large = []
    for item in items:
        try:
            with Image.open(item.path) as im:
                w, h = im.size
        except Exception:  # noqa: BLE001 - unreadable files are reported when they are read
            continue
        if too_large_for(w, h, in_size):
            large.append((item.path, w, h))
    if large:
        path, w, h = large[0]
        more = f" ({len(large) - 1} more input(s) too)" if len(large) > 1 else ""
        raise GleanError(too_large(str(path), w, h, model, in_size, force="--resize",
                                   faces="--faces --model glean_ffhq_16x") + more)


def _inputs(args, tally: "_Tally", say):
    """The images to process (missing inputs counted as failed, earlier outputs left out) and
    where each result goes; ``target(item, image=None)``."""
    from ..pipeline.files import check_outputs, drop_own_outputs, gather_inputs, output_path

    items, problems = gather_inputs(args.inputs, recursive=args.recursive)
    if not items:
        raise GleanError("; ".join(problems))
    tally.failed += problems

    def target(item, image=None, alpha=False, bit_depth=8):
        out_dir = args.output or item.path.parent
        base = item.base if args.output else None
        if image is not None:
            alpha, bit_depth = image.alpha is not None, image.bit_depth
        return output_path(item.path, out_dir, suffix=args.suffix, ext=args.ext, base=base,
                           alpha=alpha, bit_depth=bit_depth)

    items, earlier = drop_own_outputs(items, lambda i: {target(i), target(i, alpha=True, bit_depth=16)})
    if earlier:
        say(f"note: left out {len(earlier)} earlier output(s) of this command among the inputs "
            f"(e.g. {earlier[0].path}); their inputs are skipped or, with --overwrite, redone")
    check_outputs([i.path for i in items], [target(i) for i in items])
    return items, target


def run(args: argparse.Namespace) -> int:
    from ..pipeline.files import shard
    from ..pipeline.upscaler import Upscaler, describe

    if args.batch_size < 1:
        raise GleanError("--batch-size must be at least 1")
    if args.scale is not None and args.scale < 1:
        raise GleanError("--scale must be at least 1")
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    tally = _Tally(f"[rank {rank}/{world}] " if world > 1 else "", args.overwrite)
    say = functools.partial(print, file=sys.stderr)
    source, entry = _choose_model(args, lambda msg: say(tally.tag + msg) if rank == 0 else None)
    _check_face_model(args, entry)

    def build() -> Upscaler:
        return Upscaler(source, device=_device(args.device, world), precision=args.precision,
                        resize="any" if args.resize else "exact" if args.no_resize else "up",
                        download=args.download, backend=args.backend, face_model=args.face_model_ok or None)

    upscaler = None if entry is not None else build()  # a file's sizes are known once it is read
    in_size, model_scale = (entry.in_size, entry.scale) if entry else (upscaler.in_size, upscaler.scale)
    scale = args.scale if args.faces and args.scale else model_scale
    if args.suffix is None:
        args.suffix = f"_x{scale}"
    items, target = _inputs(args, tally, say)
    if not (args.faces or args.resize or args.no_resize):
        _refuse_large(items, in_size, describe(entry) if entry else os.path.basename(source))
    upscaler = upscaler or build()
    if upscaler.precision_reason and rank == 0:
        say(f"{tally.tag}note: precision {upscaler.precision_reason}")
    mine = shard(items, rank, world)
    if args.faces:
        return _run_faces(args, upscaler, mine, target, tally, scale)
    return _run_plain(args, upscaler, mine, target, tally)


def _device(device: str, world: int) -> str:
    """Under torchrun, ``auto``/``cuda`` means this process's GPU."""
    if world > 1 and device in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            return f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"
    return device


def _run_plain(args, upscaler, items, target, tally: "_Tally") -> int:
    """Images through the model, ``--batch-size`` at a time; bad files reported, the rest go on."""
    from pathlib import Path

    from tqdm import tqdm

    from ..pipeline.images import load_image

    told = set()
    start = time.perf_counter()
    bar = tqdm(total=len(items), unit="img", disable=args.quiet or None, file=sys.stderr,
               desc=f"{tally.tag}upscaling")
    say = functools.partial(tqdm.write, file=sys.stderr)  # above the progress bar
    batch: list = []
    for item in items:
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
            _flush(upscaler, batch, tally, args.overwrite, bar)
    _flush(upscaler, batch, tally, args.overwrite, bar)
    bar.close()
    elapsed = time.perf_counter() - start
    rate = tally.done / elapsed if elapsed > 0 else 0.0
    return tally.summary(f"{elapsed:.1f} s ({rate:.2f} images/s) on {upscaler.device} {upscaler.precision}"
                         + (f"; outputs in {Path(args.output)}" if args.output else ""))


def _flush(upscaler, batch: list, tally: "_Tally", overwrite: bool, bar) -> None:
    """Run and save one batch of (item, output path, Prepared); empties ``batch``."""
    if not batch:
        return
    try:
        results = upscaler.upscale_prepared([b[2] for b in batch])
    except Exception as exc:  # noqa: BLE001 - report and keep going with the next batch
        tally.failed += [f"{item.path}: {exc}" for item, _, _ in batch]
        results = []
    for (item, out, _), res in zip(batch, results):
        try:
            _save_like(out, res.rgb, res.alpha, res, overwrite)
            tally.done += 1
        except GleanError as exc:
            tally.failed.append(str(exc))
    bar.update(len(batch))
    batch.clear()


def _run_faces(args, upscaler, items, target, tally: "_Tally", scale: int) -> int:
    """Whole photos: faces through the face model, the rest bicubic (Upscaler.upscale_photo)."""
    from ..pipeline.face_detect import LANDMARK_NOTES
    from ..pipeline.faces import draw_faces, save_face_crops
    from ..pipeline.images import load_image, save_image

    options = dict(only=args.only, min_face=args.min_face, landmarks=args.face_landmarks,
                   keep_crops=bool(args.save_crops))
    say = functools.partial(print, file=sys.stderr)
    say(f"{tally.tag}note: {LANDMARK_NOTES[args.face_landmarks]}")
    for item in items:
        try:
            image = load_image(item.path)
            out = target(item, image)
            if tally.exists(item.path, out, say):
                continue
            result = upscaler.upscale_photo(image, scale, **options)
            res = result.loaded
            _save_like(out, res.rgb, res.alpha, res, args.overwrite)
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
