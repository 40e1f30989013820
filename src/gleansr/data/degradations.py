"""On-the-fly LR synthesis of the in128 preset (blur, shrink, noise, JPEG, resize, quantise).

Mirrors the ``lq`` branch of MMEditing's ``glean_in128out1024_4x2_300k_ffhq_celebahq.py``
training pipeline, stage by stage, with the config's values as :class:`DegradationParams`'
defaults. Upstream runs these stages with OpenCV; here they are re-implemented with numpy and
Pillow and follow OpenCV's definitions:

1. ``RandomBlur``: a 41 x 41 isotropic or anisotropic (p = 0.5 each) Gaussian, sigmas uniform
   in [0.2, 10], rotation uniform in [-3.1416, 3.1416]; ``cv2.filter2D`` (correlation, border
   ``BORDER_REFLECT_101``).
2. ``RandomResize``: always down, by a factor uniform in [1/32, 1]; size ``int(h * f)``;
   bilinear, area or bicubic (p = 1/3 each) with ``cv2.resize`` semantics (half-pixel centres,
   no anti-aliasing except area; bicubic uses a = -0.75; edges replicated).
3. ``RandomNoise``: additive Gaussian noise, sigma uniform in [0, 50] / 255, per channel, no clip.
4. ``RandomJPEGCompression``: quality ``round(uniform(5, 50))``, 4:2:0 chroma. OpenCV encodes
   the RGB array as if it were BGR, so the colour transform sees R and B swapped; we reproduce
   that by swapping the channels around the Pillow encode/decode.
5. ``RandomResize`` back to 1024 x 1024, bilinear / area / bicubic (p = 1/3 each).
6. ``Quantize``: ``clip(round(x * 255), 0, 255) / 255``.
7. ``RandomResize`` to 128 x 128 with area averaging.

The horizontal flip that follows upstream applies to HR and LR together, so it lives in the
dataset. Deviations: randomness comes from a ``numpy.random.Generator`` (upstream draws from the
global numpy / ``random`` state, so individual samples cannot be reproduced bit for bit); the
first resize keeps at least one pixel per side (OpenCV would raise on a zero size, which only
happens for images under 32 pixels); float64 arithmetic inside blur and resize.
"""
from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..imaging.imresize import apply_resize_matrix

__all__ = [
    "DegradationParams",
    "Degradation",
    "gaussian_blur_kernel",
    "random_blur_kernel",
    "blur",
    "resize",
    "add_gaussian_noise",
    "jpeg_compress",
    "quantize",
]

RESIZE_MODES = ("bilinear", "area", "bicubic")
_CUBIC_A = -0.75  # OpenCV's INTER_CUBIC


@dataclass(frozen=True)
class DegradationParams:
    """Degradation settings; the defaults are the in128 preset's (128 -> 1024, x8)."""

    hr_size: int = 1024  # the degraded image is resized back to this (square) size ...
    lr_size: int = 128  # ... then area-averaged down to this one
    blur_kernel_size: int = 41
    blur_kernel_types: tuple[str, ...] = ("iso", "aniso")
    blur_kernel_probs: tuple[float, ...] = (0.5, 0.5)
    blur_sigma_range: tuple[float, float] = (0.2, 10.0)
    blur_angle_range: tuple[float, float] = (-3.1416, 3.1416)
    downscale_range: tuple[float, float] = (0.03125, 1.0)
    resize_modes: tuple[str, ...] = RESIZE_MODES  # chosen with equal probability
    noise_sigma_range: tuple[float, float] = (0.0, 50.0)  # on the 0-255 scale
    jpeg_quality_range: tuple[float, float] = (5.0, 50.0)

    def __post_init__(self) -> None:
        if self.blur_kernel_size % 2 != 1:
            raise ValueError(f"blur_kernel_size must be odd, got {self.blur_kernel_size}")
        if not set(self.blur_kernel_types) <= {"iso", "aniso"}:
            raise ValueError(f"blur_kernel_types must be 'iso' / 'aniso', got {self.blur_kernel_types}")
        if len(self.blur_kernel_probs) != len(self.blur_kernel_types):
            raise ValueError("blur_kernel_probs must have one probability per kernel type")
        if not set(self.resize_modes) <= set(RESIZE_MODES):
            raise ValueError(f"resize_modes must be among {RESIZE_MODES}, got {self.resize_modes}")
        if self.hr_size < 1 or self.lr_size < 1:
            raise ValueError(f"hr_size and lr_size must be positive, got {self.hr_size}, {self.lr_size}")


