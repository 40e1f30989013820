"""FIR up-sampling / filtering / down-sampling (StyleGAN2's ``upfirdn2d``).

Semantics (upstream, also NVIDIA's): per channel,
1. insert ``up - 1`` zeros after every input pixel along each axis,
2. pad by ``pad = (p0, p1)`` on both axes (negative values crop),
3. **convolve** with ``kernel`` (a true convolution: the kernel is flipped),
4. keep every ``down``-th pixel.
The kernel is taken as given (the checkpoint's buffer), never rebuilt.

The fast path is differentiated by :class:`_UpFirDn2dFast`: its backward is again the FIR op
(the op is linear in ``x``), so R1 and path-length regularisation, which back-propagate twice
through it, never differentiate the grouped convolution twice. That double backward of the
grouped convolution was measured as most of bank training's GPU time.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ._impl import use_fast


def _check(x: torch.Tensor, kernel: torch.Tensor, up: int, down: int) -> None:
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects (N, C, H, W), got shape {tuple(x.shape)}")
    if kernel.ndim != 2:
        raise ValueError(f"upfirdn2d expects a 2-D kernel, got shape {tuple(kernel.shape)}")
    if up < 1 or down < 1:
        raise ValueError(f"up and down must be >= 1, got up={up}, down={down}")


def _upfirdn2d_ref(x: torch.Tensor, kernel: torch.Tensor, up: int, down: int, pad: tuple[int, int]) -> torch.Tensor:
    n, c, h, w = x.shape
    p0, p1 = pad
    kh, kw = kernel.shape
    # 1. zero insertion
    y = x.reshape(n, c, h, 1, w, 1)
    y = F.pad(y, [0, up - 1, 0, 0, 0, up - 1])
    y = y.reshape(n, c, h * up, w * up)
    # 2. pad (positive) then crop (negative)
    y = F.pad(y, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    y = y[:, :, max(-p0, 0): y.shape[2] - max(-p1, 0), max(-p0, 0): y.shape[3] - max(-p1, 0)]
    # 3. true convolution = correlation with the flipped kernel, each channel alone
    k = torch.flip(kernel, [0, 1]).to(y.dtype).reshape(1, 1, kh, kw)
    y = F.conv2d(y.reshape(n * c, 1, y.shape[2], y.shape[3]), k)
    y = y.reshape(n, c, y.shape[2], y.shape[3])
    # 4. down-sampling
    return y[:, :, ::down, ::down]


def _upfirdn2d_fast(x: torch.Tensor, kernel: torch.Tensor, up: int, down: int, pad: tuple[int, int]) -> torch.Tensor:
    n, c, h, w = x.shape
    p0, p1 = pad
    kh, kw = kernel.shape
    k = torch.flip(kernel, [0, 1]).to(x.dtype)
    weight = k.expand(c, 1, kh, kw)
    if up > 1 and down == 1 and p0 >= 0 and p1 >= 0 and kh == kw:  # its crop assumes a square kernel
        # Zero insertion + padding + correlation == a strided transposed convolution,
        # which skips the multiplications by inserted zeros. conv_transpose2d correlates
        # with the *flipped* weight, so it receives the unflipped kernel; its implicit
        # full padding (k - 1) is trimmed to the requested (p0, p1).
        out_h = h * up + p0 + p1 - kh + 1
        out_w = w * up + p0 + p1 - kw + 1
        y = F.conv_transpose2d(x, kernel.to(x.dtype).expand(c, 1, kh, kw), stride=up, groups=c)
        # conv_transpose output index o corresponds to padded index o + (kh - 1) - p0... see tests
        off = kh - 1 - p0
        if off < 0:
            y = F.pad(y, [-off, 0, -off, 0])
            off = 0
        y = y[:, :, off: off + out_h, off: off + out_w]
        if y.shape[2] < out_h or y.shape[3] < out_w:
            y = F.pad(y, [0, out_w - y.shape[3], 0, out_h - y.shape[2]])
        return y
    if up == 1 and p0 == p1 >= 0:
        # symmetric padding: the convolution pads by itself, no padded copy of x
        return F.conv2d(x, weight, stride=down, padding=p0, groups=c)
    if up == 1:
        y = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
        y = y[:, :, max(-p0, 0): y.shape[2] - max(-p1, 0), max(-p0, 0): y.shape[3] - max(-p1, 0)]
        # stride = down: the convolution computes only the pixels that are kept
        return F.conv2d(y, weight, stride=down, groups=c)
    return _upfirdn2d_ref(x, kernel, up, down, pad)


class _UpFirDn2dFast(torch.autograd.Function):
    """The fast path, with the adjoint FIR op as its backward (NVIDIA's stylegan2-ada construction).

    Per axis (input length ``n``, output length ``m``, kernel length ``k``), the adjoint of
    ``upfirdn(up, down, pad=(p0, p1))`` is ``upfirdn(down, up, pad=(k - p0 - 1,
    n * up - m * down + p0 - up + 1))`` with the flipped kernel. Only ``p1`` can differ between
    the axes; a larger ``p1`` only appends outputs, so the larger one serves both axes and the
    result is cropped. The kernel is a fixed buffer: its gradient is ``None`` (callers whose
    kernel requires grad get the plain autograd path instead, see :func:`upfirdn2d`).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kernel: torch.Tensor, up: int, down: int,
                pad: tuple[int, int]) -> torch.Tensor:
        y = _upfirdn2d_fast(x, kernel, up, down, pad)
        ctx.save_for_backward(kernel)
        ctx.args = (up, down, pad, tuple(x.shape[2:]), tuple(y.shape[2:]))
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None, None]:
        (kernel,) = ctx.saved_tensors
        up, down, (p0, _), (h, w), out_hw = ctx.args
        gpad1 = max(n * up - m * down + p0 - up + 1 for n, m in zip((h, w), out_hw))
        gpad = (kernel.shape[0] - p0 - 1, gpad1)
        gx = _UpFirDn2dFast.apply(grad, torch.flip(kernel, [0, 1]), down, up, gpad)
        return gx[:, :, :h, :w], None, None, None, None


def upfirdn2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int] = (0, 0),
    impl: str = "auto",
) -> torch.Tensor:
    """Up-sample, FIR-filter and down-sample ``x`` (N, C, H, W) with a 2-D ``kernel``.

    Output size per axis: ``(H * up + p0 + p1 - k + 1) // down`` (rounded up).
    """
    _check(x, kernel, up, down)
    pad = (int(pad[0]), int(pad[1]))
    if use_fast(impl):
        # the custom backward only where a gradient to x (and none to the kernel) is wanted;
        # non-square kernels would need per-axis p0 in the backward
        needs_x_grad_only = torch.is_grad_enabled() and x.requires_grad and not kernel.requires_grad
        if needs_x_grad_only and kernel.shape[0] == kernel.shape[1]:
            return _UpFirDn2dFast.apply(x, kernel, up, down, pad)
        return _upfirdn2d_fast(x, kernel, up, down, pad)
    return _upfirdn2d_ref(x, kernel, up, down, pad)
