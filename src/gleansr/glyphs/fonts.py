"""Font files and the glyphs they draw: finding fonts, reading their names and cmaps, rendering.

Rendering: each glyph is drawn by FreeType (Pillow, basic layout) with an em of
``6 * size`` pixels, cropped to its ink, and area-averaged (box filter) into the output so that
the ink's longer side is ``fit * size`` and the ink box's centre is the image's centre: the same
rule for every glyph, aspect kept, antialiasing from the 6x supersampling.

A character counts as present only if the font's Unicode cmap maps it to a glyph other than
``.notdef`` *and* the drawing has ink *and* differs from the font's ``.notdef`` drawing
(some fonts map unsupported characters to a copy of their "missing" box). Symbol-encoded
fonts have no Unicode cmap and so contribute nothing.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import GleanError
from ..pipeline.images import encode_image

__all__ = ["FONT_SUFFIXES", "SUPERSAMPLE", "FINGERPRINT", "FontFace", "design_group", "license_id",
           "find_font_files", "read_faces", "one_face_per_style", "GlyphRenderer", "RenderedFace", "render_face"]

FONT_SUFFIXES = frozenset({".ttf", ".otf", ".ttc", ".otc"})
SUPERSAMPLE = 6  # em size in multiples of the output size
FINGERPRINT = 16  # side of the per-glyph thumbnail compared for near-duplicates
_NOTDEF_TOLERANCE = 2.0  # mean grey-level difference under which a drawing is the .notdef box
_LICENSES = (  # (id, words that identify it in a font's licence description), first match wins
    ("OFL-1.1", ("open font license", "ofl")),
    ("Apache-2.0", ("apache license",)),
    ("GUST", ("gust font license", "gust-font")),
    ("LPPL", ("latex project public license", "lppl")),
    ("GPL+font-exception", ("general public license", "gpl")),
    ("Bitstream-Vera", ("bitstream",)),
    ("public-domain", ("public domain",)),
)


@dataclass(frozen=True)
class FontFace:
    """One face of a font file as its ``name`` and ``cmap`` tables describe it.

    ``codepoints``: the requested characters its Unicode cmap maps to a glyph other than
    ``.notdef`` (drawing may still reveal an empty or missing-box glyph).
    """

    root: str
    source: str
    path: Path
    index: int
    family: str
    style: str
    postscript_name: str
    version: str
    license: str
    license_url: str
    sha256: str
    codepoints: frozenset[int]

    @property
    def group(self) -> str:
        return design_group(self.family)


def design_group(family: str) -> str:
    """A family's design group: its first word, case-folded ("DejaVu Sans Mono" -> "dejavu")."""
    words = re.split(r"[\s_\-]+", family.strip())
    return words[0].casefold() if words and words[0] else family.casefold()


def license_id(description: str, url: str = "") -> str:
    """A short licence name read off a font's licence description/URL ('unknown' if none fits)."""
    text = f"{description} {url}".casefold()
    for name, words in _LICENSES:
        if any(re.search(rf"\b{re.escape(w)}\b", text) for w in words):
            return name
    return "unknown"


def find_font_files(roots: Sequence[str | os.PathLike[str]]) -> list[tuple[str, str, Path]]:
    """``(root, path relative to root, path)`` of every font file under ``roots`` (files or folders).

    Folders are walked recursively following links, in sorted order; a file reached twice
    (links, overlapping roots) is listed once, at its first sighting.
    """
    found: list[tuple[str, str, Path]] = []
    seen: set[Path] = set()
    for root in roots:
        root_path = Path(root)
        if root_path.is_file():
            candidates = [(root_path.name, root_path)]
            root_path = root_path.parent
        elif root_path.is_dir():
            candidates = []
            visited: set[Path] = set()
            for folder, dirs, files in os.walk(root_path, followlinks=True):
                real = Path(folder).resolve()
                if real in visited:  # a link loop
                    dirs[:] = []
                    continue
                visited.add(real)
                dirs.sort()
                candidates += [(Path(folder, f).relative_to(root_path).as_posix(), Path(folder, f)) for f in sorted(files)]
        else:
            raise GleanError(f"font folder not found: {root}")
        for rel, path in candidates:
            real = path.resolve()
            if path.suffix.lower() in FONT_SUFFIXES and path.is_file() and real not in seen:
                seen.add(real)
                found.append((str(root), rel, path))
    return found


def _name(font, *ids: int) -> str:
    for name_id in ids:
        value = font["name"].getDebugName(name_id) if "name" in font else None
        if value and value.strip():
            return " ".join(value.split())
    return ""


def read_faces(root: str, source: str, path: Path, chars: str) -> list[FontFace]:
    """The faces of one font file (several for a .ttc collection); GleanError if unreadable."""
    try:
        from fontTools.ttLib import TTCollection, TTFont
    except ModuleNotFoundError:
        raise GleanError("reading fonts needs the fontTools package: pip install fonttools") from None

    data = path.read_bytes()
    try:
        fonts = TTCollection(io.BytesIO(data)).fonts if path.suffix.lower() in (".ttc", ".otc") \
            else [TTFont(io.BytesIO(data))]
        faces = []
        for index, font in enumerate(fonts):
            notdef = font.getGlyphOrder()[0]
            cmap = font.getBestCmap() or {}
            faces.append(FontFace(
                root=root, source=source, path=path, index=index,
                family=_name(font, 16, 1), style=_name(font, 17, 2) or "Regular",
                postscript_name=_name(font, 6), version=_name(font, 5),
                license=_name(font, 13), license_url=_name(font, 14),
                sha256=hashlib.sha256(data).hexdigest(),
                codepoints=frozenset(ord(c) for c in chars if cmap.get(ord(c), notdef) != notdef),
            ))
    except Exception as exc:  # noqa: BLE001 - any failure to parse an untrusted file is the file's fault
        raise GleanError(f"{path}: not a readable font ({type(exc).__name__}: {str(exc)[:120]})") from None
    return faces


