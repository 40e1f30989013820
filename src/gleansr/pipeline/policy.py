"""The one input policy: what gleansr does with an image for a given model, asked by every door.

The command line, the HTTP server, the Python API, ``gleansr eval`` and the face path all take
their answers from here, so an input gets the same verdict and the same sentence wherever it is
sent (spandrel keeps one ``SizeRequirements`` per architecture for the same reason).

GLEAN models are fixed-size and restore small images of one kind. An image of exactly the model's
input goes in as it is. Otherwise (``Resize.UP``, the default) an image whose *shorter* side is at
most the input is centre-cropped to a square and enlarged with MATLAB-style bicubic; a larger one
is refused, since shrinking it would throw most of it away. ``Resize.ANY`` shrinks it anyway (up
to :data:`MAX_RESIZE_PIXELS` of square source, the memory of one resize), ``Resize.EXACT`` takes
only the exact size. Torch-free: servers and parsers ask it before any model is loaded.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import GleanError

# The largest centre square (in pixels) shrunk to a model's input: 2048x2048. Larger sources cost
# GBs in the resize for a 16-128 px result; crop them first or raise the limit.
MAX_RESIZE_PIXELS = 2048 * 2048


class Resize(str, enum.Enum):
    """What may be done to an input that is not the model's size."""

    EXACT = "exact"  # only the exact input size
    UP = "up"  # crop and enlarge inputs no larger than the model's input (default)
    ANY = "any"  # also shrink larger ones


class Status(str, enum.Enum):
    """What became of one input in a batch."""

    DONE = "done"
    SKIPPED = "skipped"  # its output exists and may not be replaced
    REFUSED = "refused"  # the policy said no (size, kind)
    FAILED = "failed"  # unreadable, or the run or the write failed


@dataclass(frozen=True)
class ModelFacts:
    """What the policy needs to know of a model, from the zoo, a loaded file or a server catalogue."""

    name: str
    in_size: int
    domain: str | None = None  # None: a file gleansr knows nothing about
    input_kind: str | None = None
    face_model: bool = False

    @property
    def label(self) -> str:
        """How sentences name it: ``glean_glyphs_8x (glyphs: text glyphs, black on white)``."""
        return f"{self.name} ({self.domain}: {self.input_kind})" if self.domain else self.name


def model_facts(entry=None, *, name: str = "the model", in_size: int = 0, face_model: bool | None = None) -> ModelFacts:
    """The policy's view of a model: its zoo declaration (``entry``) or, for a file the zoo does not
    know, its ``name`` and ``in_size``; ``face_model`` overrides (a file the user vouches for)."""
    if entry is None:
        return ModelFacts(name, in_size, face_model=bool(face_model))
    return ModelFacts(entry.name, entry.in_size, entry.domain, entry.input_kind,
                      entry.face_model if face_model is None else face_model)


@dataclass(frozen=True)
class Verdict:
    """The answer for one input: ``code`` is stable (APIs and reports key on it), ``sentence`` is
    what every door shows; ``crop``/``resize`` say what is done to an accepted input."""

    code: str
    sentence: str = ""
    crop: bool = False
    resize: bool = False

    @property
    def ok(self) -> bool:
        return self.code == "ok"

    def refuse(self) -> None:
        """Raise this verdict as a :class:`Refusal` unless it accepts."""
        if not self.ok:
            raise Refusal(self.code, self.sentence)


class Refusal(GleanError):
    """An input the policy refuses: ``code`` (stable) and the one-line sentence."""

    def __init__(self, code: str, sentence: str):
        super().__init__(sentence)
        self.code, self.sentence = code, sentence


def size_verdict(width: int, height: int, model: ModelFacts, resize: Resize | str = Resize.UP, *,
                 name: str = "the image", max_resize_pixels: int = MAX_RESIZE_PIXELS) -> Verdict:
    """The verdict for a ``width`` x ``height`` input to ``model`` (rules in the module docstring)."""
    resize, size = Resize(resize), model.in_size
    if (width, height) == (size, size):
        return Verdict("ok")
    if resize is Resize.EXACT:
        return Verdict("not_exact_size", f"{name} is {width}x{height}, and {model.label} takes exactly "
                                         f"{size}x{size} with resizing off (--no-resize; resize='exact' in Python)")
    side = min(width, height)
    if resize is Resize.UP and side > size:
        return Verdict("input_too_large", _too_large(name, width, height, model))
    if side > size and side * side > max_resize_pixels:
        return Verdict("resize_too_large", f"{name} is {width}x{height}: shrinking its centre {side}x{side} "
                                           f"to {size}x{size} is over the {_square(max_resize_pixels)} limit on what is "
                                           "shrunk (--max-resize-pixels); crop it to the part that matters first")
    return Verdict("ok", crop=width != height, resize=side != size)


def reference_verdict(width: int, height: int, model: ModelFacts, out_size: int, *, name: str = "the image") -> Verdict:
    """Evaluation compares the model's output with a ground truth of exactly ``out_size``: anything
    else is refused (``gleansr eval`` makes the LR from it, or reads an LR of exactly ``in_size``)."""
    if (width, height) == (out_size, out_size):
        return Verdict("ok")
    return Verdict("not_reference_size", f"{name} is {width}x{height}, and evaluating {model.label} needs HR "
                                         f"images of exactly {out_size}x{out_size} (its output size)")


def _too_large(name: str, width: int, height: int, model: ModelFacts) -> str:
    size = model.in_size
    faces = "; for whole photos of faces use faces mode" if model.face_model else ""
    return (f"{name} is {width}x{height}, larger than the {size}x{size} input of {model.label}: GLEAN restores "
            f"small images of one kind, and shrinking this one to {size}x{size} would throw most of it away{faces}; "
            "to shrink it anyway turn resizing on (--resize; resize=true in the HTTP API; resize='any' in Python), "
            "or pick a model that fits (`gleansr models`)")


def _square(pixels: int) -> str:
    side = int(pixels ** 0.5)
    return f"{side}x{side}" if side * side == pixels else f"{pixels:,} pixels"


def adjustments(width: int, height: int, verdict: Verdict, in_size: int) -> list[tuple[str, str]]:
    """What is done to an accepted input: ``(kind, sentence)`` pairs, kind ``cropped`` or ``resized``."""
    notes, side = [], min(width, height)
    if verdict.crop:
        notes.append(("cropped", f"centre-cropped {width}x{height} to {side}x{side}"))
    if verdict.resize:
        notes.append(("resized", f"resized {side}x{side} to {in_size}x{in_size} (MATLAB bicubic)"))
    return notes


def face_model_verdict(model: ModelFacts, vouched: bool = False) -> Verdict:
    """Whole photos need a face model (aligned face crops): the zoo's face models, or a file the
    user vouches for (``vouched``); everything else is refused with the models that would do."""
    if model.face_model or vouched:
        return Verdict("ok")
    from ..zoo import face_model_names

    faces = ", ".join(face_model_names())
    if model.domain is None:
        return Verdict("face_model_unknown", f"gleansr cannot tell whether {model.name} is a face model; if it was "
                                             "trained on aligned FFHQ-style face crops, vouch for it (--face-model-ok, "
                                             f"face_model=True), else use one of: {faces}")
    return Verdict("not_a_face_model", f"{model.label} is not a face model: whole photos with faces need a model "
                                       f"of aligned face crops, one of: {faces}")
