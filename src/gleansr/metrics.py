"""Image-quality metrics exactly as MMEditing / MMagic define them for super-resolution.

All take two uint8 RGB ``H x W x 3`` arrays (after the restorer's clamp-and-round, see
:func:`gleansr.data.convert.tensor_to_uint8`), compute on all three RGB channels (no Y channel,
as GLEAN's configs do) in float64, and optionally ignore ``crop_border`` pixels on every edge.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import GleanError

__all__ = ["psnr", "ssim", "mae"]

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2


def _prepare(a: np.ndarray, b: np.ndarray, crop_border: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate a pair of images and return them cropped, as float64."""
    for name, img in (("first", a), ("second", b)):
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            desc = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
            raise GleanError(f"metrics: the {name} image must be a uint8 H x W x 3 RGB array, got {desc}")
    if a.shape != b.shape:
        raise GleanError(f"metrics: image sizes differ: {a.shape[:2]} vs {b.shape[:2]}")
    if crop_border < 0 or 2 * crop_border >= min(a.shape[:2]):
        raise GleanError(f"metrics: crop_border {crop_border} leaves nothing of a {a.shape[0]}x{a.shape[1]} image")
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    return a.astype(np.float64), b.astype(np.float64)


def psnr(a: np.ndarray, b: np.ndarray, crop_border: int = 0) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels, peak 255; ``inf`` if identical."""
    x, y = _prepare(a, b, crop_border)
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0 else 20.0 * math.log10(255.0 / math.sqrt(mse))


def mae(a: np.ndarray, b: np.ndarray, crop_border: int = 0) -> float:
    """Mean absolute error on the [0, 1] scale (MMagic's ``MAE``: both images divided by 255)."""
    x, y = _prepare(a, b, crop_border)
    return float(np.mean(np.abs(x / 255.0 - y / 255.0)))


def _gaussian_window() -> np.ndarray:
    """The 1-D 11-tap Gaussian (sigma 1.5) that ``cv2.getGaussianKernel(11, 1.5)`` returns."""
    offsets = np.arange(_SSIM_WINDOW, dtype=np.float64) - (_SSIM_WINDOW - 1) / 2
    taps = np.exp(-(offsets**2) / (2 * _SSIM_SIGMA**2))
    return taps / taps.sum()


def _filter_valid(img: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable ``outer(taps, taps)`` filter over H x W (x C), keeping only fully covered pixels."""
    k = len(taps)
    rows = sum(w * img[i : img.shape[0] - k + 1 + i] for i, w in enumerate(taps))
    return sum(w * rows[:, i : rows.shape[1] - k + 1 + i] for i, w in enumerate(taps))


def ssim(a: np.ndarray, b: np.ndarray, crop_border: int = 0) -> float:
    """Structural similarity (Wang et al. 2004) per RGB channel, averaged over the three channels.

    MMEditing's definition: 11 x 11 Gaussian window (sigma 1.5), statistics only where the
    window fits inside the image ('valid'), population covariances, C1 = (0.01 * 255)^2,
    C2 = (0.03 * 255)^2, the SSIM map averaged per channel, then the channel means averaged.
    """
    x, y = _prepare(a, b, crop_border)
    if min(x.shape[:2]) < _SSIM_WINDOW:
        raise GleanError(f"metrics: SSIM needs at least {_SSIM_WINDOW}x{_SSIM_WINDOW} pixels, got {x.shape[0]}x{x.shape[1]}")
    taps = _gaussian_window()
    mu_x, mu_y = _filter_valid(x, taps), _filter_valid(y, taps)
    var_x = _filter_valid(x * x, taps) - mu_x**2
    var_y = _filter_valid(y * y, taps) - mu_y**2
    cov = _filter_valid(x * y, taps) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + _SSIM_C1) * (2 * cov + _SSIM_C2)) / (
        (mu_x**2 + mu_y**2 + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    )
    return float(np.mean(ssim_map.mean(axis=(0, 1))))
