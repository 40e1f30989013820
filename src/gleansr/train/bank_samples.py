"""Sampling a bank: seeded latents, the truncation trick, PNG grids.

Sampling is deterministic: z comes from a CPU generator seeded with ``seed``; the truncation
centre is the mean w of 4096 z drawn from a generator with a fixed seed (the same for every
``seed``, so truncated samples of different seeds share one centre); the noise inputs are the
bank's registered noise buffers, as GLEAN uses them.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from ..imaging.convert import tensor_to_uint8
from ..models.stylegan2 import StyleGAN2Generator
from ..pipeline.images import save_image

CENTRE_SAMPLES = 4096
CENTRE_SEED = 0


@torch.no_grad()
def truncation_centre(generator: StyleGAN2Generator, samples: int = CENTRE_SAMPLES) -> torch.Tensor:
    """Mean w over ``samples`` fixed-seed z: (1, style_channels), on the generator's device."""
    device = generator.constant_input.input.device
    z = torch.randn(samples, generator.style_channels, generator=torch.Generator().manual_seed(CENTRE_SEED))
    return generator.mapping(z.to(device)).mean(0, keepdim=True)


@torch.no_grad()
def sample_images(generator: StyleGAN2Generator, n: int, seed: int = 0, truncation: float = 1.0,
                  batch_size: int = 16) -> torch.Tensor:
    """``n`` images (n, 3, size, size) in [-1, 1] (float32, CPU) from the z of ``seed``."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    device = generator.constant_input.input.device
    z = torch.randn(n, generator.style_channels, generator=torch.Generator().manual_seed(seed))
    centre = truncation_centre(generator) if truncation < 1.0 else None
    images = [generator(chunk.to(device), truncation=truncation, truncation_latent=centre).float().cpu()
              for chunk in z.split(batch_size)]
    return torch.cat(images)


def image_grid(images: torch.Tensor, nrow: int | None = None) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> uint8 (rows * H, nrow * W, 3), row-major, black where empty."""
    n, _, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = np.zeros((rows * h, nrow * w, 3), dtype=np.uint8)
    for i, tile in enumerate(tensor_to_uint8(images)):
        r, c = divmod(i, nrow)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = tile
    return grid


def save_png(pixels: np.ndarray, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write uint8 (H, W, 3) pixels as a PNG, atomically."""
    return save_image(path, pixels, overwrite=overwrite)


def save_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int | None = None, overwrite: bool = False) -> Path:
    return save_png(image_grid(images, nrow), path, overwrite)
