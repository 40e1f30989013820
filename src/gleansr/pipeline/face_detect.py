"""Face detection and landmarks with dlib, run offline from models shipped in pip packages.

Needs the optional extra ``gleansr[faces]`` (``dlib-bin`` and ``face_recognition_models``).

Detectors: ``dlib-hog`` (HOG + linear SVM, built into dlib; fast, frontal faces) and ``dlib-cnn``
(the MMOD CNN ``mmod_human_face_detector.dat``; more poses, about 1.5 s for a 512 px photo on 2
CPU cores). Rolled heads, measured on the astronaut photo turned in 5-degree steps: HOG finds the
face up to 40 degrees, the 68 landmarks stay right up to 30 (the eye line 6 degrees off at 40),
and from 45 degrees nothing is found; such photos need turning upright first.

Landmark models (both from face_recognition_models, which repackages Davis King's dlib-models):

* ``68``: ``shape_predictor_68_face_landmarks.dat``, the exact points FFHQ's crop is defined on.
  It is trained on the iBUG 300-W data set, whose licence excludes commercial use; dlib's model
  page says that at the data set authors' request the model "can't be used in a commercial
  product" without checking with Imperial College London. See ``LANDMARK_NOTES``.
* ``5``: ``shape_predictor_5_face_landmarks.dat`` (eye corners and nose bottom), trained on
  dlib's own 5-point data set (7198 faces from images on the internet, annotated by Davis King);
  dlib's model page carries no non-commercial note for it and says the models are released into
  the public domain "as far as I am concerned". The mouth is then estimated (see face_align).
"""
from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

from ..errors import GleanError
from . import face_align as fa
from .images import to_uint8

INSTALL_HINT = "face detection (dlib and its landmark models) is not installed here: pip install 'gleansr[faces]'"
DETECTORS = ("dlib-hog", "dlib-cnn")
LANDMARK_MODELS = {"68": "shape_predictor_68_face_landmarks.dat", "5": "shape_predictor_5_face_landmarks.dat"}
LANDMARK_NOTES = {
    "68": "face landmarks: dlib's 68-point model is trained on iBUG 300-W, whose licence excludes "
          "commercial use; for commercial work use the 5-point model (--face-landmarks 5)",
    "5": "face landmarks: dlib's 5-point model (eye corners, nose); the mouth position is estimated",
}
CNN_MODEL = "mmod_human_face_detector.dat"
CHECK_SIZE = 200  # aligned check crop: the face's box is then about 100 px, HOG's best size


def check_installed() -> None:
    """GleanError (the one install hint) unless face detection can run here, asked before any
    photo is read or queued."""
    if any(importlib.util.find_spec(name) is None for name in ("dlib", "face_recognition_models")):
        raise GleanError(INSTALL_HINT)


def _dlib() -> ModuleType:
    try:
        import dlib
    except ImportError as exc:
        raise GleanError(INSTALL_HINT) from exc
    return dlib


def model_file(name: str) -> Path:
    """Path of a model shipped in face_recognition_models, found without importing the package
    (its ``__init__`` needs the deprecated ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise GleanError(INSTALL_HINT)
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / name
        if path.is_file():
            return path
    raise GleanError(f"{name} is missing from the face_recognition_models package; {INSTALL_HINT}")


@functools.lru_cache(maxsize=4)
def _load(kind: str, name: str):
    dlib = _dlib()
    path = str(model_file(name))
    return dlib.shape_predictor(path) if kind == "shape" else dlib.cnn_face_detection_model_v1(path)


@dataclass(frozen=True)
class DetectedFace:
    """One face: ``box`` (x0, y0, x1, y1), detector ``score`` and ``landmarks`` (N, 2) as (x, y),
    all in continuous photo coordinates (pixel (i, j) spans [j, j+1) x [i, i+1)).
    ``check_score``: HOG's score on the aligned crop (None when not checked)."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray
    check_score: float | None = None


def dlib_pixels(photo: np.ndarray) -> np.ndarray:
    """(H, W, 3) float in [0, 1] or uint8 -> contiguous uint8, what dlib reads (the one rounding)."""
    return np.ascontiguousarray(photo if photo.dtype == np.uint8 else to_uint8(photo))


