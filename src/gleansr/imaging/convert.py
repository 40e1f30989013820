"""Conversions between uint8 RGB images and the [-1, 1] tensors GLEAN consumes and produces.

Both follow MMEditing's float32 arithmetic exactly, so outputs round to the same uint8 values:
input ``RescaleToZeroOne`` + ``Normalize(mean=0.5, std=0.5)``; output ``(y + 1) / 2``, clamp to
[0, 1], ``* 255``, round (half to even).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["uint8_to_tensor", "tensor_to_uint8"]


def uint8_to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 RGB ``H x W x 3`` (or ``N x H x W x 3``) -> float32 ``3 x H x W`` (``N x 3 x H x W``) in [-1, 1]."""
    if img.dtype != np.uint8 or img.ndim not in (3, 4) or img.shape[-1] != 3:
        raise ValueError(f"uint8_to_tensor: expected uint8 [N x] H x W x 3, got {img.dtype} {img.shape}")
    x = torch.tensor(img, dtype=torch.float32) / 255.0  # a copy: read-only arrays are fine too
    x = (x - 0.5) * 2.0
    return x.movedim(-1, -3).contiguous()


def tensor_to_uint8(x: torch.Tensor) -> np.ndarray:
    """Generator output ``N x 3 x H x W`` in [-1, 1] -> uint8 RGB ``N x H x W x 3`` (the restorer's mapping)."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"tensor_to_uint8: expected N x 3 x H x W, got {tuple(x.shape)}")
    y = x.detach().to(device="cpu", dtype=torch.float32)
    y = ((y + 1.0) / 2.0).clamp(0.0, 1.0)
    y = torch.round(y * 255.0)
    return y.permute(0, 2, 3, 1).to(torch.uint8).numpy()
