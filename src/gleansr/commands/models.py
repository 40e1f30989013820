"""``gleansr models``: the model zoo, with each model's domain and sizes and whether its weights are here."""
from __future__ import annotations

import argparse

NAME = "models"
HELP = "list the models: what each restores (domain, input size) and whether its weights are present"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--paths", action="store_true", help="also print where each weights file is expected")
    p.add_argument("--verify", action="store_true",
                   help="hash the downloaded weights not verified yet (once per file; the result is kept)")


def run(args: argparse.Namespace) -> int:
    from ..hub import cache_dir
    from ..zoo import ASSETS, ZOO, weights_status

    rows = [("name", "domain", "input", "factor", "in -> out", "PSNR", "weights")]
    for e in ZOO.values():
        rows.append((e.name, e.domain, e.input_kind, f"x{e.scale}", f"{e.in_size} -> {e.out_size}",
                     "-" if e.psnr is None else f"{e.psnr:.2f}", weights_status(e, args.verify)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"\nweights cache: {cache_dir()}  (set GLEANSR_HOME to move it)")
    if args.paths:
        for e in ZOO.values():
            where = f"{ASSETS / e.weights.filename}  (bundled)" if e.weights.bundled else (
                f"{cache_dir() / e.weights.filename}  <- {e.weights.url}")
            print(f"{e.name}: {where}")
    return 0
