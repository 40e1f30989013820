#!/usr/bin/env python3
"""Bank training speed (iterations/s) of two source trees, back to back on the same machine.

    git worktree add /tmp/before <commit>
    python benchmarks/bench_bank_train.py --data DATA/train --tree before=/tmp/before/src --tree after=src

Each variant runs ``gleansr bank train`` on the glyph bank architecture (the bundled model's) for
``--iters`` iterations and reads the seconds per iteration the run logs itself (``metrics.jsonl``'s
``time``, the mean over a logging window); the first window (start-up, first allocations) is left
out. ``--r1-every 1`` makes every iteration run the R1 double backward (the FIR op's hardest case);
the recipe's default is a lazy R1 every 16 iterations.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from gleansr.zoo import GLYPHS_8X_CONFIG as C


def seconds_per_iteration(src: Path, data: Path, precision: str, r1_every: int, iters: int, window: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, "-m", "gleansr.cli", "bank", "train", "--data", str(data), "--out", out,
                        "--set", "size=128", f"channel_max={C.channel_max}",
                        f"channel_multiplier={C.channel_multiplier}", f"style_channels={C.style_channels}",
                        f"num_mlps={C.num_mlps}", "augment=true", "pl_weight=0", f"r1_every={r1_every}",
                        "--batch-size", "8", "--max-iters", str(iters), "--log-every", str(window),
                        "--save-every", str(iters), "--num-workers", "1", "--precision", precision, "--quiet"],
                       check=True, env={**os.environ, "PYTHONPATH": str(src)}, stdout=subprocess.DEVNULL)
        rows = [json.loads(line) for line in Path(out, "metrics.jsonl").read_text().splitlines()]
    times = sorted(r["time"] for r in rows[1:])
    return times[len(times) // 2]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="a folder of 128x128 images")
    p.add_argument("--tree", action="append", required=True, metavar="NAME=SRC", help="a source tree's src/")
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--r1-every", type=int, nargs="+", default=[16, 1])
    p.add_argument("--iters", type=int, default=48)
    p.add_argument("--window", type=int, default=8)
    args = p.parse_args()
    trees = dict(t.split("=", 1) for t in args.tree)
    print("| precision | R1 every | " + " | ".join(f"{n} s/it" for n in trees) + " | speed-up |")
    print("| --- | ---: | " + " | ".join("---:" for _ in trees) + " | ---: |")
    for precision in args.precision:
        for r1_every in args.r1_every:
            s = [seconds_per_iteration(Path(src).resolve(), args.data, precision, r1_every, args.iters, args.window)
                 for src in trees.values()]
            print(f"| {precision} | {r1_every} | " + " | ".join(f"{v:.3f}" for v in s) + f" | {s[0] / s[-1]:.2f}x |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
