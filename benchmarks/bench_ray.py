#!/usr/bin/env python3
"""Local ``gleansr upscale`` against ``--engine ray`` with 1 and 2 workers, on one folder of glyphs.

    python benchmarks/bench_ray.py --images 300 --workers 1 2 --json ray.json

Each variant is the command a user runs (a fresh process; Ray's local instance started and stopped
by it), timed twice: on one image (the start-up: imports, model, Ray's instance and actors) and on
the whole folder. ``per image`` is (whole - one) / (images - 1), the steady cost; ``overhead`` is
that minus the local command's. With ``--gpu-ms`` (a GPU's model time per image, measured
elsewhere), the table ends with the images/s that the overhead predicts for N GPU workers, labelled
as a prediction: N / (gpu_ms + overhead_ms).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "gleansr" / "assets" / "samples" / "lr"


def make_glyphs(folder: Path, count: int) -> Path:
    """``count`` glyph images: the bundled samples, each shifted sideways by another amount."""
    folder.mkdir(parents=True, exist_ok=True)
    samples = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(SAMPLES.glob("*.png"))]
    for i in range(count):
        pixels = np.roll(samples[i % len(samples)], i // len(samples), axis=1)
        Image.fromarray(pixels).save(folder / f"glyph_{i:05d}.png")
    return folder


def timed(command: list[str], timeout: float) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(name: str, extra: list[str], folder: Path, one: Path, precision: str, timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as out:
        base = [sys.executable, "-m", "gleansr.cli", "upscale", "--device", "cpu", "--precision", precision,
                "--quiet", *extra]
        startup = timed([*base, str(one), "-o", str(Path(out) / "one")], timeout)
        whole = timed([*base, str(folder), "-o", str(Path(out) / "all")], timeout)
    count = len(list(folder.glob("*.png")))
    return {"variant": name, "images": count, "wall_s": whole, "images_per_s": count / whole, "startup_s": startup,
            "per_image_ms": (whole - startup) / (count - 1) * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--gpu-ms", type=float, default=None, help="a GPU's model time per image, for the prediction")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    if args.images < 2:
        parser.error("--images must be at least 2")
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_glyphs(Path(tmp) / "glyphs", args.images)
        one = make_glyphs(Path(tmp) / "one", 1)
        rows = [measure("local", [], folder, one, args.precision, args.timeout)]
        for workers in args.workers:
            rows.append(measure(f"ray x{workers}", ["--engine", "ray", "--ray-workers", str(workers)], folder, one,
                                args.precision, args.timeout))
    local_ms = rows[0]["per_image_ms"]
    print(f"{os.cpu_count()} CPUs; {args.images} glyph images; precision {args.precision}")
    print("| variant | images/s | start-up s | per image ms | overhead per image ms |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        row["overhead_ms"] = row["per_image_ms"] - local_ms
        print(f"| {row['variant']} | {row['images_per_s']:.2f} | {row['startup_s']:.1f} | {row['per_image_ms']:.1f} | "
              f"{row['overhead_ms']:+.1f} |")
    if args.gpu_ms is not None:
        overhead = max(0.0, min(r["overhead_ms"] for r in rows[1:])) if len(rows) > 1 else 0.0
        for workers in (1, 4, 8):
            rate = workers * 1000 / (args.gpu_ms + overhead)
            print(f"prediction (not measured): {workers} GPU worker(s) at {args.gpu_ms} ms/image + {overhead:.1f} ms "
                  f"Ray overhead -> {rate:.0f} images/s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