def gaussian_blur_kernel(size: int, sigma_x: float, sigma_y: float, angle: float) -> np.ndarray:
    """``size x size`` bivariate Gaussian summing to 1, rotated by ``angle`` radians.

    ``sigma_x`` is along the image's horizontal axis before rotation; an isotropic kernel has
    ``sigma_y == sigma_x``. Row index is y, column index is x, both centred on the middle tap.
    """
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    covariance = rotation @ np.diag([sigma_x**2, sigma_y**2]) @ rotation.T
    offsets = np.arange(size, dtype=np.float64) - size // 2
    xy = np.stack(np.meshgrid(offsets, offsets), axis=-1)  # [..., 0] = x (column), [..., 1] = y (row)
    mahalanobis = np.einsum("...i,ij,...j->...", xy, np.linalg.inv(covariance), xy)
    kernel = np.exp(-0.5 * mahalanobis)
    return kernel / kernel.sum()


def random_blur_kernel(rng: np.random.Generator, params: DegradationParams) -> np.ndarray:
    """Draw a kernel as ``RandomBlur`` does: a type, then sigma_x, sigma_y and angle uniformly."""
    kind = params.blur_kernel_types[rng.choice(len(params.blur_kernel_types), p=params.blur_kernel_probs)]
    sigma_x = rng.uniform(*params.blur_sigma_range)
    sigma_y = rng.uniform(*params.blur_sigma_range)
    angle = rng.uniform(*params.blur_angle_range)
    if kind == "iso":
        return gaussian_blur_kernel(params.blur_kernel_size, sigma_x, sigma_x, 0.0)
    return gaussian_blur_kernel(params.blur_kernel_size, sigma_x, sigma_y, angle)


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``cv2.filter2D(img, -1, kernel)`` for H x W x C float images: correlation, reflect-101 border.

    Computed by FFT (as OpenCV does for large kernels); returns float32.
    """
    k_h, k_w = kernel.shape
    h, w = img.shape[:2]
    pad = ((k_h // 2, k_h // 2), (k_w // 2, k_w // 2), (0, 0))
    padded = np.pad(img.astype(np.float64), pad, mode="reflect")  # numpy's 'reflect' = BORDER_REFLECT_101
    shape = padded.shape[:2]
    flipped = kernel[::-1, ::-1]  # correlation = convolution with the flipped kernel
    spectrum = np.fft.rfft2(padded, axes=(0, 1)) * np.fft.rfft2(flipped, s=shape)[..., None]
    full = np.fft.irfft2(spectrum, s=shape, axes=(0, 1))
    return full[k_h - 1 : k_h - 1 + h, k_w - 1 : k_w - 1 + w].astype(np.float32)


def _opencv_cubic(frac: np.ndarray) -> np.ndarray:
    """OpenCV's 4 bicubic coefficients (a = -0.75) for fractional offsets ``frac``: shape (n, 4)."""
    a = _CUBIC_A
    x = frac + 1.0
    c0 = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    c1 = ((a + 2) * frac - (a + 3)) * frac * frac + 1
    y = 1.0 - frac
    c2 = ((a + 2) * y - (a + 3)) * y * y + 1
    return np.stack([c0, c1, c2, 1.0 - c0 - c1 - c2], axis=1)


def _area_shrink_matrix(in_len: int, out_len: int) -> np.ndarray:
    """OpenCV INTER_AREA when shrinking: each output averages the input cells it covers, fractionally."""
    scale = in_len / out_len
    matrix = np.zeros((out_len, in_len))
    for dst in range(out_len):
        start, stop = dst * scale, dst * scale + scale
        cell = min(scale, in_len - start)
        last = min(math.floor(stop), in_len - 1)
        first = min(math.ceil(start), last)
        if first - start > 1e-3:
            matrix[dst, first - 1] = (first - start) / cell
        matrix[dst, first:last] = 1.0 / cell
        if stop - last > 1e-3:
            matrix[dst, last] = min(stop - last, 1.0, cell) / cell
    return matrix


