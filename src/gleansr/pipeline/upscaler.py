"""The Python API for super-resolving images: :class:`Upscaler`.

GLEAN models are fixed-size and restore small images of one kind (the model's domain). An image
of exactly ``in_size`` goes in as it is. With ``resize="up"`` (the default) an image whose
shorter side is at most ``in_size`` is centre-cropped to a square and brought to ``in_size`` with
MATLAB-style bicubic (the resize the models were trained with); a larger one is refused with a
message, since shrinking it to the model's input would throw most of it away: ``resize="any"``
shrinks it anyway, ``resize="exact"`` takes only ``in_size``. Whole photos of faces go through
:meth:`Upscaler.upscale_photo` with a face model. Alpha is upscaled separately (bicubic) and
re-attached; grayscale stays grayscale; 16-bit stays 16-bit.

The model run is a *runner*: ``(N, 3, in, in)`` float32 in [-1, 1] -> ``(N, 3, out, out)`` float32
raw output, numpy in and out; PyTorch (``backend="torch"``) or ONNX Runtime (``backend="onnx"``).
One lock around it makes an Upscaler safe to share between threads (the CUDA-graph snapshot is
not re-entrant); preparing inputs runs in parallel. Importing this module does not import torch.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import GleanError
from ..precision import CHOICES, resolve_precision
from .images import LoadedImage, center_square, quantize
from .inmemory import from_loaded, to_loaded

Runner = Callable[[np.ndarray], np.ndarray]
RESIZE = ("exact", "up", "any")
BACKENDS = ("torch", "onnx")


def pick_device(device: str = "auto"):
    """``auto`` -> the first CUDA device if present, else CPU; ``cuda`` without CUDA is an error."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GleanError("--device cuda was asked for, but PyTorch sees no CUDA device")
    return dev


def describe(entry) -> str:
    """How messages name a model: ``glean_glyphs_8x (glyphs: text glyphs, black on white)``."""
    return "the model" if entry is None else f"{entry.name} ({entry.domain}: {entry.input_kind})"


def too_large_for(w: int, h: int, in_size: int) -> bool:
    """Whether a w x h image would have to be shrunk to fit the model's input (its shorter side is
    larger): refused unless asked, since shrinking throws most of it away."""
    return min(w, h) > in_size


def too_large(name: str, w: int, h: int, model: str, in_size: int, force: str, faces: str) -> str:
    """The one-line refusal for an input larger than the model's input (``force``/``faces``: how
    the caller shrinks anyway / treats a face photo)."""
    return (f"{name} is {w}x{h}, larger than the {in_size}x{in_size} input of {model}: GLEAN restores small "
            f"images of one kind, and shrinking this one to {in_size}x{in_size} would throw most of it away; "
            f"for photos of faces use {faces}, to shrink it anyway use {force}, "
            "and `gleansr models` lists the models with their domains")


@dataclass
class Prepared:
    """An image brought to the model's input size, with what was done to it."""

    rgb: np.ndarray  # (in, in, 3) float32 in [0, 1]
    alpha: np.ndarray | None
    source: LoadedImage
    notes: list[str] = field(default_factory=list)


def torch_runner(model, device, precision: str) -> Runner:
    """The fast inference snapshot (:mod:`gleansr.inference`) as a numpy runner."""
    import torch

    from ..inference import build_inference_model

    net = build_inference_model(model, device=device, precision=precision)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            y = net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        return y.float().cpu().numpy()

    return run


def onnx_runner(path: str | os.PathLike):
    """``gleansr.onnx.runtime.OnnxRunner`` for ``path``; GleanError when ONNX support is missing."""
    try:
        from ..onnx.runtime import OnnxRunner
    except ModuleNotFoundError as exc:
        if exc.name == "onnxruntime":
            raise GleanError("backend 'onnx' needs onnxruntime: pip install 'gleansr[onnx]'") from None
        if exc.name and exc.name.startswith("gleansr.onnx"):
            raise GleanError("backend 'onnx' needs gleansr's ONNX support (gleansr.onnx), "
                             "which this installation lacks; use backend 'torch'") from None
        raise
    if not Path(path).is_file():
        raise GleanError(f"ONNX model {path} does not exist")
    return OnnxRunner(str(path))


