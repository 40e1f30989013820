"""Fused inference forms of the networks' layers: frozen, weights pre-folded, eval-mode only.

Each model module that has a deploy form says so with a method ``fused(target)`` (RepVGG/timm
style: ``RRDB.fused``, ``ModulatedStyleConv.fused``, ``PixelShufflePack.fused``,
``GLEANStyleGANv2.fused``, ...); :func:`fuse` walks containers and PyTorch's own layers
(``Sequential``, ``ModuleList``, ``Conv2d`` [+ ``LeakyReLU``], ``Flatten``, ``Linear``) and asks
every other module for its ``fused`` form, so a layer type nobody taught to fuse is an error,
never silently skipped. Everything that depends only on the weights is done once, here:
- weights derived in float64 and rounded once to the compute dtype and memory format;
- equalized-lr scales, the RRDB residual scale 0.2 and the bank's ``sqrt(2)`` gain folded into
  weights, demodulation, noise and bias (``leaky_relu(z) * c == leaky_relu(c * z)``, ``c > 0``);
- StyleGAN2 modulation applied to activations, demodulation from a stored ``sum_k(W**2)``;
- on request (CPU), wide 3x3 convolutions by Winograd F(4x4, 3x3) (:mod:`gleansr.ops.winograd`).
Fused modules hold buffers, not parameters: they do not train and are not in state dicts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops import upfirdn2d
from ..ops.winograd import WinogradWeight, conv3x3_winograd, winograd_weight

SQRT2 = math.sqrt(2.0)
# Winograd F(4x4, 3x3) pays where products outweigh its transforms' memory traffic, which grows
# with in + out channels while the products grow with in * out (measured on a 2-core AVX-512 CPU)
WINOGRAD_MIN_CHANNELS = 256  # in * out / (in + out)


@dataclass(frozen=True)
class FuseTarget:
    """Where and how fused tensors live: compute dtype, device, memory format, Winograd or not."""

    dtype: torch.dtype = torch.float32
    device: torch.device = torch.device("cpu")
    channels_last: bool = False
    winograd: bool = False

    @property
    def style_dtype(self) -> torch.dtype:
        """Styles and demodulation stay in float32 (float64 when the whole snapshot is float64)."""
        return torch.float64 if self.dtype == torch.float64 else torch.float32

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        t = t.detach().to(device=self.device, dtype=self.dtype)
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last and t.ndim == 4 else t.contiguous()

    def vector(self, t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        return t.detach().to(device=self.device, dtype=dtype or self.dtype).contiguous()

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        """An input brought to the compute dtype and memory format."""
        x = x.to(dtype=self.dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def winograd_for(self, weight: torch.Tensor, stride: int, padding: int) -> WinogradWeight | None:
        """The Winograd form of a (out, in, k, k) weight if that layer is worth it, else None."""
        out_c, in_c, kh, kw = weight.shape
        if not self.winograd or (kh, kw, stride, padding) != (3, 3, 1, 1):
            return None
        if in_c * out_c / (in_c + out_c) < WINOGRAD_MIN_CHANNELS:
            return None
        return winograd_weight(weight.to(self.device), m=4, dtype=self.dtype)


def f64(t: torch.Tensor) -> torch.Tensor:
    """Weights are derived in float64 and rounded once to the compute dtype."""
    return t.detach().to(torch.float64)


class WinogradBuffers(nn.Module):
    """Holds a :class:`WinogradWeight` as buffers (so that it counts and moves like one)."""

    def __init__(self, w: WinogradWeight):
        super().__init__()
        self.m, self.bias_index = w.m, w.bias_index
        self.register_buffer("u", w.u, persistent=False)
        self.register_buffer("input_transform", w.input_transform, persistent=False)
        self.register_buffer("output_transform", w.output_transform, persistent=False)

    def get(self) -> WinogradWeight:
        return WinogradWeight(self.u, self.input_transform, self.output_transform, self.m, self.bias_index)


class FusedConv(nn.Module):
    """A fixed 2-D convolution, optionally followed by an in-place LeakyReLU(0.2)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, target: FuseTarget,
                 stride: int = 1, padding: int = 1, lrelu: bool = False):
        super().__init__()
        wino = target.winograd_for(weight, stride, padding)
        self.winograd = None if wino is None else WinogradBuffers(wino)
        self.register_buffer("weight", target.weight(weight) if wino is None else None, persistent=False)
        self.register_buffer("bias", None if bias is None else target.vector(bias), persistent=False)
        self.stride, self.padding, self.lrelu = stride, padding, lrelu

    @classmethod
    def of(cls, conv: nn.Conv2d, target: FuseTarget, lrelu: bool = False, scale: float = 1.0) -> "FusedConv":
        """Fused form of ``conv`` with its output multiplied by ``scale`` (folded into the weights)."""
        if conv.groups != 1 or conv.dilation != (1, 1) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise TypeError(f"no fused form for {conv} (only plain zero-padded convolutions)")
        bias = None if conv.bias is None else f64(conv.bias) * scale
        return cls(f64(conv.weight) * scale, bias, target, conv.stride[0], conv.padding[0], lrelu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.winograd is not None:
            y = conv3x3_winograd(x, self.winograd.get(), self.bias)
        else:
            y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding)
        return F.leaky_relu_(y, 0.2) if self.lrelu else y


