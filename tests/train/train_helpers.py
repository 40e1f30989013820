"""Shared pieces of the training tests: a tiny GLEAN config, small images, a random VGG16 file."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gleansr.models.vgg import VGG16Features

REPO = Path(__file__).resolve().parents[2]
TINY_MODEL = dict(in_size=8, out_size=32, rrdb_channels=8, num_rrdbs=1, style_channels=16, num_mlps=2, channel_max=16)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Train on one thread: on shared, busy cores two OpenMP threads spin against each other
    and a 6-iteration run goes from seconds to a minute. Import this fixture into a test module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_images(folder: Path, count: int, seed: int, size: int = 32) -> Path:
    """``count`` smooth RGB images (a gradient plus a soft disc), different for each seed."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    for i in range(count):
        cy, cx, radius = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.4)
        disc = 1 / (1 + np.exp(((x - cx) ** 2 + (y - cy) ** 2 - radius**2) * 80))
        base = rng.uniform(0, 1, 3) * (0.5 * x + 0.5 * y)[..., None]
        img = np.clip(base + disc[..., None] * rng.uniform(0, 1, 3), 0, 1)
        Image.fromarray((img * 255).round().astype(np.uint8)).save(folder / f"img_{i:02d}.png")
    return folder


def write_random_vgg(path: Path) -> Path:
    """A complete torchvision-layout VGG16 trunk with He-initialised random weights (features stay O(1))."""
    if path.is_file():
        return path
    generator = torch.Generator().manual_seed(0)
    state = VGG16Features().state_dict()
    for key, value in state.items():
        if key.endswith("weight"):
            fan_in = value[0].numel()
            value.copy_(torch.randn(value.shape, generator=generator) * (2 / fan_in) ** 0.5)
        else:
            value.copy_(torch.randn(value.shape, generator=generator) * 0.1)
    torch.save(state, path)
    return path


def write_config(path: Path, **changes) -> Path:
    """A JSON training config of the tiny model: batch 2, no workers, log every iteration."""
    config = {"model": TINY_MODEL, "bank": "random", "batch_size": 2, "max_iters": 6, "num_workers": 0, "log_every": 1,
              "save_every": 2, "val_every": 3, "val_samples": 1, **changes}
    path.write_text(json.dumps(config))
    return path


def setup_run(root: Path) -> dict[str, Path]:
    """Training images (8), validation images (2), a VGG file and a config under ``root``."""
    return {
        "data": write_images(root / "hr", 8, seed=1),
        "val": write_images(root / "val", 2, seed=2),
        "vgg": write_random_vgg(root.parent / "vgg16_random.pth"),
        "config": write_config(root / "tiny.json"),
    }


def cli_args(files: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["train", str(files["config"]), "--data", str(files["data"]), "--val-data", str(files["val"]),
            "--vgg", str(files["vgg"]), "--out", str(out), "--quiet", "--device", "cpu", *extra]


def subprocess_env() -> dict[str, str]:
    """The test process's environment, with the package importable and the same thread count
    (so that float results match in-process runs)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    return env


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


PYTHON = sys.executable
