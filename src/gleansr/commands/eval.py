"""``gleansr eval``: PSNR / SSIM / MAE as MMEditing reports them, per image and averaged.

HR images are downscaled the reference way (MATLAB-style bicubic, uint8 rounding) unless
pre-made LR images are given; SR outputs go through the restorer's clamp-and-round; metrics
are computed on RGB uint8 with ``crop_border``. A bicubic-upscaling row is the baseline.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from pathlib import Path

NAME = "eval"
HELP = "evaluate a model on HR images (PSNR, SSIM, MAE; optional LPIPS/FID) with MMEditing's definitions"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("hr", metavar="HR", nargs="+", help="HR images, folders or globs (out_size x out_size)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", metavar="PRESET")
    src.add_argument("--weights", metavar="PATH")
    p.add_argument("--lr", metavar="LR_DIR", help="pre-made LR images, matched by file name stem")
    p.add_argument("-r", "--recursive", action="store_true")
    p.add_argument("--crop-border", type=int, default=0)
    p.add_argument("--csv", metavar="PATH", help="write per-image figures here")
    p.add_argument("--save-sr", metavar="DIR", help="also write the SR images")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lpips", nargs=3, metavar=("alex|vgg", "BACKBONE", "LIN"),
                   help="LPIPS with user-supplied torchvision backbone and lpips linear-layer weights")
    p.add_argument("--fid", metavar="INCEPTION", help="FID with user-supplied pt_inception weights")
    p.add_argument("--download", action="store_true")


def _lr_for(hr_path: Path, lr_dir: Path | None, hr, scale: int):
    import numpy as np

    from ..data.imresize import imresize
    from ..errors import GleanError
    from ..pipeline.images import load_image

    if lr_dir is None:
        return imresize(hr, scale=1 / scale)
    matches = sorted(p for p in lr_dir.rglob(hr_path.stem + ".*") if p.is_file())
    if not matches:
        raise GleanError(f"no LR image for {hr_path.name} in {lr_dir}")
    lr = np.rint(load_image(matches[0]).rgb * 255).astype(np.uint8)
    if lr.shape[0] * scale != hr.shape[0] or lr.shape[1] * scale != hr.shape[1]:
        raise GleanError(f"{matches[0]} is {lr.shape[1]}x{lr.shape[0]}, expected HR/{scale}")
    return lr


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..atomic import atomic_write_bytes
    from ..data.convert import uint8_to_tensor
    from ..data.imresize import imresize
    from ..errors import GleanError
    from ..metrics import mae, psnr, ssim
    from ..pipeline.files import collect_inputs
    from ..pipeline.images import load_image, save_image
    from ..pipeline.upscaler import Upscaler

    up = Upscaler(args.weights or args.model, device=args.device, precision=args.precision, download=args.download)
    size, scale = up.out_size, up.scale
    items = collect_inputs(args.hr, recursive=args.recursive)
    lr_dir = Path(args.lr) if args.lr else None
    lpips = fid_net = None
    if args.lpips:
        from ..perceptual_metrics import LPIPS

        lpips = LPIPS(args.lpips[0], args.lpips[1], args.lpips[2]).eval()
    if args.fid:
        from ..perceptual_metrics import InceptionV3FID

        fid_net = InceptionV3FID(args.fid).eval()
    rows, feats = [], {"hr": [], "sr": [], "bicubic": []}
    for start in range(0, len(items), args.batch_size):
        chunk = items[start:start + args.batch_size]
        hrs, lrs = [], []
        for item in chunk:
            hr = np.rint(load_image(item.path).rgb * 255).astype(np.uint8)
            if hr.shape[:2] != (size, size):
                raise GleanError(f"{item.path} is {hr.shape[1]}x{hr.shape[0]}; this model's HR size is {size}x{size}")
            hrs.append(hr)
            lrs.append(_lr_for(item.path, lr_dir, hr, scale))
        with torch.no_grad():
            srs = up.sr_uint8(np.stack(lrs))
        for item, hr, lr, sr in zip(chunk, hrs, lrs, srs):
            bic = imresize(lr, output_shape=(size, size))
            row = {"image": item.path.name}
            for tag, img in (("sr", sr), ("bicubic", bic)):
                row[f"{tag}_psnr"] = psnr(img, hr, args.crop_border)
                row[f"{tag}_ssim"] = ssim(img, hr, args.crop_border)
                row[f"{tag}_mae"] = mae(img, hr, args.crop_border)
                if lpips is not None:
                    with torch.no_grad():
                        row[f"{tag}_lpips"] = float(lpips(uint8_to_tensor(img)[None], uint8_to_tensor(hr)[None]).item())
            if fid_net is not None:
                with torch.no_grad():
                    for tag, img in (("hr", hr), ("sr", sr), ("bicubic", bic)):
                        feats[tag].append(fid_net(uint8_to_tensor(img)[None]).numpy())
            if args.save_sr:
                save_image(Path(args.save_sr) / f"{item.path.stem}.png", sr.astype(np.float32) / 255)
            rows.append(row)
    keys = [k for k in rows[0] if k != "image"]
    mean = {k: float(np.mean([r[k] for r in rows if math.isfinite(r[k])] or [math.inf])) for k in keys}
    if args.csv:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["image", *keys])
        w.writeheader()
        w.writerows(rows)
        w.writerow({"image": "MEAN", **mean})
        atomic_write_bytes(args.csv, buf.getvalue().encode(), overwrite=True)
    metrics = sorted({k.split("_", 1)[1] for k in keys}, key=["psnr", "ssim", "mae", "lpips"].index)
    print(f"{len(rows)} images, x{scale}, crop_border {args.crop_border}")
    print("method   " + "".join(f"{m.upper():>10}" for m in metrics) + ("       FID" if fid_net else ""))
    from ..perceptual_metrics import fid_from_features

    for tag, label in (("bicubic", "bicubic"), ("sr", "GLEAN")):
        line = f"{label:8s} " + "".join(f"{mean[f'{tag}_{m}']:>10.4f}" for m in metrics)
        if fid_net is not None:
            line += f"{fid_from_features(np.concatenate(feats[tag]), np.concatenate(feats['hr'])):>10.3f}"
        print(line)
    if args.csv:
        print(f"per-image figures: {args.csv}", file=sys.stderr)
    return 0