class Upscaler:
    """Super-resolve images with a GLEAN model.

    Args:
        model: a zoo model name (e.g. ``"glean_glyphs_8x"``), a path to any GLEAN weights file, a
            GLEANStyleGANv2, or with ``backend="onnx"`` an exported ``.onnx`` file.
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` (torch backend).
        precision: ``auto`` (default: bf16 where the hardware has native bf16 units and this model's
            bf16 output is known to stay >= 50 dB against fp32, else fp32; ``precision_reason``
            says which and why) or one of :data:`gleansr.precision.PRECISIONS` (torch backend).
        resize: ``up`` (default): inputs no larger than ``in_size`` are cropped and resized, larger
            ones refused; ``any``: larger ones are shrunk too; ``exact``: only ``in_size``.
        download: allow fetching a zoo model's release weights.
        face_model: the model takes aligned face crops (needed by :meth:`upscale_photo`); default:
            what the zoo says, False for files and modules.

    ``entry``: the model's zoo facts (domain, face_model, sizes) when built from a zoo name.
    ``run(x)`` is the bare, locked model call (the runner contract in the module docstring).
    """

    def __init__(self, model, device: str = "auto", precision: str = "auto", resize: str = "up",
                 download: bool = False, backend: str = "torch", face_model: bool | None = None):
        if precision not in CHOICES:
            raise GleanError(f"precision must be one of {', '.join(CHOICES)}, got {precision!r}")
        if resize not in RESIZE:
            raise GleanError(f"resize must be one of {', '.join(RESIZE)}, got {resize!r}")
        if backend not in BACKENDS:
            raise GleanError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.resize, self.backend = resize, backend
        self.entry, self.model, self.precision_reason = None, None, None
        if backend == "onnx":
            from .. import zoo

            self._runner = onnx_runner(model)
            self.name, self.device = self._runner.name, device
            self.in_size, self.out_size = self._runner.in_size, self._runner.out_size
            if self.name in zoo.ZOO:
                self.entry = zoo.get_entry(self.name)
            self.precision = self._runner.meta.get("precision", "fp32")  # the file's own
        else:
            self.model, self.entry, self.name = _resolve(model, download)
            self.model.eval()
            self.device = pick_device(device)
            self.in_size, self.out_size = self.model.in_size, self.model.out_size
            self.precision, self.precision_reason = resolve_precision(
                precision, self.device.type, self.entry.bf16_psnr if self.entry else None, _capability(self.device))
            self._runner = torch_runner(self.model, self.device, self.precision)
        self.face_model = bool(self.entry and self.entry.face_model) if face_model is None else face_model
        self._lock = threading.Lock()
        self._enhancers: dict = {}

    @property
    def scale(self) -> int:
        return self.out_size // self.in_size

    def run(self, x: np.ndarray) -> np.ndarray:
        """x (N, 3, in, in) float32 in [-1, 1] -> raw output (N, 3, out, out) float32; thread-safe."""
        with self._lock:
            return np.asarray(self._runner(x), dtype=np.float32)

    # -- preparing inputs ---------------------------------------------------------------
    def prepare(self, image: LoadedImage, name: str = "image") -> Prepared:
        """Crop/resize to ``in_size`` as the models were trained (see the module docstring)."""
        rgb, alpha = image.rgb, image.alpha
        h, w = rgb.shape[:2]
        notes = []
        if (h, w) == (self.in_size, self.in_size):
            return Prepared(np.ascontiguousarray(rgb, dtype=np.float32), alpha, image, notes)
        if self.resize == "exact":
            raise GleanError(f"{name} is {w}x{h}, the model takes exactly {self.in_size}x{self.in_size}")
        if self.resize == "up" and too_large_for(w, h, self.in_size):
            raise GleanError(too_large(name, w, h, describe(self.entry), self.in_size,
                                       force="resize='any'", faces="upscale_photo() with a face model"))
        if h != w:
            rgb = center_square(rgb)
            alpha = None if alpha is None else center_square(alpha)
            notes.append(f"centre-cropped {w}x{h} to {rgb.shape[1]}x{rgb.shape[0]}")
        from ..imaging.imresize import imresize

        s, size = rgb.shape[0], (self.in_size, self.in_size)
        # rounded to the source's levels, as the training LR files were stored
        rgb = quantize(imresize(rgb, output_shape=size), image.bit_depth) / np.float32((1 << image.bit_depth) - 1)
        if alpha is not None:
            alpha = np.clip(imresize(alpha, output_shape=size), 0, 1)
        notes.append(f"resized {s}x{s} to {self.in_size}x{self.in_size} (MATLAB bicubic)")
        return Prepared(np.ascontiguousarray(rgb, dtype=np.float32), alpha, image, notes)

    # -- running the model ----------------------------------------------------------------
    def sr_arrays(self, rgbs: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """(N, in, in, 3) float in [0, 1] -> (N, out, out, 3) float32 in [0, 1] (the face path's ``sr_fn``)."""
        x = np.stack(rgbs).astype(np.float32).transpose(0, 3, 1, 2)
        y = self.run((x - 0.5) / 0.5)
        return np.clip((y + 1) / 2, 0, 1).transpose(0, 2, 3, 1)

    def sr_uint8(self, lrs: np.ndarray) -> np.ndarray:
        """uint8 (N, in, in, 3) -> uint8 (N, out, out, 3), the restorer's mapping (for evaluation)."""
        if lrs.dtype != np.uint8 or lrs.ndim != 4 or lrs.shape[1:] != (self.in_size, self.in_size, 3):
            raise GleanError(f"expected uint8 (N, {self.in_size}, {self.in_size}, 3), got {lrs.dtype} {lrs.shape}")
        from .images import to_uint8

        return to_uint8(self.sr_arrays(lrs.astype(np.float32) / 255))

    def upscale_prepared(self, batch: Sequence[Prepared]) -> list[LoadedImage]:
        """SR results (out_size, float [0, 1]) keeping each source's alpha, bit depth and mode."""
        from ..imaging.imresize import imresize

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

    def upscale(self, image):
        """Super-resolve one image: PIL, numpy (H, W[, 1-4]; uint8, uint16 or float in [0, 1]) or a
        file path; returns the same kind (a PIL image for a path)."""
        return self.upscale_batch([image])[0]

    def upscale_batch(self, images: Sequence, batch_size: int = 8) -> list:
        """Super-resolve several images, ``batch_size`` at a time."""
        out: list = []
        for i in range(0, len(images), batch_size):
            chunk = images[i:i + batch_size]
            prepared = [self.prepare(to_loaded(im), _label(im)) for im in chunk]
            out += [from_loaded(r, like) for r, like in zip(self.upscale_prepared(prepared), chunk)]
        return out

    # -- whole photos with a face model ------------------------------------------------------
    def face_enhancer(self, **options):
        """A :class:`~gleansr.pipeline.faces.FaceEnhancer` whose face model is this upscaler;
        ``options`` go to FaceEnhancer. GleanError unless this is a face model."""
        if not self.face_model:
            what = f"{self.entry.name} is a {self.entry.domain} model" if self.entry else "this model is not known"
            from ..zoo import face_model_names

            faces = ", ".join(face_model_names())
            raise GleanError(f"{what}, not a face model: whole photos need a model of aligned face crops "
                             f"({faces}), or face_model=True for your own")
        from .faces import FaceEnhancer

        return FaceEnhancer(self.sr_arrays, self.in_size, self.out_size, **options)

    def upscale_photo(self, photo, scale: int | None = None, **options):
        """A whole photo upscaled by ``scale`` (default: the model's), its faces by the model and
        the rest bicubic: a :class:`~gleansr.pipeline.faces.FaceResult`. ``photo``: what
        :meth:`upscale` takes; ``options``: FaceEnhancer's (``only``, ``min_face``, ``landmarks``,
        ...). The enhancer (face detector included) is built once per set of options."""
        key = tuple(sorted(options.items()))
        with self._lock:
            enhancer = self._enhancers.get(key)
        if enhancer is None:
            enhancer = self.face_enhancer(**options)
            with self._lock:
                enhancer = self._enhancers.setdefault(key, enhancer)
        return enhancer.enhance(photo, scale or self.scale)


def _capability(device) -> tuple[int, int] | None:
    """A CUDA device's compute capability (None elsewhere): bf16 tensor cores need 8.0."""
    if device.type != "cuda":
        return None
    import torch

    return torch.cuda.get_device_capability(device)


def _label(image) -> str:
    return str(image) if isinstance(image, (str, os.PathLike)) else "image"


def _resolve(model, download: bool):
    """(GLEAN module, zoo entry or None, name) from a module, a zoo name or any file the loader reads."""
    from .. import zoo
    from ..models.glean import GLEANStyleGANv2

    if isinstance(model, GLEANStyleGANv2):
        return model, None, "model"
    name = str(model)
    entry = zoo.ZOO.get(name)
    return zoo.load_model(name, download=download), entry, name if entry else Path(name).name
