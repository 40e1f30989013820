"""Image-quality metrics exactly as MMEditing / MMagic define them for super-resolution, and stroke
accuracy for dark-on-light line art (glyphs), which they lack.

All take two uint8 RGB ``H x W x 3`` arrays (after the restorer's clamp-and-round, see
:func:`gleansr.imaging.convert.tensor_to_uint8`). PSNR / SSIM / MAE compute on all three RGB channels
(no Y channel, as GLEAN's configs do) in float64, and optionally ignore ``crop_border`` pixels on
every edge. :func:`stroke_f1` and :func:`stroke_iou` are not MMEditing's: PSNR rewards a blurred
guess, which hedges between stroke and paper, whereas these binarise both images and ask whether
the strokes (and their outlines) are where the original has them.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import GleanError

__all__ = ["psnr", "ssim", "mae", "stroke_f1", "stroke_iou"]

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2
STROKE_THRESHOLD = 128  # grey below this is ink: glyphs are dark on white


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


# -- stroke accuracy ------------------------------------------------------------------------
def _strokes(a: np.ndarray, b: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """Both images' ink masks: grey (the mean of R, G, B) darker than ``threshold``."""
    x, y = _prepare(a, b, 0)
    return x.mean(axis=2) < threshold, y.mean(axis=2) < threshold


def _boundary(ink: np.ndarray) -> np.ndarray:
    """Ink pixels with a paper 4-neighbour. The frame repeats the edge pixels, so ink cut by the
    image border has no outline there (the border is not a stroke edge)."""
    p = np.pad(ink, 1, mode="edge")
    inner = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return ink & ~inner


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within ``radius`` of the mask in the chessboard metric (a square structuring element)."""
    p = np.pad(mask, radius)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= p[dy:dy + h, dx:dx + w]
    return out


def stroke_f1(sr: np.ndarray, hr: np.ndarray, threshold: int = STROKE_THRESHOLD, tolerance: int = 1) -> float:
    """F1 of the stroke outlines of ``sr`` against those of ``hr``, each outline pixel matched within
    ``tolerance`` pixels (chessboard distance): a shape-level score PSNR cannot give.

    Both images are binarised (ink = grey < ``threshold``); an outline pixel is an ink pixel with a
    paper 4-neighbour. Precision is the share of SR outline pixels within ``tolerance`` of an HR
    outline pixel, recall the share of HR outline pixels within ``tolerance`` of an SR one; F1 is
    their harmonic mean. The tolerance forgives the half-pixel placement noise of any resampling,
    so a blur that keeps the 50% contour in place is not punished, while a lost thin stroke, a
    filled counter, a rounded corner or a wobbling edge is. No outline in either image: 1.0 (both
    blank); in only one of them: 0.0.
    """
    if tolerance < 0:
        raise GleanError(f"metrics: stroke tolerance must be >= 0, got {tolerance}")
    sr_edge, hr_edge = (_boundary(ink) for ink in _strokes(sr, hr, threshold))
    n_sr, n_hr = int(sr_edge.sum()), int(hr_edge.sum())
    if n_sr == 0 or n_hr == 0:
        return 1.0 if n_sr == n_hr else 0.0
    precision = np.count_nonzero(sr_edge & _dilate(hr_edge, tolerance)) / n_sr
    recall = np.count_nonzero(hr_edge & _dilate(sr_edge, tolerance)) / n_hr
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def stroke_iou(sr: np.ndarray, hr: np.ndarray, threshold: int = STROKE_THRESHOLD) -> float:
    """Intersection over union of the two ink masks (grey < ``threshold``); 1.0 when both are blank.

    Complements :func:`stroke_f1`: area, not outline, so a stroke drawn too bold or too thin counts.
    """
    sr_ink, hr_ink = _strokes(sr, hr, threshold)
    union = np.count_nonzero(sr_ink | hr_ink)
    return 1.0 if union == 0 else np.count_nonzero(sr_ink & hr_ink) / union
