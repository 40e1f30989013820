"""FFHQ-style face alignment and the resampling that goes with it.

GLEAN's face models were trained on FFHQ crops, made by NVIDIA's ``ffhq-dataset`` script from
68 dlib landmarks. This module re-derives that crop and nothing else:

* eye centres = mean of each eye's six points (68-point indices 36-41 and 42-47), mouth centre =
  midpoint of the mouth corners (48 and 54); ``eye_to_eye = eye_right - eye_left``,
  ``eye_to_mouth = mouth - (eye_left + eye_right) / 2``;
* the crop's x axis points along ``eye_to_eye`` averaged with ``eye_to_mouth`` turned a quarter
  turn (so a tilted eye line or a tilted nose both count), with half-length
  ``max(2 |eye_to_eye|, 1.8 |eye_to_mouth|)``; the y axis is x turned a quarter turn;
* the centre is ``eye_avg + 0.1 eye_to_mouth``; the crop is the square of side ``2 |x|``.

Consequences used by the tests: for an upright face with ``|eye_to_mouth| <= 1.11 |eye_to_eye|``
(nearly every face) the eyes land ``S/4`` apart, centred at x ``S/2``, at height
``S/2 - S/40 * r`` and the mouth ``S/4 * r`` below them, where ``r = |eye_to_mouth| / |eye_to_eye|``
(S = crop size; at 1024: eyes at x 384 and 640).

Coordinates here are *continuous*: pixel ``(row i, column j)`` covers ``[j, j+1) x [i, i+1)``, so
its centre is ``(j + 0.5, i + 0.5)``, and resizing by ``f`` is a plain multiplication by ``f``.
Affine matrices are (2, 3) and map ``[x, y, 1]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..imaging.imresize import imresize_torch

# dlib's mean face (get_face_chip_details) has the mouth centre 1.369 times as far from the eye
# midpoint as the bottom of the nose is; the 5-point model gives the nose but no mouth.
MOUTH_FROM_NOSE = 1.369
# Largest side at which an aligned crop is resampled before its final anti-aliased shrink.
MAX_NATIVE_SIZE = 2048


@dataclass(frozen=True)
class FaceKeypoints:
    """The three points the FFHQ crop is built from, in continuous image coordinates (x, y)."""

    eye_left: np.ndarray  # (2,) the eye on the image's left
    eye_right: np.ndarray  # (2,)
    mouth: np.ndarray  # (2,) mouth centre


def keypoints_from_68(points: np.ndarray) -> FaceKeypoints:
    """FFHQ's keypoints from dlib/iBUG 68 landmarks ``(68, 2)`` (continuous coordinates)."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {points.shape}")
    return FaceKeypoints(points[36:42].mean(axis=0), points[42:48].mean(axis=0), (points[48] + points[54]) / 2)


