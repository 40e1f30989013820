"""The Python API for super-resolving images: :class:`Upscaler`.

GLEAN models are fixed-size. An image of exactly ``in_size`` goes in as it is; any other
size is centre-cropped to a square (when its aspect ratio differs) and brought to
``in_size`` with MATLAB-style bicubic (the resize the models were trained with; OpenCV/PIL
bicubic gives visibly worse results), unless ``resize=False``. Alpha is upscaled separately
(bicubic) and re-attached; grayscale stays grayscale; 16-bit stays 16-bit.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from ..data.imresize import imresize
from ..errors import GleanError
from ..models.glean import GLEANStyleGANv2
from .images import LoadedImage

from ..precision import PRECISIONS


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` -> the first CUDA device if present, else CPU; ``cuda`` without CUDA is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GleanError("--device cuda was asked for, but PyTorch sees no CUDA device")
    return dev


def resolve_model(model_or_preset: GLEANStyleGANv2 | str | os.PathLike, download: bool = False) -> GLEANStyleGANv2:
    """A ready GLEAN from a module, a zoo name (its weights) or any file the loader reads."""
    from ..zoo import load_model

    if isinstance(model_or_preset, GLEANStyleGANv2):
        return model_or_preset
    return load_model(model_or_preset, download=download)


def _center_square(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return a[top:top + s, left:left + s]


def _quantize_like(a: np.ndarray, bit_depth: int) -> np.ndarray:
    """Round to the source's levels, as the training LR files were stored."""
    top = (1 << bit_depth) - 1
    return np.rint(np.clip(a, 0.0, 1.0) * top).astype(np.float32) / top


@dataclass
class Prepared:
    """An image brought to the model's input size, with what was done to it."""

    rgb: np.ndarray  # (in, in, 3) float32 in [0, 1]
    alpha: np.ndarray | None
    source: LoadedImage
    notes: list[str] = field(default_factory=list)


