"""``gleansr verify``: check this installation against the upstream parity fixture.

Regenerates the fixture checkpoint (deterministic weights, MMEditing release layout) into a
cache folder, loads it the way ``--weights`` does (architecture read off the file), runs it in
float64 and float32 through the reference ops, the fast ops and the inference snapshot that
``upscale``/``eval``/``demo`` run, and compares with the outputs upstream MMEditing produced.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

NAME = "verify"
HELP = "check the models against the upstream MMEditing parity fixture (offline)"
# (label, max |diff| allowed) per compute type, against upstream's output in that type
TOLERANCES = {"float64": 1e-9, "float32": 2e-4}


def _cache_default() -> Path:
    """$GLEANSR_HOME/verify, else the user's cache folder (XDG), never the current directory."""
    if os.environ.get("GLEANSR_HOME"):
        return Path(os.environ["GLEANSR_HOME"]) / "verify"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gleansr" / "verify"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fixture", type=Path, default=None,
                   help="the fixture folder (default: $GLEANSR_SHARED/reference/fixture, else shared/ beside the "
                        "gleansr checkout or the repository it was cloned from, else ../shared)")
    p.add_argument("--cache", type=Path, default=None,
                   help="where the regenerated 216 MB checkpoint is kept (default: ~/.cache/gleansr/verify, "
                        "or $GLEANSR_HOME/verify)")


def _checkpoint(fixture: Path, cache: Path) -> Path:
    """The fixture checkpoint, regenerated into ``cache`` once (atomically)."""
    ckpt = cache / "glean_fixture.pth"
    if ckpt.is_file():
        print(f"using the fixture checkpoint {ckpt}")
        return ckpt
    cache.mkdir(parents=True, exist_ok=True)
    print(f"regenerating the fixture checkpoint into {ckpt} (216 MB, kept for the next run) ...")
    tmp = ckpt.with_suffix(f".{os.getpid()}.tmp")
    try:
        subprocess.run([sys.executable, str(fixture / "make_fixture_checkpoint.py"), "--out", str(tmp)],
                       check=True, stdout=subprocess.DEVNULL)
        os.replace(tmp, ckpt)
    finally:
        tmp.unlink(missing_ok=True)
    return ckpt


def _checks(model, ref: dict) -> list[tuple[str, float, float]]:
    """(name, max |diff|, tolerance) for each path and compute type."""
    import torch

    from ..inference import FastGLEAN, default_settings

    x = ref["input"]
    checks = []
    with torch.no_grad():
        for dtype, key in ((torch.float64, "output_float64"), (torch.float32, "output_float32")):
            label = str(dtype).removeprefix("torch.")
            model.to(dtype)
            for impl in ("ref", "fast"):
                y = model.set_impl(impl)(x.to(dtype))
                checks.append((f"{label} {impl + ' ops':9s}", (y - ref[key]).abs().max().item(), TOLERANCES[label]))
            snapshot = FastGLEAN(model.set_impl("auto"), dtype, "cpu", **default_settings("cpu", dtype))
            y = snapshot(x)
            checks.append((f"{label} snapshot ", (y - ref[key]).abs().max().item(), TOLERANCES[label]))
    return checks


def run(args: argparse.Namespace) -> int:
    import torch

    from ..errors import GleanError
    from ..loading import load_glean
    from ..parity import FIXTURE, FIXTURE_SCRIPT, find_fixture, missing_fixture_message, shared_candidates

    fixture = args.fixture or find_fixture()
    if fixture is None or not (fixture / FIXTURE_SCRIPT).is_file():
        looked = [args.fixture] if args.fixture else [c / FIXTURE for c in shared_candidates()]
        raise GleanError(missing_fixture_message(looked))
    ckpt = _checkpoint(fixture, args.cache or _cache_default())
    ref = torch.load(fixture / "glean_fixture_ref.pt", weights_only=True)
    model = load_glean(ckpt)
    print(f"loaded {ckpt} -> GLEAN {model.in_size} -> {model.out_size}, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters")
    ok = True
    for name, err, tol in _checks(model, ref):
        passed = err <= tol
        ok &= passed
        print(f"  {name} vs upstream: max |diff| = {err:.3e}  (tolerance {tol:.0e})  {'OK' if passed else 'FAIL'}")
    print("parity: OK (reference ops, fast ops and the inference snapshot that upscale runs)" if ok
          else "parity: FAILED")
    return 0 if ok else 1
