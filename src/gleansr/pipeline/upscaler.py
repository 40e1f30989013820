"""The Python API for super-resolving images: :class:`Upscaler`.

GLEAN models are fixed-size and restore small images of one kind (the model's domain). What is
done to an input that is not the model's size is :mod:`gleansr.pipeline.policy`'s answer
(:meth:`Upscaler.check`): with ``resize="up"`` (the default) an image whose shorter side is at
most ``in_size`` is centre-cropped to a square and brought to ``in_size`` with MATLAB-style
bicubic (the resize the models were trained with); a larger one is refused with a sentence,
``resize="any"`` shrinks it anyway, ``resize="exact"`` takes only ``in_size``. Whole photos of
faces go through :meth:`Upscaler.upscale_photo` with a face model. Alpha is upscaled separately
(bicubic) and re-attached; grayscale stays grayscale; 16-bit stays 16-bit.

The model run is a *runner* (:class:`Runner`): ``(N, 3, in, in)`` float32 in [-1, 1] ->
``(N, 3, out, out)`` float32 raw output, numpy in and out. :class:`TorchRunner` is PyTorch's fast
snapshot; a deployment layer brings its own (``gleansr.onnx.runtime.OnnxRunner``), so this module
imports neither training nor deployment code. One lock around the run makes an Upscaler safe to
share between threads (the CUDA-graph snapshot is not re-entrant); preparing inputs runs in
parallel. Importing this module does not import torch.
"""
from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import GleanError
from ..precision import CHOICES, resolve_auto
from .images import LoadedImage, center_square, quantize
from .inmemory import from_loaded, to_loaded
from .policy import (MAX_RESIZE_PIXELS, ModelFacts, Resize, Verdict, adjustments, face_model_verdict, model_facts,
                     size_verdict)


@runtime_checkable
class Runner(Protocol):
    """A model run: what the Upscaler calls; ``precision`` is what it computes in."""

    name: str
    in_size: int
    out_size: int
    precision: str

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


class TorchRunner:
    """A GLEAN module's fast inference snapshot (:mod:`gleansr.inference`) as a :class:`Runner`."""

    def __init__(self, model, device, precision: str, name: str = "the model"):
        from ..inference import build_inference_model

        self.name, self.device, self.precision = name, device, precision
        self.in_size, self.out_size = model.in_size, model.out_size
        self._net = build_inference_model(model, device=device, precision=precision)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            y = self._net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        return y.float().cpu().numpy()


@dataclass
class Prepared:
    """An image brought to the model's input size (``image``, pixels ``in_size`` square, the
    source's metadata kept, nothing of its full-size pixels), its verdict and what was done to it."""

    image: LoadedImage
    verdict: Verdict
    notes: list[tuple[str, str]] = field(default_factory=list)  # (kind, sentence): policy.adjustments


