"""Shared test fixtures: the upstream parity fixture and a tiny GLEAN configuration."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gleansr.parity import find_shared

REPO = Path(__file__).resolve().parents[1]


SHARED = find_shared(REPO)  # the library's rule, as `gleansr verify` looks
FIXTURE_DIR = SHARED / "reference" / "fixture"
MANIFEST_DIR = SHARED / "reference" / "manifests"
CACHE = Path(os.environ.get("GLEANSR_TEST_CACHE", REPO / "build" / "fixture"))

# A GLEAN small enough to build and run in milliseconds, exercising every code path.
TINY_GLEAN = dict(in_size=8, out_size=32, rrdb_channels=8, num_rrdbs=1, style_channels=16,
                  num_mlps=2, channel_max=16)

torch.set_num_threads(min(2, os.cpu_count() or 1))

# Tests leave the user's cache folder alone (weights records, precision verdicts): unless the caller
# names one, the session gets its own, inherited by the CLIs the tests start.
if "GLEANSR_HOME" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["GLEANSR_HOME"] = tempfile.mkdtemp(prefix="gleansr-test-home-")
    atexit.register(shutil.rmtree, os.environ["GLEANSR_HOME"], ignore_errors=True)


def load_script(name: str):
    """A module of the repository's scripts/ folder (they are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    script = importlib.util.module_from_spec(spec)
    sys.modules[name] = script  # dataclasses look their module up while the script runs
    spec.loader.exec_module(script)
    return script


def he_initialised(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """He-initialised random conv weights (in place): activations stay O(1) through deep stacks,
    so every LPIPS layer and the VGG perceptual loss see real signal, not ~1e-11."""
    for key, value in state.items():
        if key.endswith("weight"):
            torch.nn.init.kaiming_normal_(value, nonlinearity="relu")
        else:
            torch.nn.init.normal_(value, std=0.1)
    return state


def _fixture_checkpoint(variant: str) -> Path:
    """Regenerate the fixture checkpoint (deterministic, ~225 MB) into build/, once."""
    if not FIXTURE_DIR.is_dir():
        pytest.fail(f"parity fixture not found at {FIXTURE_DIR}; set GLEANSR_SHARED to the shared/ folder")
    name = "glean_fixture.pth" if variant == "canonical" else f"glean_fixture_{variant}.pth"
    out = CACHE / name
    if not out.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        subprocess.run([sys.executable, str(FIXTURE_DIR / "make_fixture_checkpoint.py"), "--out", str(tmp),
                        "--variant", variant], check=True, capture_output=True)
        os.replace(tmp, out)
    return out


@pytest.fixture(scope="session")
def fixture_ckpt() -> Path:
    return _fixture_checkpoint("canonical")


@pytest.fixture(scope="session")
def fixture_ckpt_perturbed() -> Path:
    return _fixture_checkpoint("perturbed_kernels")


@pytest.fixture(scope="session")
def fixture_ref() -> dict:
    return torch.load(FIXTURE_DIR / "glean_fixture_ref.pt", weights_only=True)


@pytest.fixture(scope="session")
def fixture_intermediates() -> dict:
    return torch.load(FIXTURE_DIR / "glean_fixture_intermediates.pt", weights_only=True)


@pytest.fixture
def tiny_glean():
    from gleansr import GLEANStyleGANv2

    torch.manual_seed(0)
    return GLEANStyleGANv2(**TINY_GLEAN).eval()


def with_nonzero_biases(module: torch.nn.Module) -> torch.nn.Module:
    """Biases and noise weights start at zero; random ones make every folded term count."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias") or "noise_injector" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return module
