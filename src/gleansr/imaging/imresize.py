"""MATLAB-style bicubic ``imresize``, as MMEditing's ``MATLABLikeResize`` computes it.

GLEAN's released models were trained and tested on LR images made this way (the ``BIx8_down``
/ ``BIx16_down`` folders); OpenCV or Pillow bicubic gives visibly worse results with them.

The resize is separable. Along each axis, output pixel ``i`` (1-based) samples the input at
``u = i / scale + 0.5 * (1 - 1 / scale)`` with the cubic kernel (a = -0.5). When shrinking
(``scale < 1``) the kernel is stretched by ``1 / scale`` and its height scaled by ``scale``
(anti-aliasing). Taps that fall outside the image are mirrored with the edge pixel repeated
(MATLAB's "symmetric" padding), and each output pixel's weights are normalised to sum to one.
We turn this into one dense ``(out, in)`` matrix per axis, so resizing is two matrix products,
in numpy or in torch (on any device). The axis with the smaller scale goes first, as upstream.
Torch is imported only by :func:`imresize_torch`, so the numpy resize works where PyTorch is not
installed (the ONNX Runtime deployment path).

Numerics: upstream builds its weights and applies them in float32; we use float64, so float
results differ from upstream by float32 rounding only (about 1e-7 relative).
"""
from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["imresize", "imresize_torch", "cubic_resize_matrix", "apply_resize_matrix"]

_KERNEL_WIDTH = 4.0


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    inner = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    outer = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return inner + outer


@functools.lru_cache(maxsize=64)
def cubic_resize_matrix(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """The ``(out_len, in_len)`` float64 matrix that resizes one axis, MATLAB-style.

    ``scale`` is output length / input length as MATLAB uses it (e.g. 0.125 for x8 down);
    it is passed separately because MATLAB derives the length from the scale (ceil) and the
    weights from the scale, not from the lengths. The result is cached and read-only.
    """
    stretch = min(scale, 1.0)  # < 1 when shrinking: a wider, flatter kernel (anti-aliasing)
    width = _KERNEL_WIDTH / stretch
    out_pos = np.arange(1, out_len + 1, dtype=np.float64)
    centre = out_pos / scale + 0.5 * (1.0 - 1.0 / scale)  # 1-based input coordinate
    first = np.floor(centre - width / 2.0)
    taps = first[:, None] + np.arange(int(math.ceil(width)) + 2)  # 0-based input indices
    weights = stretch * _cubic(stretch * (centre[:, None] - taps - 1.0))
    weights /= weights.sum(axis=1, keepdims=True)

    # Mirror out-of-range taps with the edge repeated: ... 1 0 | 0 1 ... n-1 | n-1 n-2 ...
    period = taps.astype(np.int64) % (2 * in_len)
    source = np.where(period < in_len, period, 2 * in_len - 1 - period)
    matrix = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.broadcast_to(np.arange(out_len)[:, None], source.shape)
    np.add.at(matrix, (rows, source), weights)
    matrix.flags.writeable = False
    return matrix


def apply_resize_matrix(array: np.ndarray, matrix: np.ndarray, axis: int) -> np.ndarray:
    """Resize ``array`` along ``axis`` with an ``(out, in)`` matrix: ``out[i] = sum_j M[i, j] in[j]``."""
    moved = np.moveaxis(array, axis, 0)
    resized = np.tensordot(matrix, moved, axes=(1, 0))
    return np.moveaxis(resized, 0, axis)


def _plan(
    in_hw: tuple[int, int],
    scale: float | None,
    output_shape: tuple[int, int] | None,
) -> tuple[tuple[int, int], tuple[float, float]]:
    """Output size and per-axis scale, derived the way MATLAB / MMEditing derive them."""
    if (scale is None) == (output_shape is None):
        raise ValueError("imresize: give exactly one of scale and output_shape")
    if scale is not None:
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"imresize: scale must be a positive number, got {scale}")
        out_hw = (int(math.ceil(scale * in_hw[0])), int(math.ceil(scale * in_hw[1])))
        return out_hw, (float(scale), float(scale))
    out_h, out_w = (int(v) for v in output_shape)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"imresize: output_shape must be positive, got {tuple(output_shape)}")
    return (out_h, out_w), (out_h / in_hw[0], out_w / in_hw[1])


def _matrices_in_order(
    in_hw: tuple[int, int],
    scale: float | None,
    output_shape: tuple[int, int] | None,
) -> list[tuple[int, np.ndarray]]:
    """``[(axis, matrix), ...]`` with the axis of smaller scale first (ties: height first)."""
    if min(in_hw) < 1:
        raise ValueError(f"imresize: empty image of size {in_hw[0]}x{in_hw[1]}")
    out_hw, scales = _plan(in_hw, scale, output_shape)
    order = np.argsort(np.asarray(scales), kind="stable")
    return [(int(a), cubic_resize_matrix(in_hw[a], out_hw[a], scales[a])) for a in order]


def imresize(
    img: np.ndarray,
    scale: float | None = None,
    output_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """MATLAB-style bicubic resize of an ``H x W`` or ``H x W x C`` array.

    Give ``scale`` (output/input, so 0.125 shrinks x8; the size is ``ceil(scale * size)``) or
    ``output_shape`` ``(h, w)``. Float in: the same float dtype out, unrounded and unclipped.
    uint8 in: treated as ``img / 255``, resized, clipped to [0, 1], ``* 255`` and rounded
    (half to even) back to uint8 -- exactly how MMEditing's GLEAN data scripts
    (``preprocess_cat_test_dataset.py``, ``preprocess_ffhq_celebahq_dataset.py``) write the
    ``BIx*_down`` PNGs from ``skimage.img_as_float`` input.
    """
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize: expected an HxW or HxWxC array, got shape {img.shape}")
    if img.dtype == np.uint8:
        work = img.astype(np.float64) / 255.0
    elif np.issubdtype(img.dtype, np.floating):
        work = img.astype(np.float64)
    else:
        raise TypeError(f"imresize: expected a uint8 or float array, got {img.dtype}")
    for axis, matrix in _matrices_in_order(img.shape[:2], scale, output_shape):
        work = apply_resize_matrix(work, matrix, axis)
    if img.dtype == np.uint8:
        return np.around(np.clip(work, 0.0, 1.0) * 255.0).astype(np.uint8)
    return work.astype(img.dtype, copy=False)


def imresize_torch(
    x: torch.Tensor,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """:func:`imresize` for a floating tensor ``[..., H, W]`` (e.g. ``N x C x H x W``), on its device.

    Same weights as the numpy version, applied as two matrix products in ``x``'s dtype;
    differentiable with respect to ``x``. No rounding or clipping is done.
    """
    import torch

    if x.dim() < 2 or not x.is_floating_point():
        raise ValueError(f"imresize_torch: expected a floating tensor [..., H, W], got {x.dtype} {tuple(x.shape)}")
    for axis, matrix in _matrices_in_order(tuple(x.shape[-2:]), scale, size):
        weights = torch.from_numpy(np.array(matrix)).to(device=x.device, dtype=x.dtype)
        x = torch.matmul(weights, x) if axis == 0 else torch.matmul(x, weights.T)
    return x