class FaceDetector:
    """Find faces and their landmarks in an RGB photo.

    Args:
        detector: ``dlib-hog`` or ``dlib-cnn``.
        landmarks: ``68`` or ``5`` (see the module docstring for their licences). dlib made the
            68-point model for HOG's boxes; with ``dlib-cnn`` prefer ``5``, made for both.
        upsample: times the photo is doubled before detection; each finds faces half as large
            (HOG alone finds faces from about 80 px, 40 px after one doubling) and costs 4x time.
        min_score: candidates scoring below this are dropped.
        check_score: (``dlib-hog`` only; None: off) each candidate is cut out as an aligned
            FFHQ crop and HOG must find a face there, near the centre, scoring at least this.
            Photo-level HOG scores overlap (on the test photos: faces from 0.23, a badge at
            0.43), while on the upright, standard-size crop faces scored 0.65 (a 35 px crop)
            to 1.27 and non-faces at most 0.51. Lower it for tiny or blurred faces.
        max_side: detection runs on a copy shrunk to this longer side (time grows with pixels);
            landmarks are always found on the full-resolution photo.
    """

    def __init__(self, detector: str = "dlib-hog", landmarks: str = "68", upsample: int = 1,
                 min_score: float = 0.0, check_score: float | None = 0.6, max_side: int = 1600):
        if detector not in DETECTORS:
            raise GleanError(f"unknown face detector {detector!r}; choose one of {', '.join(DETECTORS)}")
        if landmarks not in LANDMARK_MODELS:
            raise GleanError(f"unknown landmark model {landmarks!r}; choose 68 or 5")
        if upsample < 0 or max_side < 64:
            raise ValueError(f"upsample must be >= 0 and max_side >= 64, got {upsample}, {max_side}")
        dlib = _dlib()
        self.detector, self.landmarks = detector, landmarks
        self.upsample, self.min_score, self.max_side = upsample, min_score, max_side
        self.check_score = check_score if detector == "dlib-hog" else None
        self._shape = _load("shape", LANDMARK_MODELS[landmarks])
        self._hog = dlib.get_frontal_face_detector() if detector == "dlib-hog" else None
        self._cnn = _load("cnn", CNN_MODEL) if detector == "dlib-cnn" else None
        self._rectangle = dlib.rectangle

    @property
    def licence_note(self) -> str:
        """One line for users about the landmark model in use."""
        return LANDMARK_NOTES[self.landmarks]

    def _boxes(self, pixels: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        """Boxes (continuous coordinates of ``pixels``) and scores, best first."""
        if self._hog is not None:
            rects, scores, _ = self._hog.run(pixels, self.upsample, self.min_score)
            found = list(zip(rects, scores))
        else:
            found = [(d.rect, d.confidence) for d in self._cnn(pixels, self.upsample) if d.confidence >= self.min_score]
        boxes = [((r.left(), r.top(), r.right() + 1.0, r.bottom() + 1.0), float(s)) for r, s in found]
        return sorted(boxes, key=lambda b: -b[1])

    def detect(self, photo: np.ndarray) -> list[DetectedFace]:
        """Faces in ``photo`` (H, W, 3), float in [0, 1] or uint8, best score first."""
        pixels = dlib_pixels(photo)
        h, w = pixels.shape[:2]
        shrink = min(1.0, self.max_side / max(h, w))
        small = pixels
        if shrink < 1.0:
            size = (max(1, round(w * shrink)), max(1, round(h * shrink)))
            small = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BOX))
        source = photo.astype(np.float32) / 255.0 if photo.dtype == np.uint8 else photo
        faces = []
        for (x0, y0, x1, y1), score in self._boxes(small):
            x0, y0, x1, y1 = (v / shrink for v in (x0, y0, x1, y1))
            rect = self._rectangle(round(x0), round(y0), round(x1) - 1, round(y1) - 1)
            shape = self._shape(pixels, rect)
            points = np.array([(p.x + 0.5, p.y + 0.5) for p in shape.parts()], dtype=np.float64)
            check = None if self.check_score is None else self._check(source, points)
            if check is None or check >= self.check_score:
                faces.append(DetectedFace((x0, y0, x1, y1), score, points, check))
        return faces

    def _check(self, photo: np.ndarray, landmarks: np.ndarray) -> float:
        """Best HOG score of a face near the centre of the candidate's aligned crop (-inf: none);
        ``photo`` is float in [0, 1]."""
        quad = fa.ffhq_quad(fa.keypoints_from_landmarks(landmarks))
        crop = dlib_pixels(fa.align_face(photo, quad, CHECK_SIZE))
        rects, scores, _ = self._hog.run(crop, 0, -1.0)
        near = [s for r, s in zip(rects, scores)
                if np.hypot(r.center().x - CHECK_SIZE / 2, r.center().y - CHECK_SIZE / 2) < CHECK_SIZE / 5]
        return max(near, default=-np.inf)
