"""``gleansr models``: the model zoo, with what is on this machine."""
from __future__ import annotations

import argparse

NAME = "models"
HELP = "list the available models and whether their weights are present"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--paths", action="store_true", help="also print where each weights file is expected")


def run(args: argparse.Namespace) -> int:
    from ..hub import cache_dir
    from ..presets import PRESETS
    from ..zoo_local import bundled_models

    rows = [("name", "factor", "in -> out", "PSNR", "test set", "weights")]
    for p in PRESETS.values():
        present = (cache_dir() / p.filename).is_file()
        rows.append((p.name, f"x{p.scale}", f"{p.config.in_size} -> {p.config.out_size}", f"{p.psnr:.2f}",
                     p.test_set, "present" if present else "not downloaded"))
    for m in bundled_models():
        rows.append((m.name, f"x{m.scale}", f"{m.config.in_size} -> {m.config.out_size}",
                     "-" if m.psnr is None else f"{m.psnr:.2f}", m.test_set,
                     "bundled" if m.is_present() else "not built (scripts/train_glyph_model.sh)"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"\nweights cache: {cache_dir()}  (set GLEANSR_HOME to move it)")
    if args.paths:
        for p in PRESETS.values():
            print(f"{p.name}: {cache_dir() / p.filename}  <- {p.url}")
        for m in bundled_models():
            print(f"{m.name}: {m.path}  (bundled)")
    return 0
