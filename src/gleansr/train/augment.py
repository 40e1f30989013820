"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for small-data bank training.

The same random transforms are applied to every image the discriminator sees, real and fake,
in both the D and G steps; they are differentiable in the image, so G learns through them and
the augmentations do not leak into generated images. Policies (all per sample, images (N, C, H, W)
in [-1, 1]):

- ``color``: brightness + U(-0.5, 0.5); saturation x U(0, 2) around the pixel's channel mean;
  contrast x U(0.5, 1.5) around the image mean;
- ``translation``: shift by up to 1/8 of the size in each direction, zero fill;
- ``cutout``: zero a square of half the size (the square may run over the border).
"""
from __future__ import annotations

from typing import Sequence

import torch

POLICIES = ("color", "translation", "cutout")


def _uniform(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) * (high - low) + low


def random_color(x: torch.Tensor) -> torch.Tensor:
    x = x + _uniform(x, -0.5, 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * _uniform(x, 0.0, 2.0) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(x, 0.5, 1.5) + mean


def translate(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Shift each image by ``shifts[i] = (dy, dx)`` pixels (content moves down/right), zero fill."""
    n, c, h, w = x.shape
    src_y = torch.arange(h, device=x.device).view(1, h, 1) - shifts[:, 0].view(n, 1, 1)
    src_x = torch.arange(w, device=x.device).view(1, 1, w) - shifts[:, 1].view(n, 1, 1)
    inside = (src_y >= 0) & (src_y < h) & (src_x >= 0) & (src_x < w)  # (N, H, W)
    index = (src_y.clamp(0, h - 1) * w + src_x.clamp(0, w - 1)).reshape(n, 1, h * w).expand(n, c, h * w)
    moved = x.reshape(n, c, h * w).gather(2, index).reshape(n, c, h, w)
    return moved * inside.unsqueeze(1).to(x.dtype)


def random_translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    limit_y, limit_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    shifts = torch.stack([torch.randint(-limit_y, limit_y + 1, (n,), device=x.device),
                          torch.randint(-limit_x, limit_x + 1, (n,), device=x.device)], dim=1)
    return translate(x, shifts)


def cutout(x: torch.Tensor, corners: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Zero the ``size`` (h, w) rectangle whose top-left corner is ``corners[i] = (y, x)`` (may be < 0)."""
    n, _, h, w = x.shape
    ys = torch.arange(h, device=x.device).view(1, h, 1) - corners[:, 0].view(n, 1, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w) - corners[:, 1].view(n, 1, 1)
    hole = (ys >= 0) & (ys < size[0]) & (xs >= 0) & (xs < size[1])
    return x * (~hole).unsqueeze(1).to(x.dtype)


def random_cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    size = (int(h * ratio + 0.5), int(w * ratio + 0.5))
    centres = torch.stack([torch.randint(0, h + 1 - size[0] % 2, (n,), device=x.device),
                           torch.randint(0, w + 1 - size[1] % 2, (n,), device=x.device)], dim=1)
    return cutout(x, centres - torch.tensor([size[0] // 2, size[1] // 2], device=x.device), size)


_TRANSFORMS = {"color": random_color, "translation": random_translation, "cutout": random_cutout}


def diff_augment(x: torch.Tensor, policy: Sequence[str] = POLICIES) -> torch.Tensor:
    """Apply the policies in order, with fresh randomness per sample; (N, C, H, W) -> same shape."""
    unknown = [name for name in policy if name not in _TRANSFORMS]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown[0]!r}; choose from {', '.join(POLICIES)}")
    for name in policy:
        x = _TRANSFORMS[name](x)
    return x
