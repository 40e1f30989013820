"""``gleansr models``: the model zoo in a table that fits 100 columns; each model's details
(what it takes, test set, training data, licence, where its weights are) with ``--long`` or by name."""
from __future__ import annotations

import argparse
import textwrap

NAME = "models"
HELP = "list the models: what each restores (domain, input size) and whether its weights are present"
WIDTH = 100  # the table and the details fit a 100-column terminal


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", metavar="NAME", nargs="*", help="show these models' details")
    p.add_argument("--long", action="store_true", help="every model's details")
    p.add_argument("--paths", action="store_true", help="also print where each weights file is expected")
    p.add_argument("--verify", action="store_true",
                   help="hash the downloaded weights not verified yet (once per file; the result is kept)")


def _where(entry) -> str:
    from ..hub import cache_dir
    from ..zoo import ASSETS

    if entry.weights.bundled:
        return f"{ASSETS / entry.weights.filename} (built by scripts/train_glyph_model.sh)"
    return f"{cache_dir() / entry.weights.filename} (--download fetches it)"


def _details(entry, status: str) -> list[str]:
    """``key: value`` lines of one model, wrapped to :data:`WIDTH`."""
    metrics = "-" if entry.psnr is None else f"PSNR {entry.psnr:.2f} dB" + (
        f", SSIM {entry.ssim:.4f}" if entry.ssim is not None else "") + (
        f" (bicubic {entry.bicubic_psnr:.2f} dB)" if entry.bicubic_psnr is not None else "")
    fields = [("domain", entry.domain), ("input", entry.input_kind),
              ("size", f"x{entry.scale}: {entry.in_size}x{entry.in_size} -> {entry.out_size}x{entry.out_size}"),
              ("face model", "yes (--faces)" if entry.face_model else "no"),
              ("metrics", f"{metrics} on {entry.test_set}"), ("trained on", entry.trained_on),
              ("licence", entry.licence), ("weights", f"{status}: {_where(entry)}")]
    if entry.weights.url:
        fields.append(("url", entry.weights.url))  # one word: the only line that may pass WIDTH
    lines = [entry.name]
    for key, value in fields:
        lines += textwrap.wrap(value, WIDTH, initial_indent=f"  {key + ':':12s}", subsequent_indent=" " * 14,
                               break_on_hyphens=False, break_long_words=False)
    return lines


def run(args: argparse.Namespace) -> int:
    from ..hub import cache_dir
    from ..zoo import ZOO, get_entry, weights_status

    if args.names or args.long:
        entries = [get_entry(name) for name in args.names] if args.names else list(ZOO.values())
        print("\n\n".join("\n".join(_details(e, weights_status(e, args.verify))) for e in entries))
        return 0
    rows = [("name", "domain", "scale", "in -> out", "PSNR", "weights")]
    for e in ZOO.values():
        rows.append((e.name, e.domain, f"x{e.scale}", f"{e.in_size} -> {e.out_size}",
                     "-" if e.psnr is None else f"{e.psnr:.2f}", weights_status(e, args.verify)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print("\ndetails: gleansr models NAME (or --long); missing weights: upscale/eval --download fetches them")
    print(f"weights cache: {cache_dir()}  (set GLEANSR_HOME to move it)")
    if args.paths:
        for e in ZOO.values():
            print(f"{e.name}: {_where(e)}" + (f" <- {e.weights.url}" if e.weights.url else ""))
    return 0