class Upscaler:
    """Super-resolve images with a GLEAN model.

    Args:
        model: a zoo model name (e.g. ``"glean_glyphs_8x"``), a path to any GLEAN weights file, a
            GLEANStyleGANv2, or a ready :class:`Runner` (e.g. ``OnnxRunner("m.onnx")``).
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` (torch models; :func:`gleansr.hardware.resolve_device`).
        precision: ``auto`` (default: see :func:`gleansr.precision.resolve_auto`;
            ``precision_reason`` says which and why) or one of :data:`gleansr.precision.PRECISIONS`.
            A runner keeps its own.
        resize: ``up`` (default), ``any`` or ``exact``: :class:`gleansr.pipeline.policy.Resize`.
        download: allow fetching a zoo model's release weights.
        face_model: the model takes aligned face crops (needed by :meth:`upscale_photo`); default:
            what the zoo says, False for files and modules.
        max_resize_pixels: the largest centre square shrunk with ``resize="any"``.

    ``entry``: the model's zoo facts when it is a zoo model; ``facts``: what the input policy uses.
    ``run(x)`` is the bare, locked model call (the runner contract in the module docstring).
    """

    def __init__(self, model, device: str = "auto", precision: str = "auto", resize: str = "up",
                 download: bool = False, face_model: bool | None = None,
                 max_resize_pixels: int = MAX_RESIZE_PIXELS):
        from .. import zoo

        if precision not in CHOICES:
            raise GleanError(f"precision must be one of {', '.join(CHOICES)}, got {precision!r}")
        try:
            self.resize = Resize(resize)
        except ValueError:
            raise GleanError(f"resize must be one of {', '.join(r.value for r in Resize)}, got {resize!r}") from None
        self.max_resize_pixels = max_resize_pixels
        self.model, self.precision_reason = None, None
        if isinstance(model, Runner):
            self._runner, self.name, self.device = model, model.name, getattr(model, "device", "runner")
            self.entry = zoo.ZOO.get(self.name)
            self.precision = model.precision
        else:
            from ..hardware import resolve_device

            self.model, self.entry, self.name = _resolve(model, download)
            self.model.eval()
            self.device = resolve_device(device)
            self.precision, self.precision_reason = resolve_auto(precision, self.model, self.device, self.entry, model)
            self._runner = TorchRunner(self.model, self.device, self.precision, self.name)
        self.in_size, self.out_size = self._runner.in_size, self._runner.out_size
        self.face_model = bool(self.entry and self.entry.face_model) if face_model is None else face_model
        self._lock = threading.Lock()
        self._enhancers: dict = {}

    @property
    def scale(self) -> int:
        return self.out_size // self.in_size

    @property
    def facts(self) -> ModelFacts:
        """This model as the input policy sees it."""
        return model_facts(self.entry, name=self.name, in_size=self.in_size, face_model=self.face_model)

    def run(self, x: np.ndarray) -> np.ndarray:
        """x (N, 3, in, in) float32 in [-1, 1] -> raw output (N, 3, out, out) float32; thread-safe."""
        with self._lock:
            return np.asarray(self._runner(x), dtype=np.float32)

    # -- preparing inputs ---------------------------------------------------------------
    def check(self, image: LoadedImage | tuple[int, int], name: str = "the image") -> Verdict:
        """The input policy's verdict for an image (or its ``(width, height)``) with this model."""
        width, height = image if isinstance(image, tuple) else image.rgb.shape[1::-1]
        return size_verdict(width, height, self.facts, self.resize, name=name,
                            max_resize_pixels=self.max_resize_pixels)

    def prepare(self, image: LoadedImage, name: str = "the image") -> Prepared:
        """Crop/resize to ``in_size`` as the models were trained; :class:`~.policy.Refusal` when the
        policy says no."""
        verdict = self.check(image, name)
        verdict.refuse()
        height, width = image.rgb.shape[:2]
        rgb, alpha = image.rgb, image.alpha
        if verdict.crop:
            rgb = center_square(rgb)
            alpha = None if alpha is None else center_square(alpha)
        if verdict.resize:
            from ..imaging.imresize import imresize

            size = (self.in_size, self.in_size)
            # rounded to the source's levels, as the training LR files were stored
            rgb = quantize(imresize(rgb, output_shape=size), image.bit_depth) / np.float32((1 << image.bit_depth) - 1)
            if alpha is not None:
                alpha = np.clip(imresize(alpha, output_shape=size), 0, 1)
        small = dataclasses.replace(image, rgb=np.ascontiguousarray(rgb, dtype=np.float32), alpha=alpha)
        return Prepared(small, verdict, adjustments(width, height, verdict, self.in_size))

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
        srs = self.sr_arrays([p.image.rgb for p in batch])
        return [p.image.rebuilt(sr) for p, sr in zip(batch, srs)]

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
        ``options`` go to FaceEnhancer. :class:`~.policy.Refusal` unless this is a face model."""
        face_model_verdict(self.facts).refuse()  # facts carry face_model: the zoo's, or the caller's word
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


def _label(image) -> str:
    return str(image) if isinstance(image, (str, os.PathLike)) else "the image"


def _resolve(model, download: bool):
    """(GLEAN module, zoo entry or None, name) from a module, a zoo name or any file the loader reads."""
    from .. import zoo
    from ..models.glean import GLEANStyleGANv2

    if isinstance(model, GLEANStyleGANv2):
        return model, None, "the model"
    name = str(model)
    entry = zoo.ZOO.get(name)
    return zoo.load_model(name, download=download), entry, name if entry else Path(name).name
