"""Whole photos with a face model: detect, align, super-resolve, paste back.

A face GLEAN (``glean_ffhq_16x``: 64 -> 1024, ``glean_in128out1024``: 128 -> 1024) only takes an
aligned FFHQ-style crop. :class:`FaceEnhancer` upscales the whole photo with a background
upscaler (bicubic unless given), finds the faces (dlib, see face_detect), cuts each one out as
an FFHQ crop of the model's input size (see face_align), runs the face model on the crops and
warps every result back into the upscaled photo, blended over a feathered band so no seam shows.
Pixels away from faces are exactly the background upscaler's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import threading

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ..errors import GleanError
from . import face_align as fa
from .face_detect import FaceDetector, dlib_pixels
from .images import LoadedImage, save_image
from .inmemory import from_loaded, to_loaded

SrFn = Callable[[np.ndarray], np.ndarray]
BackgroundFn = Callable[[np.ndarray, int], np.ndarray]
ONLY = ("all", "largest", "center")


def bicubic_upscale(photo: np.ndarray, scale: int) -> np.ndarray:
    """(H, W, 3) float in [0, 1] -> (H*scale, W*scale, 3), PyTorch bicubic, clipped to [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(photo, dtype=np.float32)).permute(2, 0, 1)[None]
    y = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    return y[0].permute(1, 2, 0).clamp_(0.0, 1.0).numpy()


@dataclass
class FaceInfo:
    """What happened to one detected face (coordinates in the input photo's pixels).

    ``quad``: the FFHQ crop square (4, 2), corners top-left, bottom-left, bottom-right, top-right.
    ``crop_size``: its side in photo pixels. ``to_aligned``: affine (2, 3) from photo coordinates
    to the aligned crop's ([0, in_size]^2). ``restored``: True when the face was super-resolved
    and pasted back, else ``note`` says why not. ``aligned``/``sr``: the crops, when kept.
    """

    index: int
    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray
    quad: np.ndarray
    crop_size: float
    to_aligned: np.ndarray
    outside: float  # fraction of the crop square lying outside the photo
    restored: bool = False
    note: str = ""
    aligned: np.ndarray | None = None
    sr: np.ndarray | None = None


@dataclass
class FaceResult:
    """The upscaled photo, every detected face, and messages.

    ``image``: the photo upscaled, as the kind :meth:`FaceEnhancer.enhance` was given (PIL for PIL
    images and paths, else a numpy array of the input's dtype). ``loaded``: the same as a
    LoadedImage (float32 (H*scale, W*scale, 3) in [0, 1], alpha, bit depth, metadata) for saving.
    """

    image: object
    loaded: LoadedImage
    faces: list[FaceInfo] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @property
    def restored(self) -> list[FaceInfo]:
        return [f for f in self.faces if f.restored]


def _outside_fraction(quad: np.ndarray, h: int, w: int, samples: int = 32) -> float:
    """Share of the crop square that falls outside the photo, sampled on a grid."""
    t = (np.arange(samples) + 0.5) / samples
    u, v = np.meshgrid(t, t)
    a, b, d = quad[0], quad[1], quad[3]
    points = a + u[..., None] * (d - a) + v[..., None] * (b - a)
    inside = (points[..., 0] >= 0) & (points[..., 0] <= w) & (points[..., 1] >= 0) & (points[..., 1] <= h)
    return float(1.0 - inside.mean())


