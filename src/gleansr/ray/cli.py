"""``gleansr upscale ... --engine ray``: the flags, and the run once ``upscale`` has checked its own.

``commands/upscale.py`` calls :func:`add_arguments` on its parser and hands over to :func:`run`
with the Upscaler it would build locally (its model and options), the naming and the face job.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("beyond one machine (needs: pip install 'gleansr[ray]')")
    g.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local (default): this process; ray: Ray Data actors, one model each, here or on a cluster")
    g.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="a Ray cluster to join ('auto', or HOST:PORT of `ray start --head`); default: a local "
                        "instance on 127.0.0.1, stopped at the end")
    g.add_argument("--ray-workers", type=int, default=1, metavar="N", help="actors, each holding one model")
    g.add_argument("--ray-gpus-per-worker", type=float, default=0.0, metavar="G", help="1 on GPU clusters (default 0)")
    g.add_argument("--ray-cpus-per-worker", type=int, default=None, metavar="C",
                   help="default: this machine's cores shared out (local), 1 (cluster)")
    g.add_argument("--ray-column", default="path", metavar="NAME",
                   help="the column of image paths in a .parquet/.csv input (default: path)")
    g.add_argument("--manifest", metavar="FILE", default=None,
                   help="the run's manifest, .jsonl or .parquet (default: OUTDIR/gleansr-manifest.jsonl, or "
                        "./gleansr-manifest.jsonl without -o)")


def run(args: argparse.Namespace, model: str, upscaler_options: dict[str, Any], naming: Any, faces: Any) -> int:
    """Run ``args.inputs`` on Ray; prints the summary line; returns the exit code (as local)."""
    from ..errors import GleanError
    from .engine import RayOptions, upscale_dataset

    if args.backend != "torch":
        raise GleanError("--engine ray runs the PyTorch backend; drop --backend onnx")
    options = RayOptions(args.ray_workers, args.ray_gpus_per_worker, args.ray_cpus_per_worker, args.ray_address,
                         args.quiet)
    manifest = args.manifest or str(Path(args.output or ".") / "gleansr-manifest.jsonl")
    done = upscale_dataset(args.inputs, model, naming, manifest=manifest, upscaler_options=upscaler_options,
                           options=options, recursive=args.recursive, overwrite=args.overwrite,
                           batch_size=args.batch_size, faces=faces, column=args.ray_column)
    for note in done.notes:
        print(f"note: {note}", file=sys.stderr)
    for item in done.report.items:
        if item.status.value not in ("done", "skipped"):
            print(f"{item.status.value}: {item.message}", file=sys.stderr)
    print(f"{done.report.summary()} on Ray ({options.workers} worker(s)); manifest {done.manifest}", file=sys.stderr)
    return done.report.exit_code
