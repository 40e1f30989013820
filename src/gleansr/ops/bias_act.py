"""Bias + LeakyReLU(0.2) x sqrt(2): StyleGAN2's ``fused_bias_leakyrelu``."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._impl import use_fast

SQRT2 = math.sqrt(2.0)


def _bias_view(bias: torch.Tensor, ndim: int) -> torch.Tensor:
    # bias is per channel (dim 1) for 2-D (N, C) and 4-D (N, C, H, W) inputs alike
    return bias.reshape((1, -1) + (1,) * (ndim - 2))


def bias_leaky_relu(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    negative_slope: float = 0.2,
    scale: float = SQRT2,
    impl: str = "auto",
) -> torch.Tensor:
    """``leaky_relu(x + bias, negative_slope) * scale``, bias broadcast along dim 1.

    x: (N, C, ...) ; bias: (C,) or None.
    The fast path works in place when no gradient is needed (inference), saving two
    full-size temporaries per call.
    """
    b = None if bias is None else _bias_view(bias.to(x.dtype), x.ndim)
    if not use_fast(impl):
        y = x if b is None else x + b
        return F.leaky_relu(y, negative_slope) * scale
    if torch.is_grad_enabled() and (x.requires_grad or (bias is not None and bias.requires_grad)):
        y = x if b is None else x + b
        return F.leaky_relu(y, negative_slope).mul(scale)
    y = x.clone() if b is None else x + b
    # leaky_relu(y) * s == where(y >= 0, s*y, s*slope*y): one pass, no extra buffer
    return F.leaky_relu_(y, negative_slope).mul_(scale)