class FaceEnhancer:
    """Super-resolve the faces of whole photos with a model that takes aligned face crops.

    Args:
        sr_fn: the face model, (N, in_size, in_size, 3) float32 in [0, 1] ->
            (N, out_size, out_size, 3) float in [0, 1].
        in_size, out_size: the model's crop sizes (64/1024 for glean_ffhq_16x).
        detector: a face_detect.FaceDetector, or the name of one built with ``landmarks``
            ("68" or "5"; the 68-point model carries a non-commercial restriction, see
            ``licence_note``) and default settings.
        background: upscaler for the whole photo, (H, W, 3), scale -> (H*scale, W*scale, 3);
            default :func:`bicubic_upscale`.
        only: ``all`` faces, the ``largest`` one, or the one nearest the photo's ``center``.
        min_face: faces whose crop square is smaller than this (photo pixels) are left to the
            background upscaler; default in_size / 4 (below that the model sees a crop
            enlarged more than 4x).
        max_outside: faces whose crop square lies more than this share outside the photo are
            skipped; those below are padded by ``pad`` ("reflect", as FFHQ, or "edge").
        feather, erode: the blend band, in crop sides: the face fades in from ``erode`` inside
            the crop edge over ``feather``.
        keep_crops: keep each face's aligned and SR crop on its FaceInfo (for saving).
        batch_size: crops per sr_fn call.
    """

    def __init__(self, sr_fn: SrFn, in_size: int, out_size: int, detector: str | FaceDetector = "dlib-hog",
                 landmarks: str = "68", background: BackgroundFn | None = None, only: str = "all",
                 min_face: float | None = None, max_outside: float = 0.4, pad: str = "reflect",
                 feather: float = 0.1, erode: float = 0.02, keep_crops: bool = False, batch_size: int = 4):
        if only not in ONLY:
            raise GleanError(f"unknown face choice {only!r}; choose one of {', '.join(ONLY)}")
        if in_size < 1 or out_size < 1 or batch_size < 1:
            raise ValueError(f"in_size, out_size, batch_size must be positive: {in_size}, {out_size}, {batch_size}")
        if not (0 < feather and 0 <= erode and erode + feather <= 0.5):
            raise ValueError(f"need feather > 0, erode >= 0, erode + feather <= 0.5; got {feather}, {erode}")
        if pad not in ("reflect", "edge"):
            raise ValueError(f"pad must be 'reflect' or 'edge', got {pad!r}")
        self.sr_fn, self.in_size, self.out_size = sr_fn, in_size, out_size
        self.detector = detector if isinstance(detector, FaceDetector) else FaceDetector(detector, landmarks)
        self.background = background or bicubic_upscale
        self.only, self.pad, self.max_outside = only, pad, max_outside
        self.min_face = in_size / 4 if min_face is None else min_face
        self.feather, self.erode = feather, erode
        self.keep_crops, self.batch_size = keep_crops, batch_size
        self._detecting = threading.Lock()  # one detector, shared by the threads using this enhancer

    @property
    def licence_note(self) -> str:
        """One line for users about the landmark model's licence."""
        return self.detector.licence_note

    # -- steps ------------------------------------------------------------------------------
    def find_faces(self, photo: np.ndarray) -> list[FaceInfo]:
        """Detected faces with their FFHQ crops, before any choice or size check."""
        h, w = photo.shape[:2]
        faces = []
        with self._detecting:
            detections = self.detector.detect(photo)
        for i, det in enumerate(detections):
            quad = fa.ffhq_quad(fa.keypoints_from_landmarks(det.landmarks))
            faces.append(FaceInfo(index=i, box=det.box, score=det.score, landmarks=det.landmarks, quad=quad,
                                  crop_size=fa.quad_side(quad), to_aligned=fa.quad_to_square(quad, self.in_size),
                                  outside=_outside_fraction(quad, h, w)))
        return faces

    def _choose(self, faces: list[FaceInfo], h: int, w: int) -> list[FaceInfo]:
        """Faces to restore; the others get a note."""
        keep = None
        if self.only == "largest":
            keep = max(faces, key=lambda f: f.crop_size)
        elif self.only == "center":
            keep = min(faces, key=lambda f: np.hypot(*(f.quad.mean(axis=0) - [w / 2, h / 2])))
        chosen = []
        for face in faces:
            if self.only != "all" and face is not keep:
                face.note = f"not the {self.only} face"
            elif face.crop_size < self.min_face:
                face.note = f"too small: crop {face.crop_size:.0f} px < minimum {self.min_face:.0f} px"
            elif face.outside > self.max_outside:
                face.note = f"{face.outside:.0%} of its crop is outside the photo (limit {self.max_outside:.0%})"
            else:
                chosen.append(face)
        return chosen

    def _super_resolve(self, crops: np.ndarray) -> np.ndarray:
        """One sr_fn call, its output checked: (N, in, in, 3) -> (N, out, out, 3) float32."""
        out = np.asarray(self.sr_fn(crops), dtype=np.float32)
        want = (len(crops), self.out_size, self.out_size, 3)
        if out.shape != want:
            raise ValueError(f"sr_fn returned shape {out.shape} for crops {crops.shape}; expected {want}")
        return out

    def paste(self, canvas: np.ndarray, sr: np.ndarray, face: FaceInfo, scale: int) -> None:
        """Blend the SR crop ``sr`` (out_size^2) of ``face`` into ``canvas`` (photo upscaled by
        ``scale``) in place: ``mask * face + (1 - mask) * canvas`` with a feathered mask."""
        big_h, big_w = canvas.shape[:2]
        corners = face.quad * scale
        x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int), [big_w, big_h])
        if x1 <= x0 or y1 <= y0:
            return
        # window pixel -> canvas -> photo -> aligned crop (in_size) -> SR crop (out_size)
        to_sr = fa.compose(fa.scaling(self.out_size / self.in_size),
                           fa.compose(face.to_aligned, fa.compose(fa.scaling(1 / scale), fa.translation(x0, y0))))
        warped = fa.warp_affine(sr, to_sr, (y1 - y0, x1 - x0), pad="edge")
        ys, xs = np.mgrid[0:y1 - y0, 0:x1 - x0].astype(np.float64) + 0.5
        crop_units = fa.apply(to_sr, np.stack([xs, ys], axis=-1)) / self.out_size
        mask = fa.feather_mask(crop_units, self.erode, self.feather)[..., None].astype(np.float32)
        region = canvas[y0:y1, x0:x1]
        canvas[y0:y1, x0:x1] = mask * np.clip(warped, 0.0, 1.0) + (1.0 - mask) * region

    # -- the whole photo ----------------------------------------------------------------------
    def enhance(self, photo, scale: int) -> FaceResult:
        """Upscale ``photo`` by the integer ``scale``, faces by the model. ``photo``: what the
        Upscaler takes (PIL image, numpy uint8/uint16/float in [0, 1], or a file path); alpha
        is upscaled bicubic, grayscale stays grayscale."""
        if int(scale) != scale or scale < 1:
            raise GleanError(f"scale must be a positive integer, got {scale}")
        source = to_loaded(photo)
        canvas, faces, messages = self._enhance_rgb(np.ascontiguousarray(source.rgb, dtype=np.float32), scale)
        loaded = source.rebuilt(canvas)
        return FaceResult(from_loaded(loaded, photo), loaded, faces, messages)

    def _enhance_rgb(self, photo: np.ndarray, scale: int) -> tuple[np.ndarray, list[FaceInfo], list[str]]:
        """(H, W, 3) float32 -> the upscaled canvas, the faces found, the messages."""
        h, w = photo.shape[:2]
        canvas = np.array(self.background(photo, scale), dtype=np.float32)
        if canvas.shape != (h * scale, w * scale, 3):
            raise ValueError(f"background upscaler returned {canvas.shape}; expected {(h * scale, w * scale, 3)}")
        faces = self.find_faces(photo)
        if not faces:
            return canvas, faces, ["no face found: the whole photo was upscaled by the background upscaler"]
        chosen = self._choose(faces, h, w)
        for start in range(0, len(chosen), self.batch_size):  # only one batch of SR crops in memory
            batch = chosen[start:start + self.batch_size]
            crops = np.stack([fa.align_face(photo, f.quad, self.in_size, self.pad) for f in batch])
            for face, crop, sr in zip(batch, crops, self._super_resolve(crops)):
                self.paste(canvas, sr, face, scale)
                face.restored = True
                if face.crop_size * scale > self.out_size * 1.05:
                    face.note = (f"enlarged: its crop is {face.crop_size * scale:.0f} px in the output, "
                                 f"more than the model's {self.out_size} px")
                if self.keep_crops:
                    face.aligned, face.sr = crop, sr
        messages = []
        for face in faces:
            if face.note:
                verb = "restored, " if face.restored else "left to the background upscaler: "
                messages.append(f"face {face.index} at {_box_text(face.box)}: {verb}{face.note}")
        restored = sum(face.restored for face in faces)
        messages.append(f"{restored} of {len(faces)} face(s) restored by the face model")
        return canvas, faces, messages