def make_runner(model: GLEANStyleGANv2, device: torch.device, precision: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """x in [-1, 1] (N, 3, in, in) float32 -> raw model output float32, on ``device``: the fast
    inference snapshot (:mod:`gleansr.inference`), same function as the reference path."""
    from ..inference import build_inference_model

    return build_inference_model(model, device=device, precision=precision)


class Upscaler:
    """Super-resolve images with a GLEAN model.

    Args:
        model_or_preset: a GLEANStyleGANv2, a preset name, or a path to any GLEAN checkpoint.
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
        precision: ``fp32`` | ``bf16`` | ``fp16``.
        resize: bring other sizes to ``in_size`` (centre crop + MATLAB bicubic); False: error.
        download: allow fetching a preset's release weights.

    ``run(x)`` is the bare model call: x (N, 3, in, in) in [-1, 1] -> raw float32 output.
    """

    def __init__(self, model_or_preset: GLEANStyleGANv2 | str | os.PathLike, device: str = "auto",
                 precision: str = "fp32", resize: bool = True, download: bool = False):
        if precision not in PRECISIONS:
            raise GleanError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.model = resolve_model(model_or_preset, download=download).eval()
        self.device = pick_device(device)
        self.precision = precision
        self.resize = resize
        self.in_size, self.out_size = self.model.in_size, self.model.out_size
        self.run = make_runner(self.model, self.device, precision)

    @property
    def scale(self) -> int:
        return self.out_size // self.in_size

    # -- preparing inputs ---------------------------------------------------------------
    def prepare(self, image: LoadedImage, name: str = "image") -> Prepared:
        """Crop/resize to ``in_size`` as the models were trained (see module docstring)."""
        rgb, alpha = image.rgb, image.alpha
        h, w = rgb.shape[:2]
        notes = []
        if (h, w) != (self.in_size, self.in_size):
            if not self.resize:
                raise GleanError(f"{name} is {w}x{h}, the model takes exactly {self.in_size}x{self.in_size} "
                                 "(drop --no-resize to crop and resize it)")
            if h != w:
                rgb = _center_square(rgb)
                alpha = None if alpha is None else _center_square(alpha)
                notes.append(f"centre-cropped {w}x{h} to {rgb.shape[1]}x{rgb.shape[0]}")
            s = rgb.shape[0]
            rgb = _quantize_like(imresize(rgb, output_shape=(self.in_size, self.in_size)), image.bit_depth)
            if alpha is not None:
                alpha = np.clip(imresize(alpha, output_shape=(self.in_size, self.in_size)), 0, 1)
            notes.append(f"resized {s}x{s} to {self.in_size}x{self.in_size} (MATLAB bicubic)")
        return Prepared(np.ascontiguousarray(rgb, dtype=np.float32), alpha, image, notes)

    # -- running the model ----------------------------------------------------------------
    @torch.no_grad()
    def sr_arrays(self, rgbs: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """(N, in, in, 3) float in [0, 1] -> (N, out, out, 3) float32 in [0, 1] (the face pipeline's ``sr_fn``)."""
        x = torch.from_numpy(np.stack(rgbs)).permute(0, 3, 1, 2)
        y = self.run((x - 0.5) / 0.5)
        y = ((y.float() + 1) / 2).clamp_(0, 1)
        return y.permute(0, 2, 3, 1).cpu().numpy()

    def upscale_prepared(self, batch: Sequence[Prepared]) -> list[LoadedImage]:
        """SR results (out_size, float [0, 1]) keeping each source's alpha, bit depth and mode."""
        srs = self.sr_arrays([p.rgb for p in batch])
        results = []
        for p, sr in zip(batch, srs):
            alpha = None
            if p.alpha is not None:
                alpha = np.clip(imresize(p.alpha, output_shape=(self.out_size, self.out_size)), 0, 1).astype(np.float32)
            if p.source.grayscale:
                sr = np.repeat(sr.mean(axis=2, keepdims=True), 3, axis=2)
            results.append(LoadedImage(rgb=sr, alpha=alpha, bit_depth=p.source.bit_depth, grayscale=p.source.grayscale,
                                       mode=p.source.mode, format=p.source.format,
                                       icc_profile=p.source.icc_profile, exif=p.source.exif))
        return results

    def face_enhancer(self, **options):
        """A :class:`~gleansr.pipeline.faces.FaceEnhancer` whose face model is this upscaler
        (for whole photos with a face model); ``options`` go to FaceEnhancer."""
        from .faces import FaceEnhancer

        return FaceEnhancer(self.sr_arrays, self.in_size, self.out_size, **options)

    def upscale(self, image):
        """Super-resolve one PIL image or numpy array (H, W, 3|4 or H, W; uint8, uint16 or float in
        [0, 1]); returns the same kind (PIL mode / numpy dtype kept)."""
        return self.upscale_batch([image])[0]

    def upscale_batch(self, images: Sequence, batch_size: int = 8) -> list:
        """Super-resolve several images, ``batch_size`` at a time."""
        loaded = [to_loaded(im) for im in images]
        out: list = []
        for i in range(0, len(loaded), batch_size):
            chunk = loaded[i:i + batch_size]
            results = self.upscale_prepared([self.prepare(im) for im in chunk])
            out += [from_loaded(r, like) for r, like in zip(results, images[i:i + batch_size])]
        return out


# -- in-memory images <-> LoadedImage ------------------------------------------------------
def to_loaded(image) -> LoadedImage:
    """A PIL image or numpy array as a LoadedImage (float32 [0, 1])."""
    from PIL import Image

    if isinstance(image, Image.Image):
        from .images import image_from_pil

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


def from_loaded(result: LoadedImage, like):
    """Turn a result back into the kind of object the caller passed in."""
    from PIL import Image

    planes = [result.rgb[..., :1] if result.grayscale else result.rgb]
    if result.alpha is not None:
        planes.append(result.alpha[..., None])
    f = np.concatenate(planes, axis=2)
    if isinstance(like, Image.Image):
        u8 = np.rint(f * 255).astype(np.uint8)
        if f.shape[2] == 1 and result.bit_depth == 16:
            return Image.fromarray(np.rint(f[..., 0] * 65535).astype(np.uint16))
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[f.shape[2]]
        return Image.fromarray(u8[..., 0] if mode == "L" else u8, mode=mode)
    a = np.asarray(like)
    if a.ndim == 2:
        f = f[..., 0]
    if a.dtype == np.uint8:
        return np.rint(f * 255).astype(np.uint8)
    if a.dtype == np.uint16:
        return np.rint(f * 65535).astype(np.uint16)
    return f.astype(a.dtype)