class GlyphRenderer:
    """Draws one face's characters as ``(size, size)`` uint8 images, 255 = background.

    The ink's longer side becomes ``fit * size`` and its centre the image centre (see module doc).
    """

    def __init__(self, face: FontFace, size: int, fit: float = 0.8):
        if not 0 < fit <= 1:
            raise ValueError(f"fit must be in (0, 1], got {fit}")
        self.face, self.size, self.fit = face, size, fit
        try:
            self.font = ImageFont.truetype(str(face.path), size=SUPERSAMPLE * size, index=face.index,
                                           layout_engine=ImageFont.Layout.BASIC)
        except OSError as exc:
            raise GleanError(f"{face.path}: FreeType cannot open face {face.index} ({exc})") from None
        self.notdef = self._draw("\uffff")  # a noncharacter: no cmap maps it, so FreeType draws .notdef

    def _ink(self, text: str) -> Image.Image | None:
        """White-on-black crop of the drawn ink at the supersampled size; None if nothing is drawn."""
        left, top, right, bottom = self.font.getbbox(text)
        pad = self.size * SUPERSAMPLE // 4  # room for ink that overhangs the reported box
        canvas = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
        ImageDraw.Draw(canvas).text((pad - left, pad - top), text, font=self.font, fill=255)
        box = canvas.getbbox()
        return None if box is None else canvas.crop(box)

    def _draw(self, text: str) -> np.ndarray | None:
        """``text`` fitted and centred as the module doc says; None if it has no ink."""
        ink = self._ink(text)
        if ink is None:
            return None
        width, height = ink.size
        side = max(width, height) / self.fit  # source pixels that map onto the output square
        canvas_side = math.ceil(side) + 2
        canvas = Image.new("L", (canvas_side, canvas_side), 0)
        left, top = (canvas_side - width) // 2, (canvas_side - height) // 2
        canvas.paste(ink, (left, top))
        cx, cy, half = left + width / 2, top + height / 2, side / 2
        out = canvas.resize((self.size, self.size), Image.Resampling.BOX, box=(cx - half, cy - half, cx + half, cy + half))
        return 255 - np.asarray(out, dtype=np.uint8)

    def render(self, char: str) -> np.ndarray | None:
        """The glyph of ``char``, or None when the face lacks it (see the module doc).

        A drawing within ``_NOTDEF_TOLERANCE`` mean grey levels of the .notdef drawing is that
        box (not compared bit for bit: FreeType's autohinter treats glyphs outside the cmap
        differently, so identical outlines can differ by a few edge pixels)."""
        if ord(char) not in self.face.codepoints:
            return None
        drawn = self._draw(char)
        if drawn is None or (self.notdef is not None
                             and np.abs(drawn.astype(np.int16) - self.notdef).mean() < _NOTDEF_TOLERANCE):
            return None
        return drawn


def one_face_per_style(files: list[tuple[str, str, Path]], chars: str, skipped: list[dict]) -> list[FontFace]:
    """Readable faces, one per (family, style): the one covering most characters, then the first."""
    faces: list[FontFace] = []
    for root, source, path in files:
        try:
            faces += read_faces(root, source, path, chars)
        except GleanError as exc:
            skipped.append({"source": source, "face_index": 0, "reason": str(exc)})
    by_style: dict[tuple[str, str], FontFace] = {}
    for face in sorted(faces, key=lambda f: (-len(f.codepoints), f.root, f.source, f.index)):
        key = (face.family.casefold(), face.style.casefold())
        if not face.family:
            skipped.append({"source": face.source, "face_index": face.index, "reason": "no family name"})
        elif key in by_style:
            skipped.append({"source": face.source, "face_index": face.index,
                            "reason": f"same family and style as {by_style[key].source}"})
        else:
            by_style[key] = face
    return sorted(by_style.values(), key=lambda f: (f.root, f.source, f.index))


def _png_bytes(gray: np.ndarray) -> bytes:
    return encode_image(gray, ".png")


@dataclass
class RenderedFace:
    """A face's glyph images, kept in memory until the split decides whether and where they are written."""

    face: FontFace
    pngs: dict[str, bytes]  # char -> PNG file content
    fingerprint: np.ndarray  # (len(chars), FINGERPRINT**2) float32, zero where missing
    present: np.ndarray  # (len(chars),) bool


def render_face(face: FontFace, chars: str, size: int, fit: float) -> RenderedFace:
    """Draw ``chars`` in ``face`` as PNGs, with the thumbnails that tell copies and related designs apart."""
    renderer = GlyphRenderer(face, size, fit)
    pngs, prints, present = {}, np.zeros((len(chars), FINGERPRINT**2), np.float32), np.zeros(len(chars), bool)
    for i, char in enumerate(chars):
        gray = renderer.render(char)
        if gray is None:
            continue
        pngs[char] = _png_bytes(gray)
        thumb = Image.fromarray(gray).resize((FINGERPRINT, FINGERPRINT), Image.Resampling.BOX)
        prints[i] = np.asarray(thumb, np.float32).ravel()
        present[i] = True
    return RenderedFace(face, pngs, prints, present)


