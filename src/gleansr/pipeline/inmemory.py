"""Images as callers hand them over (PIL, numpy, a path) <-> :class:`LoadedImage`, and back.

The Upscaler and the face path take the same inputs and give back the same kind they got, so
these conversions live here once.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import GleanError
from .images import LoadedImage, image_from_pil, load_image, quantize


def to_loaded(image) -> LoadedImage:
    """A PIL image, numpy array (uint8, uint16 or float in [0, 1]; (H, W) or (H, W, 1-4)) or an
    image file path as a LoadedImage (float32 [0, 1])."""
    from PIL import Image

    if isinstance(image, LoadedImage):
        return image
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if isinstance(image, Image.Image):
        return image_from_pil(image)
    a = np.asarray(image)
    if a.dtype == np.uint8:
        f, depth = a.astype(np.float32) / 255, 8
    elif a.dtype == np.uint16:
        f, depth = a.astype(np.float32) / 65535, 16
    elif np.issubdtype(a.dtype, np.floating):
        f, depth = np.clip(a.astype(np.float32), 0, 1), 16
    else:
        raise GleanError(f"unsupported array dtype {a.dtype}; use uint8, uint16 or float in [0, 1]")
    if f.ndim == 2:
        f = f[..., None]
    if f.ndim != 3 or f.shape[2] not in (1, 2, 3, 4):
        raise GleanError(f"unsupported array shape {a.shape}; use (H, W), (H, W, 3) or (H, W, 4)")
    c = f.shape[2]
    has_alpha = c in (2, 4)
    colour = f[..., : c - has_alpha]
    return LoadedImage(rgb=np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else np.ascontiguousarray(colour),
                       alpha=f[..., -1].copy() if has_alpha else None, bit_depth=depth, grayscale=c <= 2,
                       mode=f"array{c}", format=None)


def to_planes(image: LoadedImage) -> np.ndarray:
    """The image as one float32 (H, W, C) array in [0, 1], C = 1|2 grey(+alpha), 3|4 RGB(+alpha): the
    layout :func:`to_loaded` reads back."""
    planes = [image.rgb[..., :1] if image.grayscale else image.rgb]
    if image.alpha is not None:
        planes.append(image.alpha[..., None])
    return np.concatenate(planes, axis=2)


def from_loaded(result: LoadedImage, like):
    """``result`` as the kind of object the caller passed in: a PIL image for PIL images and
    paths (16-bit only for grayscale, as Pillow holds colour in 8 bits), else a numpy array of
    the input's dtype and layout; a LoadedImage for a LoadedImage."""
    from PIL import Image

    if isinstance(like, LoadedImage):
        return result
    f = to_planes(result)
    if isinstance(like, (Image.Image, str, os.PathLike)):
        if f.shape[2] == 1 and result.bit_depth == 16:
            return Image.fromarray(quantize(f[..., 0], 16))
        u8 = quantize(f, 8)
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[f.shape[2]]
        return Image.fromarray(u8[..., 0] if mode == "L" else u8, mode=mode)
    a = np.asarray(like)
    if a.ndim == 2:
        f = f[..., 0]
    if a.dtype == np.uint8:
        return quantize(f, 8)
    if a.dtype == np.uint16:
        return quantize(f, 16)
    return f.astype(a.dtype)
