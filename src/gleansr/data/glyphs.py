"""Glyph images rendered from font files: the offline training domain of the bundled model.

Why glyphs: letters have real, learnable structure (strokes, serifs, bowls, counters), freely
licensed fonts come with every Linux distribution (SIL OFL, GPL with the font exception, Apache,
GUST, LPPL), so the data needs no download, and whole font families can be held out for testing.

Layout written by :func:`build_glyph_dataset`::

    OUT/train/<font>/u0041.png   one PNG per (font, character): a dark glyph on white
    OUT/test/<font>/...          the fonts of held-out design clusters
    OUT/manifest.json            fonts, licences, counts, skipped faces and why, the command line

Images are 8-bit grey PNGs (every loader here reads them as RGB with R = G = B; grey halves the
size of the data set, which matters when it is copied to a training machine).

Rendering: each glyph is drawn by FreeType (Pillow, basic layout) with an em of
``6 * size`` pixels, cropped to its ink, and area-averaged (box filter) into the output so that
the ink's longer side is ``fit * size`` and the ink box's centre is the image's centre: the same
rule for every glyph, aspect kept, antialiasing from the 6x supersampling.

A character counts as present only if the font's Unicode cmap maps it to a glyph other than
``.notdef`` *and* the drawing has ink *and* differs from the font's ``.notdef`` drawing
(some fonts map unsupported characters to a copy of their "missing" box). Symbol-encoded
fonts have no Unicode cmap and so contribute nothing.

Split: whole designs are held out. A face's group is the first word of its typographic family
("Latin Modern Roman Demi" -> "latin"), so stylistic siblings stay together; groups with any two
faces that render alike (RMS difference at 1/8 resolution over their shared characters at most
``related_tolerance`` grey levels: metric clones such as Arimo / Liberation Sans, the URW fonts and
their TeX Gyre and FreeFont derivatives, Hack / DejaVu Sans Mono) are joined into one cluster,
named after its alphabetically first group. A cluster is in the test split iff
``sha256(f"{seed}:{cluster}")`` read as a fraction is below ``test_fraction``.

Deduplication: faces with the same family and style keep one copy (the one covering most
characters); then, within a cluster, faces whose renderings differ by at most
``duplicate_tolerance`` keep one copy (same outlines in another format, version or package).

Reproducible: the same fonts, arguments, Pillow and FreeType give byte-identical files.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import secrets
import shutil
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

from ..errors import GleanError
from ..pipeline.images import encode_image, read_rgb_uint8

__all__ = ["DEFAULT_CHARS", "FontFace", "GlyphRenderer", "find_font_files", "read_faces", "design_group",
           "is_held_out", "license_id", "build_glyph_dataset", "write_demo_samples"]

DEFAULT_CHARS = string.ascii_uppercase + string.ascii_lowercase + string.digits + "&?!@#%$"
FONT_SUFFIXES = frozenset({".ttf", ".otf", ".ttc", ".otc"})
MANIFEST_FORMAT = "gleansr-glyphs/1"
_SUPERSAMPLE = 6  # em size in multiples of the output size
_FINGERPRINT = 16  # side of the per-glyph thumbnail compared for near-duplicates
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


def is_held_out(cluster: str, test_fraction: float, seed: int = 0) -> bool:
    """Whether a design cluster goes to the test split: a hash of seed and name as a fraction in [0, 1)."""
    digest = hashlib.sha256(f"{seed}:{cluster}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


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
            self.font = ImageFont.truetype(str(face.path), size=_SUPERSAMPLE * size, index=face.index,
                                           layout_engine=ImageFont.Layout.BASIC)
        except OSError as exc:
            raise GleanError(f"{face.path}: FreeType cannot open face {face.index} ({exc})") from None
        self.notdef = self._draw("\uffff")  # a noncharacter: no cmap maps it, so FreeType draws .notdef

    def _ink(self, text: str) -> Image.Image | None:
        """White-on-black crop of the drawn ink at the supersampled size; None if nothing is drawn."""
        left, top, right, bottom = self.font.getbbox(text)
        pad = self.size * _SUPERSAMPLE // 4  # room for ink that overhangs the reported box
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


def _png_bytes(gray: np.ndarray) -> bytes:
    return encode_image(gray, ".png")


@dataclass
class _Rendered:
    face: FontFace
    pngs: dict[str, bytes]  # char -> PNG file content
    fingerprint: np.ndarray  # (len(chars), _FINGERPRINT**2) float32, zero where missing
    present: np.ndarray  # (len(chars),) bool


def _render_face(face: FontFace, chars: str, size: int, fit: float) -> _Rendered:
    renderer = GlyphRenderer(face, size, fit)
    pngs, prints, present = {}, np.zeros((len(chars), _FINGERPRINT**2), np.float32), np.zeros(len(chars), bool)
    for i, char in enumerate(chars):
        gray = renderer.render(char)
        if gray is None:
            continue
        pngs[char] = _png_bytes(gray)
        thumb = Image.fromarray(gray).resize((_FINGERPRINT, _FINGERPRINT), Image.Resampling.BOX)
        prints[i] = np.asarray(thumb, np.float32).ravel()
        present[i] = True
    return _Rendered(face, pngs, prints, present)


def _rendering_distances(items: list[_Rendered]) -> np.ndarray:
    """(N, N) RMS grey-level difference of the thumbnails over the characters both faces have;
    ``inf`` where they share fewer than half of the smaller face's characters."""
    x = np.stack([r.fingerprint.ravel() for r in items]).astype(np.float64)  # (N, C*P), zeros where absent
    m = np.stack([r.present for r in items]).astype(np.float64)  # (N, C)
    pixels = _FINGERPRINT**2
    sq = (x * x).reshape(len(items), -1, pixels).sum(-1)  # (N, C) per-character squared norms
    shared = m @ m.T
    sum_sq = sq @ m.T + m @ sq.T - 2 * (x @ x.T)  # sum over shared characters of |xi - xj|^2
    rms = np.sqrt(np.maximum(sum_sq, 0) / np.maximum(shared * pixels, 1))
    counts = m.sum(1)
    rms[shared < 0.5 * np.minimum.outer(counts, counts)] = np.inf
    return rms