def keypoints_from_5(points: np.ndarray) -> FaceKeypoints:
    """Approximate FFHQ keypoints from dlib's 5 landmarks ``(5, 2)``.

    dlib's 5 points are the corners of the image-right eye (0, 1), of the image-left eye (2, 3)
    and the bottom of the nose (4). An eye centre is taken as the midpoint of its corners (on
    dlib's mean face this sits 1.5 % of the eye distance below the six-point mean: negligible).
    There is no mouth point: the mouth centre is put on the line from the eye midpoint through
    the nose, ``MOUTH_FROM_NOSE`` times as far as the nose (the ratio on dlib's mean face). For
    faces with an unusual nose-to-mouth ratio or a turned head the crop is then slightly off in
    scale and centre compared with the 68-point crop.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (5, 2):
        raise ValueError(f"expected (5, 2) landmarks, got {points.shape}")
    eye_left = points[2:4].mean(axis=0)
    eye_right = points[0:2].mean(axis=0)
    eye_avg = (eye_left + eye_right) / 2
    return FaceKeypoints(eye_left, eye_right, eye_avg + MOUTH_FROM_NOSE * (points[4] - eye_avg))


def keypoints_from_landmarks(points: np.ndarray) -> FaceKeypoints:
    """Dispatch on the number of landmarks (68 or 5)."""
    count = len(points)
    if count == 68:
        return keypoints_from_68(points)
    if count == 5:
        return keypoints_from_5(points)
    raise ValueError(f"expected 68 or 5 landmarks, got {count}")


def _quarter_turn(v: np.ndarray) -> np.ndarray:
    """``v`` turned 90 degrees clockwise on screen (y down): (1, 0) -> (0, 1)."""
    return np.array([-v[1], v[0]])


def ffhq_quad(keypoints: FaceKeypoints) -> np.ndarray:
    """The FFHQ crop square ``(4, 2)``: top-left, bottom-left, bottom-right, top-right corners."""
    eye_avg = (keypoints.eye_left + keypoints.eye_right) / 2
    eye_to_eye = keypoints.eye_right - keypoints.eye_left
    eye_to_mouth = keypoints.mouth - eye_avg
    x = eye_to_eye - _quarter_turn(eye_to_mouth)  # for an upright face both terms point right
    norm = np.hypot(*x)
    if not norm > 0:
        raise ValueError("degenerate face landmarks: eyes and mouth coincide")
    x = x / norm * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = _quarter_turn(x)
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def quad_side(quad: np.ndarray) -> float:
    """Side length of a crop square, in the units of its corners."""
    return float(np.hypot(*(quad[3] - quad[0])))


def quad_to_square(quad: np.ndarray, size: float) -> np.ndarray:
    """Affine (2, 3) taking the crop square ``quad`` onto ``[0, size]^2`` (a similarity)."""
    ex = (quad[3] - quad[0]) / quad_side(quad)  # unit vector along the crop's top edge
    ey = _quarter_turn(ex)
    k = size / quad_side(quad)
    rotation = np.stack([ex, ey]) * k
    return np.concatenate([rotation, (np.array([size, size]) / 2 - rotation @ quad.mean(axis=0))[:, None]], axis=1)


def _homogeneous(matrix: np.ndarray) -> np.ndarray:
    return np.vstack([matrix, [0.0, 0.0, 1.0]])


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The affine map ``p -> outer(inner(p))``."""
    return (_homogeneous(outer) @ _homogeneous(inner))[:2]


def invert(matrix: np.ndarray) -> np.ndarray:
    return np.linalg.inv(_homogeneous(matrix))[:2]


def scaling(sx: float, sy: float | None = None) -> np.ndarray:
    return np.array([[sx, 0.0, 0.0], [0.0, sx if sy is None else sy, 0.0]])


def translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map points ``(..., 2)`` through an affine (2, 3)."""
    return np.asarray(points) @ matrix[:, :2].T + matrix[:, 2]


def _fold_indices(index: np.ndarray, length: int, pad: str) -> np.ndarray:
    """Valid indices for out-of-range ones: mirrored without repeating the edge, or clamped."""
    if pad == "edge" or length == 1:
        return np.clip(index, 0, length - 1)
    period = 2 * (length - 1)
    folded = np.mod(index, period)
    return np.where(folded < length, folded, period - folded)


def padded_window(image: np.ndarray, x0: int, y0: int, x1: int, y1: int, pad: str) -> np.ndarray:
    """``image[y0:y1, x0:x1]`` where parts outside the image are filled by ``pad`` ("reflect"/"edge")."""
    h, w = image.shape[:2]
    rows = _fold_indices(np.arange(y0, y1), h, pad)
    cols = _fold_indices(np.arange(x0, x1), w, pad)
    return image[rows[:, None], cols[None, :]]


def warp_affine(image: np.ndarray, dst_to_src: np.ndarray, out_hw: tuple[int, int], pad: str = "reflect") -> np.ndarray:
    """Resample ``image`` (H, W, C) float32 onto an (h, w, C) grid through ``dst_to_src``.

    ``dst_to_src`` maps output continuous coordinates to input ones. Only the input window the
    output needs is read; samples outside the image come from ``pad`` ("reflect" mirrors, as
    FFHQ pads, "edge" repeats the border). When the map shrinks, the window is first resized
    with antialiased bicubic (PyTorch's, the kernel widened by the shrink factor) to about the
    output's scale, so no detail aliases; the remaining rotation/shift is bicubic interpolation
    at about 1:1.
    """
    if pad not in ("reflect", "edge"):
        raise ValueError(f"pad must be 'reflect' or 'edge', got {pad!r}")
    h, w = out_hw
    corners = apply(dst_to_src, np.array([[0, 0], [w, 0], [0, h], [w, h]], dtype=np.float64))
    src_per_dst = float(np.sqrt(abs(np.linalg.det(dst_to_src[:, :2]))))
    margin = int(np.ceil(3 * max(src_per_dst, 1.0))) + 2  # covers the cubic kernels' reach
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - margin
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + margin
    window = torch.from_numpy(np.ascontiguousarray(padded_window(image, x0, y0, x1, y1, pad), dtype=np.float32))
    window = window.permute(2, 0, 1)  # (C, hw, ww)
    to_window = compose(translation(-x0, -y0), dst_to_src)
    if src_per_dst > 1.0:  # shrinking: antialias by resizing the window first
        ww, wh = x1 - x0, y1 - y0
        small = (max(1, round(wh / src_per_dst)), max(1, round(ww / src_per_dst)))
        window = F.interpolate(window[None], size=small, mode="bicubic", antialias=True, align_corners=False)[0]
        to_window = compose(scaling(small[1] / ww, small[0] / wh), to_window)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    src = apply(to_window, np.stack([xs, ys], axis=-1))
    size = np.array([window.shape[2], window.shape[1]], dtype=np.float64)
    grid = torch.from_numpy((2.0 * src / size - 1.0).astype(np.float32))[None]  # align_corners=False
    out = F.grid_sample(window[None], grid, mode="bicubic", padding_mode="border", align_corners=False)
    return out[0].permute(1, 2, 0).numpy()


def align_face(image: np.ndarray, quad: np.ndarray, size: int, pad: str = "reflect") -> np.ndarray:
    """The aligned crop ``(size, size, C)`` of the square ``quad`` (continuous coordinates).

    Resampled first at about the face's own resolution (at most ``MAX_NATIVE_SIZE``), then
    shrunk to ``size`` with MATLAB-style bicubic, the way GLEAN's training inputs were made
    from aligned high-resolution crops.
    """
    native = int(np.clip(np.ceil(quad_side(quad)), size, MAX_NATIVE_SIZE))
    crop = warp_affine(image, invert(quad_to_square(quad, native)), (native, native), pad)
    if native != size:
        crop = imresize_torch(torch.from_numpy(crop).permute(2, 0, 1), size=(size, size)).permute(1, 2, 0).numpy()
    return np.clip(crop, 0.0, 1.0)


def feather_mask(face_coords: np.ndarray, erode: float, feather: float) -> np.ndarray:
    """Blend weight in [0, 1] for points given in crop units (``(..., 2)``, the crop is [0, 1]^2).

    Zero within ``erode`` of the crop's edge, one from ``erode + feather`` inwards, with a
    smoothstep ramp between (continuous slope), so the pasted face fades into the background
    over a band of ``feather`` crop sides; corners are rounded by multiplying the two axes.
    """
    to_edge = np.minimum(face_coords, 1.0 - face_coords)  # distance to the nearer edge, per axis
    t = np.clip((to_edge - erode) / feather, 0.0, 1.0)
    ramp = t * t * (3.0 - 2.0 * t)
    return ramp[..., 0] * ramp[..., 1]
