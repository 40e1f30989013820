"""``gleansr upscale``: super-resolve files, folders and globs with a GLEAN model."""
from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from ..errors import GleanError
from ..pipeline.batch import DEFAULT_BATCH_SIZE
from ..pipeline.policy import MAX_RESIZE_PIXELS
from ..precision import CHOICES
from ..ray import cli as ray_cli

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
    src.add_argument("--model", metavar="NAME", help=f"a model from `gleansr models` (default: {_default_help()})")
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
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="images per model run "
                   f"(default: {DEFAULT_BATCH_SIZE})")
    p.add_argument("--max-resize-pixels", type=int, default=MAX_RESIZE_PIXELS, metavar="N",
                   help=f"with --resize: the largest centre square shrunk, in pixels (default: {MAX_RESIZE_PIXELS:,}, "
                        "2048x2048)")
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
    ray_cli.add_arguments(p)


def _default_help() -> str:
    """The default model as the help names it, from the zoo (the one default)."""
    from .. import zoo

    try:
        entry = zoo.default_model()
    except GleanError:
        return "none installed"
    return f"the bundled {entry.name}, for {entry.input_kind}"


def _source(args) -> tuple[object, object]:
    """(what to load, its zoo entry or None); zoo names checked ("did you mean") before any model
    is built, the default model named once with its domain."""
    from .. import zoo

    if args.backend == "onnx":
        if not args.weights:
            raise GleanError("--backend onnx runs an exported model: add --weights MODEL.onnx "
                             "(`gleansr export MODEL -o MODEL.onnx` writes one)")
        from ..onnx.runtime import OnnxRunner

        return OnnxRunner(args.weights), None
    if args.weights:
        if Path(args.weights).suffix.lower() == ".onnx":
            raise GleanError(f"{args.weights} is an ONNX export: run it with --backend onnx")
        return args.weights, None
    entry = zoo.get_entry(args.model) if args.model else zoo.default_model()
    if not args.model:
        _say(zoo.default_model_note(entry))
    return entry.name, entry


def _check_faces(args, entry) -> None:
    """--faces takes face models only (the policy's rule), asked before the model is loaded."""
    from ..pipeline.policy import face_model_verdict, model_facts

    if args.face_model_ok and not (args.faces and args.weights):
        raise GleanError("--face-model-ok only applies to --faces with --weights")
    if args.faces:
        facts = model_facts(entry, name=str(args.weights), face_model=True if args.face_model_ok else None)
        face_model_verdict(facts).refuse()
        from ..pipeline.face_detect import check_installed  # imports torch: only with --faces

        check_installed()


def _say(message: str) -> None:
    """A line on stderr, above the progress bar when one is shown."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from ..hardware import resolve_device, torchrun_place
    from ..pipeline.batch import FaceJob, Naming, upscale_files
    from ..pipeline.upscaler import Upscaler

    if args.batch_size < 1:
        raise GleanError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.scale is not None and args.scale < 1:
        raise GleanError(f"--scale must be at least 1, got {args.scale}")
    if args.max_resize_pixels < 1:
        raise GleanError(f"--max-resize-pixels must be at least 1, got {args.max_resize_pixels}")
    rank, local_rank, world = torchrun_place()
    tag = f"[rank {rank}/{world}] " if world > 1 else ""
    say = (lambda message: _say(tag + message)) if rank == 0 else (lambda message: None)
    source, entry = _source(args)
    _check_faces(args, entry)
    device = args.device if args.backend == "onnx" else resolve_device(args.device, local_rank=local_rank)
    options = dict(precision=args.precision, resize="any" if args.resize else "exact" if args.no_resize else "up",
                   download=args.download, face_model=args.face_model_ok or None,
                   max_resize_pixels=args.max_resize_pixels)
    upscaler = Upscaler(source, device=str(device), **options)
    if upscaler.precision_reason:
        say(f"note: precision {upscaler.precision_reason}")
    faces = None
    if args.faces:
        from ..pipeline.face_detect import LANDMARK_NOTES

        say(f"note: {LANDMARK_NOTES[args.face_landmarks]}")
        faces = FaceJob(args.scale or upscaler.scale, dict(only=args.only, min_face=args.min_face,
                        landmarks=args.face_landmarks, keep_crops=bool(args.save_crops)),
                        args.draw_boxes, Path(args.save_crops) if args.save_crops else None)
    scale = faces.scale if faces else upscaler.scale
    naming = Naming(args.suffix if args.suffix is not None else f"_x{scale}",
                    Path(args.output) if args.output else None, args.ext)
    if args.engine == "ray":  # every actor builds the same Upscaler, on its own device
        return ray_cli.run(args, str(source), {**options, "device": args.device}, naming, faces)
    printer = _Printer(tag, upscaler.in_size, quiet=args.quiet)
    report = upscale_files(args.inputs, upscaler, naming, recursive=args.recursive, overwrite=args.overwrite,
                           batch_size=args.batch_size, shard_of=(rank, world), faces=faces,
                           on_plan=printer.planned, on_item=printer.item)
    printer.close()
    where = f"; outputs in {args.output}" if args.output else ""
    what = f"x{scale}, faces by {upscaler.in_size}->{upscaler.out_size} model" if faces else \
        f"on {upscaler.device} {upscaler.precision}"
    if report.stopped:
        print(f"{tag}stopped: {report.stopped}", file=sys.stderr)
    print(f"{tag}{report.summary()} {what}{where}", file=sys.stderr)
    return report.exit_code


class _Printer:
    """What the command shows while the batch runs: a progress bar, each refusal and failure as
    its sentence, each kind of adjustment once."""

    def __init__(self, tag: str, in_size: int, quiet: bool):
        self.tag, self.in_size, self.quiet = tag, in_size, quiet
        self.told: set[str] = set()
        self.bar = None

    def planned(self, plan) -> None:
        from tqdm import tqdm

        for note in plan.notes:
            _say(f"{self.tag}note: {note}")
        self.bar = tqdm(total=len(plan.items) + len(plan.problems), unit="img", disable=self.quiet or None,
                        file=sys.stderr, desc=f"{self.tag}upscaling")

    def item(self, report) -> None:
        from ..pipeline.policy import Status

        if report.status is Status.SKIPPED:
            _say(f"{self.tag}skip {report.source}: {report.message}")
        elif report.status is not Status.DONE:
            _say(f"{self.tag}{report.status.value}: {report.message}")
        for kind, sentence in report.notes:
            if kind == "faces":
                _say(f"{self.tag}{Path(report.source).name}: {sentence}")
            elif kind not in self.told:  # each kind of adjustment once, not per image
                self.told.add(kind)
                _say(f"{self.tag}note: {Path(report.source).name}: {sentence} (the model takes "
                     f"{self.in_size}x{self.in_size}; further inputs are treated the same way)")
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
