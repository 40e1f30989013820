"""`gleansr upscale` end to end over a folder of glyphs: source trees side by side, interleaved.

    python benchmarks/bench_upscale_cli.py --tree before=/tmp/old/src --tree after=src --images 256 --rounds 3

Each round runs every tree once (a fresh process: start-up, model load, decode, model, encode,
atomic writes), in turn, so a load change on a shared machine hits all of them alike. Reports the
median and best images/s over rounds (the rate the command itself prints, which excludes process
start-up) and the median wall time per run (which includes it). The inputs are the bundled glyph
samples, repeated under new names to reach ``--images``.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "gleansr" / "assets" / "samples" / "lr"
RATE = re.compile(r"\(([\d.]+) images/s\)")


def make_inputs(folder: Path, count: int) -> None:
    samples = sorted(SAMPLES.glob("*.png"))
    folder.mkdir(parents=True)
    for i in range(count):
        shutil.copyfile(samples[i % len(samples)], folder / f"g{i:05d}.png")


def run_once(src: Path, inputs: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    """(images/s the command printed, wall seconds) for one fresh run of ``src``'s gleansr."""
    env = {**os.environ, "PYTHONPATH": str(src.resolve())}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "gleansr.cli", "upscale", str(inputs), "-o", str(out), "--quiet",
                           "--overwrite", "--device", "cpu", *extra], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{src}: exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    rates = RATE.findall(done.stderr)
    return float(rates[-1]), wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", action="append", required=True, metavar="NAME=SRC",
                    help="a gleansr source tree (its src/ folder), named; give two or more")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--precision", default="fp32", help="passed to --precision (default fp32: exact)")
    args = ap.parse_args()
    trees = dict(spec.split("=", 1) for spec in args.tree)
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "in"
        make_inputs(inputs, args.images)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, src in trees.items():
                results[name].append(run_once(Path(src), inputs, Path(tmp) / f"out_{name}",
                                              ["--precision", args.precision]))
    print(f"{args.images} glyph images, {args.rounds} rounds, precision {args.precision}")
    print(f"{'tree':<12}{'median img/s':>14}{'best img/s':>12}{'median wall s':>15}")
    for name, rows in results.items():
        rates, walls = [r for r, _ in rows], [w for _, w in rows]
        print(f"{name:<12}{statistics.median(rates):>14.2f}{max(rates):>12.2f}{statistics.median(walls):>15.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
