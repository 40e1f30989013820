"""``gleansr eval``: PSNR / SSIM / MAE as MMEditing reports them, per image and averaged.

Argument parsing and printing only; the loop is :func:`gleansr.evaluate.evaluate` (HR
downscaled the reference way unless pre-made LR images are given, the restorer's clamp-and-round,
metrics on RGB uint8 with ``crop_border``, a bicubic row as the baseline, optional LPIPS/FID).
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from ..precision import CHOICES

NAME = "eval"
HELP = "evaluate a model on HR images (PSNR, SSIM, MAE; optional LPIPS/FID) with MMEditing's definitions"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("hr", metavar="HR", nargs="+", help="HR images, folders or globs (out_size x out_size)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="NAME", help="a zoo model (default: the bundled one, as upscale)")
    src.add_argument("--weights", metavar="PATH")
    p.add_argument("--lr", metavar="LR_DIR", help="pre-made LR images, matched by file name stem")
    p.add_argument("-r", "--recursive", action="store_true")
    p.add_argument("--crop-border", type=int, default=0)
    p.add_argument("--csv", metavar="PATH", help="write per-image figures here (replaced if it exists)")
    p.add_argument("--save-sr", metavar="DIR", help="also write the SR images (DIR/<stem>.png)")
    p.add_argument("--overwrite", action="store_true", help="replace SR images already in --save-sr")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fp32", choices=CHOICES,
                   help="fp32 (default: the reference metrics), bf16, fp16, or auto as in upscale")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lpips", nargs=3, metavar=("alex|vgg", "BACKBONE", "LIN"),
                   help="LPIPS v0.1 from a torchvision AlexNet/VGG16 file and the lpips package's lin-layer file")
    p.add_argument("--fid", metavar="INCEPTION", help="FID with pytorch-fid's pt_inception weights file")
    p.add_argument("--download", action="store_true")


def _read_hr(path: Path, up):
    """An HR image, held to the policy's reference size for ``up``'s model."""
    from ..pipeline.images import read_rgb_uint8
    from ..pipeline.policy import reference_verdict

    hr = read_rgb_uint8(path)
    reference_verdict(hr.shape[1], hr.shape[0], up.facts, up.out_size, name=str(path)).refuse()
    return hr


def _read_lr(hr_path: Path, lr_dir: Path, up):
    """The LR image given for ``hr_path`` (same stem), held to the model's exact input size."""
    from ..errors import GleanError
    from ..pipeline.images import read_rgb_uint8
    from ..pipeline.policy import Resize, size_verdict

    matches = sorted(p for p in lr_dir.rglob(hr_path.stem + ".*") if p.is_file())
    if not matches:
        raise GleanError(f"no LR image for {hr_path.name} in {lr_dir}")
    lr = read_rgb_uint8(matches[0])
    verdict = size_verdict(lr.shape[1], lr.shape[0], up.facts, Resize.EXACT, name=str(matches[0]))
    verdict.refuse()
    return lr


def _perceptual(args: argparse.Namespace, device):
    """The LPIPS and FID callables asked for (None otherwise), built before the model."""
    from ..errors import GleanError

    lpips = fid = None
    if args.lpips:
        from ..perceptual_metrics import LPIPSMetric

        if args.lpips[0] not in ("alex", "vgg"):
            raise GleanError(f"--lpips takes alex or vgg as its first value, got {args.lpips[0]!r}")
        lpips = LPIPSMetric(args.lpips[0], args.lpips[1], args.lpips[2], device=device)
    if args.fid:
        from ..perceptual_metrics import FIDFeatures

        fid = FIDFeatures(args.fid, device=device)
    return lpips, fid


def _sr_saver(folder: str | None, items, overwrite: bool):
    """The ``each`` callback writing SR images, after checking none would be replaced unasked."""
    if folder is None:
        return None
    from ..errors import GleanError
    from ..pipeline.images import save_image

    targets = [Path(folder) / f"{item.path.stem}.png" for item in items]
    if len(set(targets)) < len(targets):
        raise GleanError(f"two HR images share a file stem; their SR images would collide in {folder}")
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise GleanError(f"{existing[0]} exists ({len(existing)} of {len(targets)} SR images do); pass --overwrite")
    return lambda result: save_image(targets[result.index], result.sr, overwrite=overwrite)


def _print_report(report, csv_path: str | None) -> None:
    from ..atomic import atomic_write_bytes

    if csv_path:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(report.rows()[0]))
        writer.writeheader()
        writer.writerows(report.rows())
        atomic_write_bytes(csv_path, buf.getvalue().encode(), overwrite=True)
    metrics = report.metrics
    print(f"{len(report.names)} images, x{report.scale}, crop_border {report.crop_border}")
    print("method   " + "".join(f"{m.upper():>10}" for m in metrics) + ("       FID" if report.fid else ""))
    for tag, label in (("bicubic", "bicubic"), ("sr", "GLEAN")):
        line = f"{label:8s} " + "".join(f"{report.mean[f'{tag}_{m}']:>10.4f}" for m in metrics)
        print(line + (f"{report.fid[tag]:>10.3f}" if report.fid else ""))
    if csv_path:
        print(f"per-image figures: {csv_path}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from ..errors import GleanError
    from ..evaluate import evaluate
    from ..pipeline.files import collect_inputs
    from ..hardware import resolve_device
    from ..pipeline.upscaler import Upscaler
    from ..zoo import default_model, default_model_note

    if args.batch_size < 1:
        raise GleanError(f"--batch-size must be at least 1, got {args.batch_size}")
    items = collect_inputs(args.hr, recursive=args.recursive)
    if args.fid and len(items) < 2:
        raise GleanError(f"--fid needs at least 2 HR images, got {len(items)}")
    save = _sr_saver(args.save_sr, items, args.overwrite)
    lpips, fid = _perceptual(args, resolve_device(args.device))
    model = args.weights or args.model
    if model is None:  # the one default of every door, said as upscale says it
        entry = default_model()
        model = entry.name
        print(f"gleansr: {default_model_note(entry)}", file=sys.stderr)
    up = Upscaler(model, device=args.device, precision=args.precision, download=args.download)
    lr_dir = Path(args.lr) if args.lr else None
    report = evaluate(
        up.sr_uint8,
        (_read_hr(item.path, up) for item in items),
        lr_images=None if lr_dir is None else (_read_lr(item.path, lr_dir, up) for item in items),
        scale=up.scale, crop_border=args.crop_border, lpips=lpips, fid=fid,
        names=[item.path.name for item in items], batch_size=args.batch_size, each=save,
    )
    _print_report(report, args.csv)
    return 0
