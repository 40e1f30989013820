"""``gleansr verify``: check this installation against the upstream parity fixture.

Regenerates the fixture checkpoint (deterministic weights, MMEditing release layout),
loads it the way ``--weights`` does (architecture read off the file), runs it in float64
and float32 through the reference and the fast path, and compares with the outputs that
the upstream MMEditing code produced.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

NAME = "verify"
HELP = "check the models against the upstream MMEditing parity fixture (offline)"


def _default_fixture() -> Path:
    env = os.environ.get("GLEANSR_SHARED")
    return Path(env) / "reference" / "fixture" if env else Path("..") / "shared" / "reference" / "fixture"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fixture", type=Path, default=None, help="the fixture folder (default: ../shared/reference/fixture)")
    p.add_argument("--cache", type=Path, default=Path("build") / "fixture", help="where the regenerated checkpoint goes")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..loading import load_glean
    from ..errors import GleanError

    fixture = args.fixture or _default_fixture()
    if not (fixture / "make_fixture_checkpoint.py").is_file():
        raise GleanError(f"no parity fixture at {fixture} (pass --fixture DIR or set GLEANSR_SHARED)")
    ckpt = args.cache / "glean_fixture.pth"
    if not ckpt.is_file():
        args.cache.mkdir(parents=True, exist_ok=True)
        print(f"regenerating the fixture checkpoint into {ckpt} ...", file=sys.stderr)
        tmp = ckpt.with_suffix(".tmp")
        subprocess.run([sys.executable, str(fixture / "make_fixture_checkpoint.py"), "--out", str(tmp)],
                       check=True, stdout=subprocess.DEVNULL)
        os.replace(tmp, ckpt)
    ref = torch.load(fixture / "glean_fixture_ref.pt", weights_only=True)
    model = load_glean(ckpt)
    print(f"loaded {ckpt} -> GLEAN {model.in_size} -> {model.out_size}, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters")
    checks = []
    with torch.no_grad():
        for impl in ("ref", "fast"):
            model.set_impl(impl)
            y64 = model.double()(ref["input"].double())
            y32 = model.float()(ref["input"])
            checks.append((f"float64 {impl:4s} vs upstream float64", (y64 - ref["output_float64"]).abs().max().item(), 1e-9))
            checks.append((f"float32 {impl:4s} vs upstream float32", (y32 - ref["output_float32"]).abs().max().item(), 2e-4))
    ok = True
    for name, err, tol in checks:
        passed = err <= tol
        ok &= passed
        print(f"  {name}: max |diff| = {err:.3e}  (tolerance {tol:.0e})  {'OK' if passed else 'FAIL'}")
    print("parity: OK" if ok else "parity: FAILED")
    return 0 if ok else 1