def _clusters(groups: list[str], distances: np.ndarray, tolerance: float) -> dict[str, str]:
    """``{group: cluster}``: groups joined whenever two of their faces are within ``tolerance``."""
    parent = {g: g for g in groups}

    def root(g: str) -> str:
        while parent[g] != g:
            g = parent[g]
        return g

    for i, j in zip(*np.nonzero(distances <= tolerance)):
        a, b = root(groups[i]), root(groups[j])
        if a != b:
            parent[max(a, b)] = min(a, b)  # the alphabetically first group names the cluster
    return {g: root(g) for g in groups}


def _duplicates(order: list[int], distances: np.ndarray, tolerance: float) -> dict[int, tuple[int, float]]:
    """``{dropped: (kept, distance)}``: going through ``order``, a face within ``tolerance`` of a
    face already kept is dropped."""
    dropped: dict[int, tuple[int, float]] = {}
    kept: list[int] = []
    for i in order:
        match = next((k for k in kept if distances[i, k] <= tolerance), None)
        if match is None:
            kept.append(i)
        else:
            dropped[i] = (match, float(distances[i, match]))
    return dropped


def _folder_name(face: FontFace, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", face.postscript_name or f"{face.family}-{face.style}").strip("-.") or "font"
    name, n = base, 2
    while name.casefold() in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name.casefold())
    return name


def _face_record(face: FontFace, name: str, split: str, cluster: str, chars: str, present: Sequence[str]) -> dict:
    return {
        "name": name, "split": split, "group": face.group, "cluster": cluster, "family": face.family,
        "style": face.style,
        "postscript_name": face.postscript_name, "version": face.version,
        "license": license_id(face.license, face.license_url), "license_text": face.license[:200],
        "license_url": face.license_url, "root": face.root, "source": face.source, "face_index": face.index,
        "sha256": face.sha256, "chars": "".join(present), "missing": "".join(c for c in chars if c not in present),
    }


def _prepare_output(out: Path, overwrite: bool) -> None:
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    manifest = out / "manifest.json"
    ours = out.is_dir() and manifest.is_file() and MANIFEST_FORMAT in manifest.read_text(errors="replace")[:200]
    if not ours:
        raise GleanError(f"{out} exists and is not a glyph dataset; choose an empty or new folder")
    if not overwrite:
        raise GleanError(f"{out} already holds a glyph dataset; pass --overwrite to replace it")


