"""``gleansr precision MODEL``: what ``--precision auto`` picks for a model on this machine, and why.

Shows the stored calibration verdict (measuring it when there is none), ``--refresh`` measures it
again. The rules and the measurement live in :mod:`gleansr.precision`.
"""
from __future__ import annotations

import argparse

NAME = "precision"
HELP = "show (and measure, or --refresh) what --precision auto picks for a model on this machine"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a zoo name (see `gleansr models`) or a GLEAN weights file")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--refresh", action="store_true",
                   help="measure again, even over a stored verdict or the zoo's declared figure")
    p.add_argument("--download", action="store_true", help="allow downloading a zoo model's release weights")


def run(args: argparse.Namespace) -> int:
    from ..hardware import resolve_device
    from ..precision import model_choice

    choice, signature = model_choice(args.model, resolve_device(args.device), args.refresh, args.download)
    print(f"{args.model} on {signature}")
    print(f"precision {choice.line}")
    v = choice.verdict
    if v is not None:
        print(f"probes (dB against fp32): {', '.join(f'{x:.1f}' for x in v.psnr_db)}; per probe: fp32 "
              f"{v.fp32_s:.3f} s, {v.candidate} {v.candidate_s:.3f} s ({v.fp32_s / v.candidate_s:.2f}x); "
              f"torch {v.torch}, measured {v.measured_at}")
        print(f"verdict: {choice.path}")
    return 0
