"""StyleGAN2's modulated (and demodulated) convolution, optionally up-sampling by 2.

Upstream order of operations (the ``ref`` path does exactly this):
1. ``w_n = weight * style_n`` per sample (style scales the input channels),
2. demodulate: ``w_n *= rsqrt(sum(w_n ** 2 over in, kh, kw) + eps)`` per output channel,
3. a grouped convolution with one weight per sample; for up-sampling a stride-2
   ``conv_transpose2d`` (padding 0) followed by a FIR blur.

The ``fast`` path computes the same function with one shared weight for the whole batch:
``conv(x * style, weight) * demod`` (modulating activations instead of weights), which
turns N small grouped convolutions into one large one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._impl import use_fast
from .upfirdn2d import upfirdn2d


def _demod(weight: torch.Tensor, style: torch.Tensor, eps: float) -> torch.Tensor:
    """(N, out) demodulation factors for weight (out, in, k, k) and style (N, in)."""
    w2 = weight.pow(2).sum(dim=(2, 3))  # (out, in)
    return torch.rsqrt(style.pow(2) @ w2.t() + eps)


def _modulated_conv2d_ref(x, weight, style, demodulate, up, blur_kernel, blur_pad, eps):
    n, c, h, w = x.shape
    out_c, _, k, _ = weight.shape
    wn = weight.unsqueeze(0) * style.view(n, 1, c, 1, 1)
    if demodulate:
        d = torch.rsqrt(wn.pow(2).sum([2, 3, 4]) + eps)
        wn = wn * d.view(n, out_c, 1, 1, 1)
    if up:
        wt = wn.transpose(1, 2).reshape(n * c, out_c, k, k)
        y = F.conv_transpose2d(x.reshape(1, n * c, h, w), wt, padding=0, stride=2, groups=n)
        y = y.reshape(n, out_c, y.shape[-2], y.shape[-1])
        return upfirdn2d(y, blur_kernel, pad=blur_pad, impl="ref")
    y = F.conv2d(x.reshape(1, n * c, h, w), wn.reshape(n * out_c, c, k, k), padding=k // 2, groups=n)
    return y.reshape(n, out_c, y.shape[-2], y.shape[-1])


def _modulated_conv2d_fast(x, weight, style, demodulate, up, blur_kernel, blur_pad, eps):
    n, c = x.shape[:2]
    k = weight.shape[-1]
    xs = x * style.to(x.dtype).view(n, c, 1, 1)
    if up:
        # conv_transpose2d weight layout is (in, out, k, k)
        y = F.conv_transpose2d(xs, weight.transpose(0, 1), stride=2)
        y = upfirdn2d(y, blur_kernel, pad=blur_pad, impl="fast")
    else:
        y = F.conv2d(xs, weight, padding=k // 2)
    if demodulate:
        # demodulation commutes with the (linear, per-channel) blur
        y = y * _demod(weight, style, eps).to(y.dtype).view(n, -1, 1, 1)
    return y


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    style: torch.Tensor,
    demodulate: bool = True,
    up: bool = False,
    blur_kernel: torch.Tensor | None = None,
    blur_pad: tuple[int, int] = (1, 1),
    eps: float = 1e-8,
    impl: str = "auto",
) -> torch.Tensor:
    """Modulated convolution.

    x: (N, in, H, W); weight: (out, in, k, k), already scaled (equalized lr);
    style: (N, in) per-sample input-channel scales. With ``up`` the output is
    (N, out, 2H, 2W) after the transposed conv and ``blur_kernel`` (padding ``blur_pad``).
    """
    if x.ndim != 4 or weight.ndim != 4 or style.shape != (x.shape[0], x.shape[1]):
        raise ValueError(
            f"modulated_conv2d: x {tuple(x.shape)}, weight {tuple(weight.shape)} and "
            f"style {tuple(style.shape)} do not fit together"
        )
    if up and blur_kernel is None:
        raise ValueError("modulated_conv2d: up-sampling needs blur_kernel")
    fn = _modulated_conv2d_fast if use_fast(impl) else _modulated_conv2d_ref
    return fn(x, weight, style, demodulate, up, blur_kernel, blur_pad, eps)