class FusedLinear(nn.Module):
    """A fixed linear layer."""

    def __init__(self, linear: nn.Linear, target: FuseTarget):
        super().__init__()
        self.register_buffer("weight", target.vector(linear.weight), persistent=False)
        self.register_buffer("bias", None if linear.bias is None else target.vector(linear.bias), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class FusedStyleConv(nn.Module):
    """The bank's modulated conv + fixed noise + bias + LeakyReLU(0.2) * sqrt(2).

    x (N, in, H, W), w (N, style_channels) -> (N, out, H', W') with H' = 2H when up-sampling.
    Built by ``ModulatedStyleConv.fused`` from the layer's tensors (see there for their meaning).
    """

    def __init__(self, weight: torch.Tensor, style_weight: torch.Tensor, style_bias: torch.Tensor,
                 noise: torch.Tensor, bias: torch.Tensor, eps: float, target: FuseTarget,
                 blur: tuple[torch.Tensor, tuple[int, int]] | None = None):
        super().__init__()
        sd = target.style_dtype
        self.register_buffer("style_weight", target.vector(style_weight, sd), persistent=False)
        self.register_buffer("style_bias", target.vector(style_bias, sd), persistent=False)
        # demodulation: sum over (in, k, k) of (W * s)^2 == s^2 @ sum_k(W^2).T
        self.register_buffer("weight_sq", target.vector(weight.pow(2).sum((2, 3)).t(), sd), persistent=False)
        self.upsample, self.padding, self.eps = blur is not None, weight.shape[-1] // 2, eps
        self.winograd = None
        if blur is not None:  # conv_transpose2d wants (in, out, k, k)
            self.register_buffer("weight", target.weight(weight.transpose(0, 1)), persistent=False)
            self.register_buffer("blur_kernel", target.vector(blur[0]), persistent=False)
            self.blur_pad = blur[1]
        else:
            wino = target.winograd_for(weight, 1, self.padding)
            self.winograd = None if wino is None else WinogradBuffers(wino)
            self.register_buffer("weight", target.weight(weight) if wino is None else None, persistent=False)
        self.register_buffer("noise", target.vector(noise * SQRT2), persistent=False)  # (1, 1, H, W)
        self.register_buffer("bias", target.vector(bias.view(1, -1, 1, 1) * SQRT2), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        style = F.linear(w.to(self.style_weight.dtype), self.style_weight, self.style_bias)  # (N, in)
        if self.winograd is not None:  # modulation happens while the tiles are gathered
            y = conv3x3_winograd(x, self.winograd.get(), in_scale=style)
        elif self.upsample:
            y = F.conv_transpose2d(x * style.to(x.dtype).view(n, -1, 1, 1), self.weight, stride=2)
            y = upfirdn2d(y, self.blur_kernel, pad=self.blur_pad, impl="fast")
        else:
            y = F.conv2d(x * style.to(x.dtype).view(n, -1, 1, 1), self.weight, padding=self.padding)
        scale = torch.rsqrt(style.square() @ self.weight_sq + self.eps) * SQRT2  # demodulation
        # y * d * sqrt2 + noise * sqrt2 + bias * sqrt2, then leaky_relu: three passes
        y = torch.addcmul(self.noise, y, scale.to(y.dtype).view(n, -1, 1, 1))
        return F.leaky_relu_(y.add_(self.bias), 0.2)


class FusedDenseBlock(nn.Module):
    """ESRGAN's residual dense block ``x + 0.2 * conv5(cat(x, f1..f4))``, 0.2 folded into conv5."""

    def __init__(self, convs: list[FusedConv], last: FusedConv):
        super().__init__()
        self.convs, self.last = nn.ModuleList(convs), last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in self.convs:
            feats.append(conv(torch.cat(feats, 1)))
        return self.last(torch.cat(feats, 1)).add_(x)


class ScaledResidual(nn.Module):
    """``x + scale * body(x)``, one fused pass (the RRDB's outer residual)."""

    def __init__(self, body: nn.Module, scale: float):
        super().__init__()
        self.body, self.scale = body, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.add(x, self.body(x), alpha=self.scale)


class LongSkip(nn.Module):
    """``first(x)`` then ``last(body(f)) + f``: the RRDB trunk's long skip connection."""

    def __init__(self, first: nn.Module, body: nn.Module, last: nn.Module):
        super().__init__()
        self.first, self.body, self.last = first, body, last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.first(x)
        return self.last(self.body(feat)).add_(feat)


class FusedPixelShuffle(nn.Module):
    """3x3 conv to 4x the channels, then pixel shuffle (x2): (N, in, H, W) -> (N, out, 2H, 2W)."""

    def __init__(self, conv: FusedConv, channels_last: bool):
        super().__init__()
        self.conv, self.channels_last = conv, channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.pixel_shuffle(self.conv(x), 2)
        # CUDA's pixel_shuffle returns NCHW; keep the layout so the following cat stays channels_last
        return y.contiguous(memory_format=torch.channels_last) if self.channels_last else y


# PyTorch's own types that :func:`fuse` knows (every other type brings a ``fused`` method)
WALKED_TYPES = (nn.Sequential, nn.ModuleList, nn.Conv2d, nn.Linear, nn.Flatten)


def fuse(module: nn.Module, target: FuseTarget) -> nn.Module:
    """The fused inference form of ``module`` (a new module; ``module`` is left alone).

    Containers are walked; modules with a ``fused(target)`` method build their own form; an
    unknown layer type raises ``TypeError`` naming it.
    """
    if hasattr(module, "fused"):
        return module.fused(target)
    if isinstance(module, nn.Sequential):
        return _fuse_sequential(list(module), target)
    if isinstance(module, nn.ModuleList):
        return nn.ModuleList([fuse(m, target) for m in module])
    if isinstance(module, nn.Conv2d):
        return FusedConv.of(module, target)
    if isinstance(module, nn.Linear):
        return FusedLinear(module, target)
    if isinstance(module, nn.Flatten):
        return nn.Flatten(module.start_dim, module.end_dim)
    raise TypeError(f"no fused inference form for {type(module).__name__}; give it a fused(target) method")


def _is_lrelu(m: nn.Module) -> bool:
    return isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.2


def _fuse_sequential(mods: list[nn.Module], target: FuseTarget) -> nn.Sequential:
    """A ``Sequential``'s fused form: each ``Conv2d`` takes a following LeakyReLU(0.2) into itself."""
    out: list[nn.Module] = []
    i = 0
    while i < len(mods):
        m = mods[i]
        if isinstance(m, nn.Conv2d) and not hasattr(m, "fused") and i + 1 < len(mods) and _is_lrelu(mods[i + 1]):
            out.append(FusedConv.of(m, target, lrelu=True))
            i += 2
            continue
        out.append(fuse(m, target))
        i += 1
    return nn.Sequential(*out)