def _box_text(box: tuple[float, float, float, float]) -> str:
    x0, y0, x1, y1 = (round(v) for v in box)
    return f"({x0},{y0})-({x1},{y1})"


def draw_faces(photo: np.ndarray, faces: list[FaceInfo]) -> np.ndarray:
    """A debug copy of ``photo`` (H, W, 3): detector boxes (yellow), FFHQ crop squares (green
    when restored, red when skipped) and landmarks (cyan)."""
    image = Image.fromarray(dlib_pixels(photo))
    draw = ImageDraw.Draw(image)
    width = max(1, round(max(photo.shape[:2]) / 400))
    for face in faces:
        draw.rectangle(face.box, outline=(255, 220, 0), width=width)
        square = [tuple(p) for p in face.quad] + [tuple(face.quad[0])]
        draw.line(square, fill=(0, 220, 0) if face.restored else (230, 0, 0), width=width)
        for x, y in face.landmarks:
            draw.ellipse((x - width, y - width, x + width, y + width), fill=(0, 220, 255))
    return np.asarray(image, dtype=np.float32) / 255.0


def save_face_crops(result: FaceResult, folder: str | Path, stem: str, overwrite: bool = False) -> list[Path]:
    """Write each kept face's aligned and SR crops as ``{stem}_face{i}_aligned.png`` /
    ``{stem}_face{i}_sr.png`` (atomic, never overwriting unless asked); needs ``keep_crops``."""
    paths = []
    for face in result.faces:
        if face.aligned is None or face.sr is None:
            continue
        for kind, pixels in (("aligned", face.aligned), ("sr", face.sr)):
            path = Path(folder) / f"{stem}_face{face.index}_{kind}.png"
            paths.append(save_image(path, np.clip(pixels, 0.0, 1.0), overwrite=overwrite))
    return paths