def _publish(staging: Path, out: Path) -> None:
    """Put the finished dataset in place in one rename (an older dataset there is replaced)."""
    os.sync()
    if out.is_dir() and any(out.iterdir()):
        trash = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
        os.replace(out, trash)
        os.replace(staging, out)
        shutil.rmtree(trash)
    else:
        if out.is_dir():
            out.rmdir()
        os.replace(staging, out)


def _one_face_per_style(files: list[tuple[str, str, Path]], chars: str, skipped: list[dict]) -> list[FontFace]:
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


def _split(rendered: list[_Rendered], test_fraction: float, seed: int, duplicate_tolerance: float,
           related_tolerance: float, skipped: list[dict]) -> tuple[dict[str, list[_Rendered]], dict[str, str]]:
    """Drop copies, join related groups into clusters, and put each cluster in train or test."""
    distances = _rendering_distances(rendered)
    cluster_of = _clusters([r.face.group for r in rendered], distances, related_tolerance)
    order = sorted(range(len(rendered)), key=lambda i: (-len(rendered[i].pngs), rendered[i].face.root,
                                                        rendered[i].face.source, rendered[i].face.index))
    duplicates = _duplicates(order, distances, duplicate_tolerance)
    for i, (k, rms) in sorted(duplicates.items()):
        skipped.append({"source": rendered[i].face.source, "face_index": rendered[i].face.index,
                        "reason": f"same design as {rendered[k].face.source} (RMS difference {rms:.2f})"})
    splits: dict[str, list[_Rendered]] = {"train": [], "test": []}
    for i, r in enumerate(rendered):
        if i not in duplicates:
            splits["test" if is_held_out(cluster_of[r.face.group], test_fraction, seed) else "train"].append(r)
    if not splits["train"]:
        raise GleanError(f"every design cluster fell into the test split (--test-fraction {test_fraction}, "
                         f"--seed {seed}); add fonts or lower the fraction")
    if test_fraction > 0 and not splits["test"]:
        clusters = len(set(cluster_of.values()))
        raise GleanError(f"no design cluster fell into the test split ({clusters} clusters, --test-fraction "
                         f"{test_fraction}, --seed {seed}); add fonts or raise the fraction")
    return splits, cluster_of