@functools.lru_cache(maxsize=128)
def _opencv_resize_matrix(in_len: int, out_len: int, mode: str, area_shrink: bool) -> np.ndarray:
    """``(out_len, in_len)`` weights of ``cv2.resize`` along one axis.

    ``area_shrink``: OpenCV uses true area averaging only when neither axis grows; otherwise
    INTER_AREA is a linear interpolation whose fractions snap to 0 (pixel replication for
    integer factors).
    """
    if mode == "area" and area_shrink:
        return _area_shrink_matrix(in_len, out_len)
    scale = in_len / out_len
    dst = np.arange(out_len, dtype=np.float64)
    if mode == "area":
        start = np.floor(dst * scale)
        frac = (dst + 1) - (start + 1) * (out_len / in_len)
        frac = np.where(frac <= 0, 0.0, frac - np.floor(frac))
    else:
        centre = (dst + 0.5) * scale - 0.5
        start = np.floor(centre)
        frac = centre - start
    if mode == "bicubic":
        taps = start[:, None] + np.arange(-1, 3)
        weights = _opencv_cubic(frac)
    else:  # bilinear, or area when enlarging: positions outside the image snap to the edge pixel
        below, above = start < 0, start >= in_len - 1
        start = np.where(below, 0.0, np.where(above, in_len - 1.0, start))
        frac = np.where(below | above, 0.0, frac)
        taps = start[:, None] + np.arange(2)
        weights = np.stack([1.0 - frac, frac], axis=1)
    source = np.clip(taps, 0, in_len - 1).astype(np.int64)  # BORDER_REPLICATE
    matrix = np.zeros((out_len, in_len))
    np.add.at(matrix, (np.broadcast_to(np.arange(out_len)[:, None], source.shape), source), weights)
    return matrix


def resize(img: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """``cv2.resize`` of an H x W x C float image to ``size = (h, w)``; ``mode`` in bilinear / area / bicubic."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    (in_h, in_w), (out_h, out_w) = img.shape[:2], size
    area_shrink = out_h <= in_h and out_w <= in_w
    rows = _opencv_resize_matrix(in_h, out_h, mode, area_shrink)
    cols = _opencv_resize_matrix(in_w, out_w, mode, area_shrink)
    out = apply_resize_matrix(img.astype(np.float64), rows, 0)
    return apply_resize_matrix(out, cols, 1).astype(np.float32)


def add_gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add independent N(0, (sigma / 255)^2) noise to every value; no clipping (as upstream)."""
    noise = rng.standard_normal(img.shape).astype(np.float32) * np.float32(sigma / 255.0)
    return img.astype(np.float32) + noise


def jpeg_compress(img: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip of an RGB float image in [0, 1] (saturated to uint8 first); returns float32."""
    as_uint8 = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    as_bgr = np.ascontiguousarray(as_uint8[..., ::-1])  # OpenCV treats the RGB array as BGR
    Image.fromarray(as_bgr).save(buffer, format="JPEG", quality=int(quality), subsampling="4:2:0")
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        back = np.asarray(decoded.convert("RGB"))[..., ::-1]
    return back.astype(np.float32) / 255.0


def quantize(img: np.ndarray) -> np.ndarray:
    """Snap to the 256 uint8 levels and clip to [0, 1], staying float32."""
    return (np.clip(np.rint(img * 255.0), 0, 255) / 255.0).astype(np.float32)


class Degradation:
    """The in128 degradation pipeline: HR RGB image -> float32 ``lr_size x lr_size x 3`` LR in ~[0, 1].

    Call with a seeded ``numpy.random.Generator``; the same seed gives the same LR.
    """

    def __init__(self, params: DegradationParams | None = None) -> None:
        self.params = params or DegradationParams()

    def __call__(self, hr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``hr``: uint8 (0-255) or float (0-1) ``H x W x 3``."""
        if hr.ndim != 3 or hr.shape[2] != 3:
            raise ValueError(f"Degradation: expected an H x W x 3 image, got shape {hr.shape}")
        p = self.params
        img = hr.astype(np.float32) / 255.0 if hr.dtype == np.uint8 else hr.astype(np.float32)

        img = blur(img, random_blur_kernel(rng, p))
        factor = rng.uniform(*p.downscale_range)
        small = (max(1, int(img.shape[0] * factor)), max(1, int(img.shape[1] * factor)))
        img = resize(img, small, self._random_mode(rng))
        img = add_gaussian_noise(img, rng.uniform(*p.noise_sigma_range), rng)
        img = jpeg_compress(img, round(rng.uniform(*p.jpeg_quality_range)))
        img = resize(img, (p.hr_size, p.hr_size), self._random_mode(rng))
        img = quantize(img)
        return resize(img, (p.lr_size, p.lr_size), "area")

    def _random_mode(self, rng: np.random.Generator) -> str:
        return self.params.resize_modes[rng.integers(len(self.params.resize_modes))]
