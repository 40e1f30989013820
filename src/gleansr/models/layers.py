"""StyleGAN2 building blocks with MMEditing's parameter names (so checkpoints map 1:1).

Equalized learning rate: a parameter is stored as ``weight_orig`` and used as
``weight_orig * gain * sqrt(1 / fan_in) * lr_mul``. Upstream computes that factor from
float32 scalars even for float64 weights; we do the same, so float64 runs match it to
the last bits rather than to ~1e-7.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops import bias_leaky_relu, upfirdn2d
from .fused import FusedConv, FuseTarget, f64


def equalized_lr_scale(fan_in: int, gain: float = 1.0) -> float:
    """gain * sqrt(1 / fan_in), rounded through float32 exactly as upstream does."""
    return float(np.float32(gain) * np.sqrt(np.float32(1.0 / fan_in)))


def make_fir_kernel(taps: Sequence[float], gain: float = 1.0) -> torch.Tensor:
    """outer(taps, taps) / sum * gain: the 2-D FIR kernel that checkpoints store."""
    # in numpy (float32, as upstream's torch code): no tensor arithmetic while building on "meta"
    k = np.asarray(list(taps), dtype=np.float32)
    k = k[None, :] * k[:, None]
    return torch.tensor(k / k.sum() * np.float32(gain))


class PixelNorm(nn.Module):
    """x / (rms(x) over dim 1 + eps), the mapping network's input normalisation."""

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, dim=1, keepdim=True) / math.sqrt(x.shape[1])
        return x / (norm + self.eps)


class EqualLinear(nn.Module):
    """Linear layer without bias whose weight is rescaled at run time (key ``weight_orig``)."""

    def __init__(self, in_features: int, out_features: int, gain: float = 1.0, lr_mul: float = 1.0):
        super().__init__()
        self.weight_orig = nn.Parameter(torch.randn(out_features, in_features).div_(lr_mul))  # in place: skipped on "meta"
        self.scale = equalized_lr_scale(in_features, gain)
        self.lr_mul = lr_mul
        self.in_features, self.out_features = in_features, out_features

    @property
    def weight(self) -> torch.Tensor:
        w = self.weight_orig * self.scale
        return w * self.lr_mul if self.lr_mul != 1.0 else w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)


class EqualLinearAct(nn.Module):
    """EqualLinear + separate bias (times lr_mul) + optional bias-LeakyReLU (MMEditing's
    ``EqualLinearActModule``; keys ``bias``, ``linear.weight_orig``)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        lr_mul: float = 1.0,
        bias_init: float = 0.0,
        activate: bool = False,
    ):
        super().__init__()
        self.linear = EqualLinear(in_features, out_features, gain=1.0, lr_mul=lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.lr_mul = lr_mul
        self.activate = activate
        self.impl = "auto"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim > 2:
            x = x.reshape(x.shape[0], -1)
        x = self.linear(x)
        bias = self.bias * self.lr_mul
        if self.activate:
            return bias_leaky_relu(x, bias, impl=self.impl)
        return x + bias


class EqualConv2d(nn.Module):
    """Conv without bias, equalized lr (MMEditing ``EqualizedLRConvModule``: key ``conv.weight_orig``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv = _EqualConvWeight(in_channels, out_channels, kernel_size)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.conv.weight.to(x.dtype), stride=self.stride, padding=self.padding)

    def fused(self, target: FuseTarget) -> FusedConv:
        """Inference form: the equalized-lr scale folded into the weight."""
        return FusedConv(f64(self.conv.weight), None, target, self.stride, self.padding)


class _EqualConvWeight(nn.Module):
    """Holds ``weight_orig`` under the name ``conv`` to mirror MMEditing's ConvModule nesting."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.weight_orig = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = equalized_lr_scale(in_channels * kernel_size * kernel_size)

    @property
    def weight(self) -> torch.Tensor:
        return self.weight_orig * self.scale


class FusedBiasLeakyReLU(nn.Module):
    """Per-channel bias, LeakyReLU(0.2), times sqrt(2) (key ``bias``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.impl = "auto"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bias_leaky_relu(x, self.bias, impl=self.impl)


class Blur(nn.Module):
    """FIR filter with padding ``pad`` (key ``kernel``, read from checkpoints).

    Kernels that follow an up-sampling by 2 carry ``gain=4`` to keep the image's mean.
    """

    def __init__(self, taps: Sequence[float], pad: tuple[int, int], up: int = 1, down: int = 1, gain: float = 1.0):
        super().__init__()
        self.register_buffer("kernel", make_fir_kernel(taps, gain=gain))
        self.pad, self.up, self.down = pad, up, down
        self.impl = "auto"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.up, down=self.down, pad=self.pad, impl=self.impl)


class NoiseInjection(nn.Module):
    """x + weight * noise; fresh Gaussian noise when none is given (key ``weight``)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = x.new_empty(x.shape[0], 1, x.shape[2], x.shape[3]).normal_()
        return x + self.weight.to(x.dtype) * noise.to(x.dtype)


class ConstantInput(nn.Module):
    """The learned 4x4 input of the synthesis network (key ``input``)."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)