def _write(out: Path, splits: dict[str, list[_Rendered]], cluster_of: dict[str, str], chars: str,
           settings: dict) -> dict:
    """Write images and manifest to a hidden folder beside ``out``, then move it into place."""
    staging = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
    records, taken = [], set()
    try:
        staging.mkdir(parents=True)
        for split, items in splits.items():
            for r in items:
                name = _folder_name(r.face, taken)
                folder = staging / split / name
                folder.mkdir(parents=True)
                for char, data in r.pngs.items():
                    (folder / f"u{ord(char):04X}.png").write_bytes(data)
                records.append(_face_record(r.face, name, split, cluster_of[r.face.group], chars, list(r.pngs)))
        manifest = {
            "format": MANIFEST_FORMAT, **settings,
            "renderer": {"pillow": Image.__version__, "freetype": features.version("freetype2"),
                         "supersample": _SUPERSAMPLE, "layout": "basic"},
            "counts": {s: {"fonts": len(rs), "families": len({r.face.family for r in rs}),
                           "groups": len({r.face.group for r in rs}),
                           "clusters": len({cluster_of[r.face.group] for r in rs}), "images": sum(len(r.pngs) for r in rs)}
                       for s, rs in splits.items()},
            "fonts": records,
        }
        text = json.dumps(manifest, indent=1, ensure_ascii=False) + "\n"
        (staging / "manifest.json").write_text(text, encoding="utf-8")
        _publish(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return manifest


def build_glyph_dataset(
    fonts: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    size: int = 128,
    chars: str = DEFAULT_CHARS,
    test_fraction: float = 0.1,
    seed: int = 0,
    fit: float = 0.8,
    min_chars: int | None = None,
    duplicate_tolerance: float = 8.0,
    related_tolerance: float = 16.0,
    command: Sequence[str] = (),
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Render every usable face under ``fonts`` into ``out`` (see the module doc); returns the manifest.

    ``min_chars``: faces with fewer present characters are skipped (default: half of ``chars``).
    ``duplicate_tolerance`` / ``related_tolerance``: RMS grey levels (0-255) at 1/8 resolution under
    which two faces are copies (one is dropped) / related designs (kept on the same side of the
    split). Measured on Debian's fonts: copies and metric clones 0-8, derivatives such as
    Hack / DejaVu Sans Mono 10-13, Carlito / Lato 14-16, distinct designs above 16.
    ``command`` is recorded in the manifest; ``progress(done, total)`` is called as faces are drawn.
    The dataset appears in ``out`` complete or not at all.
    """
    chars = "".join(dict.fromkeys(chars))
    if not chars:
        raise GleanError("no characters to render")
    if size < 8:
        raise GleanError(f"--size must be at least 8, got {size}")
    if not 0 <= test_fraction < 1:
        raise GleanError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    min_chars = (len(chars) + 1) // 2 if min_chars is None else min_chars
    out = Path(out)
    _prepare_output(out, overwrite)
    files = find_font_files(fonts)
    if not files:
        raise GleanError(f"no font files ({', '.join(sorted(FONT_SUFFIXES))}) under {', '.join(map(str, fonts))}")

    skipped: list[dict] = []
    faces = _one_face_per_style(files, chars, skipped)
    rendered: list[_Rendered] = []
    for n, face in enumerate(faces):
        if progress is not None:
            progress(n, len(faces))
        try:
            item = _render_face(face, chars, size, fit)
        except (GleanError, OSError) as exc:  # FreeType refuses the face or one of its outlines
            skipped.append({"source": face.source, "face_index": face.index, "reason": f"cannot be drawn: {exc}"})
            continue
        if len(item.pngs) < min_chars:
            skipped.append({"source": face.source, "face_index": face.index,
                            "reason": f"only {len(item.pngs)} of {len(chars)} characters (minimum {min_chars})"})
        else:
            rendered.append(item)
    if progress is not None:
        progress(len(faces), len(faces))
    if not rendered:
        raise GleanError(f"no font has at least {min_chars} of the {len(chars)} characters")
    splits, cluster_of = _split(rendered, test_fraction, seed, duplicate_tolerance, related_tolerance, skipped)
    settings = {
        "command": list(command), "size": size, "fit": fit, "chars": chars, "test_fraction": test_fraction,
        "seed": seed, "min_chars": min_chars, "duplicate_tolerance": duplicate_tolerance,
        "related_tolerance": related_tolerance,
        "skipped": sorted(skipped, key=lambda s: (s["source"], s["face_index"], s["reason"])),
    }
    return _write(out, splits, cluster_of, chars, settings)


def write_demo_samples(dataset: str | os.PathLike[str], out: str | os.PathLike[str], scale: int = 8,
                       count: int = 8, chars: str = "Rag&Q5eM", overwrite: bool = False) -> list[str]:
    """Pick ``count`` test-split glyphs of a glyph data set, going round its test families (then
    their fonts in order), and write ``out/hr/<font>_<uXXXX>.png`` (a copy) and ``out/lr/...`` (MATLAB bicubic 1/``scale``,
    as training makes its LR). Sample ``i`` shows ``chars[i % len(chars)]``, or the font's first
    character not yet taken when it lacks that one. Returns the sample names."""
    from ..pipeline.images import save_image
    from .imresize import imresize

    dataset, out = Path(dataset), Path(out)
    manifest = json.loads((dataset / "manifest.json").read_text(encoding="utf-8"))
    families: dict[str, list[dict]] = {}
    for font in manifest["fonts"]:
        if font["split"] == "test":
            families.setdefault(font["family"], []).append(font)
    if not families:
        raise GleanError(f"{dataset} has no test fonts to take samples from")
    rounds = [families[f] for f in sorted(families)]
    names = []
    for i in range(count):
        family = rounds[i % len(rounds)]
        font = family[(i // len(rounds)) % len(family)]
        wanted = chars[i % len(chars)]
        options = [c for c in wanted + font["chars"] if c in font["chars"] and f"{font['name']}_u{ord(c):04X}" not in names]
        if not options:
            raise GleanError(f"{dataset}: not enough test glyphs for {count} samples")
        char = options[0]
        name = f"{font['name']}_u{ord(char):04X}"
        hr = read_rgb_uint8(dataset / "test" / font["name"] / f"u{ord(char):04X}.png")
        lr = imresize(hr, scale=1 / scale)
        for folder, image in (("hr", hr), ("lr", lr)):
            save_image(out / folder / f"{name}.png", image, grayscale=True, overwrite=overwrite)
        names.append(name)
    return names
